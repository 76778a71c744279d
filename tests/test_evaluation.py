"""Scores against scikit-learn, the seed summary, and batched prediction against a direct apply."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import metrics as sk

from xaijax import evaluation

NUM_CLASSES = 10


def _random_predictions(rng, size, never_predicted=(3,), absent=(7,)):
  """Labels and predictions where class 3 is never predicted and class 7 occurs nowhere."""
  allowed_labels = [c for c in range(NUM_CLASSES) if c not in absent]
  allowed_predictions = [c for c in allowed_labels if c not in never_predicted]
  labels = rng.choice(allowed_labels, size=size)
  predictions = rng.choice(allowed_predictions, size=size)
  # Make some predictions right, so the scores are not all near chance.
  right = rng.random(size) < 0.4
  predictions = np.where(right & ~np.isin(labels, never_predicted), labels, predictions)
  return labels.astype(np.int32), predictions.astype(np.int32)


@pytest.mark.parametrize('trial', range(5))
def test_scores_match_sklearn(trial):
  rng = np.random.default_rng(trial)
  labels, predictions = _random_predictions(rng, size=int(rng.integers(20, 200)))
  assert 3 in labels and 3 not in predictions
  ours = evaluation.scores(labels, predictions, NUM_CLASSES)
  for name, function in [
    ('f1', sk.f1_score),
    ('precision', sk.precision_score),
    ('recall', sk.recall_score),
  ]:
    expected = function(labels, predictions, average='macro', zero_division=0)
    np.testing.assert_allclose(ours[name], expected, rtol=1e-6, atol=1e-7, err_msg=name)
  np.testing.assert_array_equal(
    ours['confusion'], sk.confusion_matrix(labels, predictions, labels=range(NUM_CLASSES))
  )


def test_predicted_class_without_true_samples_counts_as_zero_precision():
  labels = np.array([0, 0, 1, 1])
  predictions = np.array([0, 2, 1, 1])  # class 2 predicted, never true
  ours = evaluation.scores(labels, predictions, 3)
  assert ours['precision'] == pytest.approx(
    sk.precision_score(labels, predictions, average='macro', zero_division=0)
  )
  assert ours['f1'] == pytest.approx(
    sk.f1_score(labels, predictions, average='macro', zero_division=0)
  )


def test_weights_drop_padded_samples():
  labels = jnp.array([0, 1, 2, 2])
  predictions = jnp.array([0, 1, 0, 2])
  padded = evaluation.confusion_matrix(labels, predictions, 3, weights=jnp.array([1, 1, 0, 1]))
  direct = evaluation.confusion_matrix(
    labels[jnp.array([0, 1, 3])], predictions[jnp.array([0, 1, 3])], 3
  )
  np.testing.assert_array_equal(padded, direct)


def test_macro_scores_batch_over_seeds_under_jit():
  rng = np.random.default_rng(0)
  pairs = [_random_predictions(rng, 50) for _ in range(3)]
  confusions = jnp.stack(
    [evaluation.confusion_matrix(labels, predictions, NUM_CLASSES) for labels, predictions in pairs]
  )
  batched = jax.jit(evaluation.macro_scores)(confusions)
  for seed, (labels, predictions) in enumerate(pairs):
    expected = sk.f1_score(labels, predictions, average='macro', zero_division=0)
    np.testing.assert_allclose(batched['f1'][seed], expected, rtol=1e-6)


def test_summary_mean_and_sample_std():
  summary = evaluation.summarize_over_seeds({'f1': np.array([0.5, 0.6, 0.7])})
  assert summary['mean']['f1'] == pytest.approx(0.6)
  assert summary['std']['f1'] == pytest.approx(np.std([0.5, 0.6, 0.7], ddof=1))
  single = evaluation.summarize_over_seeds({'f1': np.array([0.5])})
  assert single['std']['f1'] == 0.0


class _Linear(nn.Module):
  @nn.compact
  def __call__(self, x, train: bool):
    return nn.Dense(NUM_CLASSES)(x.reshape(x.shape[0], -1))


def _to_float(images):
  return images.astype(jnp.float32) / 255.0


def test_predict_batches_match_direct_apply_and_evaluate_splits():
  model = _Linear()
  images = np.random.default_rng(0).integers(0, 256, (23, 4, 4, 1), dtype=np.uint8)
  labels = np.random.default_rng(1).integers(0, NUM_CLASSES, 23).astype(np.int32)
  keys = jax.random.split(jax.random.PRNGKey(0), 3)
  variables = jax.vmap(lambda k: model.init(k, jnp.zeros((1, 4, 4, 1)), train=False))(keys)

  logits = evaluation.predict(model, variables, images, preprocess=_to_float, batch_size=5)
  assert logits.shape == (3, 23, NUM_CLASSES)
  for seed in range(3):
    seed_variables = jax.tree.map(lambda x, s=seed: x[s], variables)
    direct = model.apply(seed_variables, _to_float(images), train=False)
    np.testing.assert_allclose(logits[seed], direct, rtol=1e-5, atol=1e-5)

  results = evaluation.evaluate_splits(
    model,
    variables,
    {'test': {'image': images, 'label': labels}},
    preprocess=_to_float,
    num_classes=NUM_CLASSES,
    batch_size=8,
  )
  per_seed_f1 = [
    sk.f1_score(labels, logits[s].argmax(-1), average='macro', zero_division=0) for s in range(3)
  ]
  np.testing.assert_allclose(results['test']['per_seed']['f1'], per_seed_f1, rtol=1e-6)
  assert results['test']['mean']['f1'] == pytest.approx(np.mean(per_seed_f1))
  assert np.asarray(results['test']['confusion']).shape == (3, NUM_CLASSES, NUM_CLASSES)


def test_evaluate_splits_names_a_split_without_labels():
  with pytest.raises(ValueError, match="split 'test'"):
    evaluation.evaluate_splits(
      _Linear(),
      {},
      {'test': {'image': np.zeros((1, 4, 4, 1))}},
      preprocess=_to_float,
      num_classes=NUM_CLASSES,
    )
