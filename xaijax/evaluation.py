"""Classification scores for models trained over many seeds: macro F1, precision, recall.

The scores are computed from a confusion matrix with the conventions of scikit-learn's
`f1_score(average='macro', zero_division=0)` (and `precision_score` / `recall_score` likewise):

* a class that is never predicted has precision 0, a class with no true sample has recall 0,
  and F1 = 2 TP / (2 TP + FP + FN) is 0 where that denominator is 0;
* the macro average runs over the classes that occur in the labels or in the predictions;
  a class absent from both is left out (it would otherwise add a meaningless 0).

The same jnp functions run inside the jitted training program (validation macro-F1 per seed)
and on the host (`evaluate_splits`), so the number that early stopping sees is the number the
report prints.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
import functools

import jax
import jax.numpy as jnp
import numpy as np

from xaijax.models import registry

SCORE_NAMES = ('f1', 'precision', 'recall')


def confusion_matrix(labels, predictions, num_classes: int, weights=None) -> jax.Array:
  """Counts `[true class, predicted class]`, int32 `[C, C]`.

  `weights` (0/1 per sample) drops padded samples; works under `jit` and `vmap`.
  """
  labels = jnp.asarray(labels, jnp.int32).reshape(-1)
  predictions = jnp.asarray(predictions, jnp.int32).reshape(-1)
  if weights is None:
    weights = jnp.ones_like(labels)
  weights = jnp.asarray(weights, jnp.int32).reshape(-1)
  counts = jnp.zeros((num_classes, num_classes), jnp.int32)
  return counts.at[labels, predictions].add(weights, mode='drop')


def macro_scores(confusion) -> dict[str, jax.Array]:
  """Macro F1, precision and recall (float32 scalars) from a `[C, C]` confusion matrix."""
  confusion = jnp.asarray(confusion, jnp.float32)
  true_positives = jnp.diagonal(confusion, axis1=-2, axis2=-1)
  true_counts = confusion.sum(axis=-1)
  predicted_counts = confusion.sum(axis=-2)
  occurs = (true_counts + predicted_counts) > 0

  def safe_ratio(numerator, denominator):
    return jnp.where(denominator > 0, numerator / jnp.maximum(denominator, 1.0), 0.0)

  per_class = {
    'f1': safe_ratio(2.0 * true_positives, true_counts + predicted_counts),
    'precision': safe_ratio(true_positives, predicted_counts),
    'recall': safe_ratio(true_positives, true_counts),
  }
  num_occurring = jnp.maximum(occurs.sum(axis=-1), 1)
  return {
    name: jnp.where(occurs, values, 0.0).sum(axis=-1) / num_occurring
    for name, values in per_class.items()
  }


def scores(labels, predictions, num_classes: int) -> dict[str, float]:
  """Macro F1, precision, recall and the confusion matrix for one set of predictions."""
  confusion = confusion_matrix(labels, predictions, num_classes)
  result = {name: float(value) for name, value in macro_scores(confusion).items()}
  result['confusion'] = np.asarray(confusion)
  return result


def summarize_over_seeds(per_seed: Mapping[str, np.ndarray]) -> dict[str, dict[str, float]]:
  """Mean and sample standard deviation (ddof=1; 0 for a single seed) of each score."""
  mean, std = {}, {}
  for name, values in per_seed.items():
    values = np.asarray(values, np.float64)
    mean[name] = float(values.mean())
    std[name] = float(values.std(ddof=1)) if values.size > 1 else 0.0
  return {'mean': mean, 'std': std}


def predict(
  model,
  variables_stacked,
  images: np.ndarray,
  *,
  preprocess: Callable[[jax.Array], jax.Array],
  batch_size: int = 256,
) -> np.ndarray:
  """Logits `[S, N, C]` of every seed's model (variables with a leading seed axis S).

  `images` are the raw uint8 `[N, H, W, 1]`; `preprocess` turns a batch of them into the model's
  input. The images go through in batches of `batch_size` (the last one padded, so one program
  serves every batch).
  """
  images = np.asarray(images)
  if images.ndim != 4:
    raise ValueError(f'images must be [N, H, W, channels], got shape {images.shape}.')
  num_images = images.shape[0]
  if num_images == 0:
    raise ValueError('images is empty: nothing to predict.')
  batch_size = max(1, min(batch_size, num_images))
  outputs = []
  for start in range(0, num_images, batch_size):
    batch = images[start : start + batch_size]
    valid = batch.shape[0]
    if valid < batch_size:
      padding = np.zeros((batch_size - valid,) + batch.shape[1:], batch.dtype)
      batch = np.concatenate([batch, padding])
    logits = _logits_all_seeds(variables_stacked, batch, model=model, preprocess=preprocess)
    outputs.append(np.asarray(logits)[:, :valid])
  return np.concatenate(outputs, axis=1)


@functools.partial(jax.jit, static_argnames=('model', 'preprocess'))
def _logits_all_seeds(variables_stacked, images, *, model, preprocess):
  def logits_one_seed(variables):
    return model.apply(variables, preprocess(images), train=False)

  return jax.vmap(logits_one_seed)(variables_stacked)


def evaluate_logits(logits: np.ndarray, labels: np.ndarray, num_classes: int) -> dict:
  """Scores per seed and mean ± std over seeds from logits `[S, N, C]` and labels `[N]`."""
  logits = np.asarray(logits)
  labels = np.asarray(labels)
  if logits.ndim != 3 or logits.shape[1] != labels.shape[0]:
    raise ValueError(
      f'logits must be [seeds, N, classes] with N = len(labels) = {labels.shape[0]}, '
      f'got shape {logits.shape}.'
    )
  predictions = logits.argmax(axis=-1)
  confusions = np.stack(
    [
      np.asarray(confusion_matrix(labels, seed_predictions, num_classes))
      for seed_predictions in predictions
    ]
  )
  per_seed_scores = macro_scores(confusions)
  per_seed = {name: np.asarray(per_seed_scores[name], np.float64) for name in SCORE_NAMES}
  return {
    'per_seed': {name: values.tolist() for name, values in per_seed.items()},
    **summarize_over_seeds(per_seed),
    'confusion': confusions.tolist(),
  }


def evaluate_splits(
  model,
  variables_stacked,
  splits: Mapping[str, Mapping[str, np.ndarray]],
  *,
  preprocess: Callable[[jax.Array], jax.Array],
  num_classes: int,
  batch_size: int = 256,
) -> dict[str, dict]:
  """Scores of every seed on every split, JSON-ready.

  Returns `{split: {'per_seed': {'f1': [S], 'precision': [S], 'recall': [S]},
  'mean': {...}, 'std': {...}, 'confusion': [S][C][C]}}`.
  """
  results = {}
  for name, split in splits.items():
    if 'image' not in split or 'label' not in split:
      raise ValueError(f"split '{name}' needs 'image' and 'label' arrays, has {sorted(split)}.")
    logits = predict(
      model, variables_stacked, split['image'], preprocess=preprocess, batch_size=batch_size
    )
    results[name] = evaluate_logits(logits, split['label'], num_classes)
  return results


def evaluate_case(config, variables_stacked, splits: Mapping[str, Mapping[str, np.ndarray]]):
  """`evaluate_splits` with the case's classifier (`config.model`) and its evaluation batch."""
  classifier = registry.build(config.model)
  return evaluate_splits(
    classifier.module,
    variables_stacked,
    splits,
    preprocess=classifier.preprocess,
    num_classes=int(config.model.num_classes),
    batch_size=int(config.train.eval_batch_size),
  )
