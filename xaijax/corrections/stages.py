"""The corrections' steps in a case's workflow, each writing into the workdir and skipped on a
rerun when its output is there.

    rrr, rrr_lrp,      train from scratch with the penalty (`training_penalty`), or fine-tune a
    counterexamples    finished run with it (`correction.base_classifier`)        -> classifier/
    pclarc             train the Original (or reuse `correction.base_classifier`), learn the
                       concept, fold its projection into the head (no training) -> concept.npz
    aclarc, rrclarc    train the Original (or reuse it), learn the concept, fine-tune every seed
                       from its own Original model                               -> correction/
    every case without a remedy: TCAV sensitivity to the model's own concept, validation macro-F1
    as distributed and with overlays swapped, seconds per epoch              -> correction.json

Corrections and the Original model early-stop differently on purpose: the Original keeps the
paper's validation split, whose overlays carry the shortcut as the training images do; a
correction (`correction.validation='overlays_swapped'`) early-stops on the validation images with
every overlay swapped for one of another class (`masks.swap_overlays`), so the epoch it keeps is
not the one that reads the logo best. Image remedies get the same from their remedied validation
images.
"""

from __future__ import annotations

import dataclasses
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from xaijax import case_config, data, evaluation, remedies
from xaijax.corrections import activations, clarc, counterexamples, masks, rrr
from xaijax.models import registry
from xaijax.workdir import CLASSIFIER_DIR, read_json, write_json

CORRECTION_DIR = 'correction'  # the fine-tuning run of A-/RR-ClArC
CONCEPT_FILE = 'concept.npz'  # the concept (CAV basis and means) of every seed
MEASURES_FILE = 'correction.json'
EPOCH_SECONDS_FILE = 'epoch_seconds.json'  # in a classifier run's folder
FINE_TUNED = ('aclarc', 'rrclarc')
VALIDATION_CHOICES = ('as_distributed', 'overlays_swapped')
SWAP_SEED = 0


def is_correction(config) -> bool:
  return config.correction.name != 'none'


# ----------------------------------------------------------------------------- timing


class EpochTimer:
  """`on_epoch_end` for `train_classifier`: the median wall seconds of an epoch, the first epoch
  (compilation) left out, into `epoch_seconds.json` of the run's folder."""

  def __init__(self, run_dir: str):
    self.path = os.path.join(run_dir, EPOCH_SECONDS_FILE)
    self.stamps = [time.perf_counter()]

  def __call__(self, epoch, records) -> None:
    del epoch, records
    self.stamps.append(time.perf_counter())

  def write(self) -> None:
    durations = np.diff(self.stamps)[1:]
    if len(durations):  # a run that was already finished trained no epoch here
      write_json(self.path, {'seconds_per_epoch': float(np.median(durations))})


def seconds_per_epoch(run_dir: str) -> float | None:
  path = os.path.join(run_dir, EPOCH_SECONDS_FILE)
  return read_json(path)['seconds_per_epoch'] if os.path.exists(path) else None


# ----------------------------------------------------------------------------- training data


def correction_splits(config, splits: dict) -> dict:
  """Train (with the artifact masks a penalty reads) and the validation split to early-stop on."""
  choice = config.correction.validation
  if choice not in VALIDATION_CHOICES:
    raise ValueError(f'correction.validation={choice!r}: choose one of {VALIDATION_CHOICES}.')
  validation = splits['validation']
  if choice == 'overlays_swapped':
    validation = masks.swap_overlays(validation, SWAP_SEED, masks.mask_key(config))
  train = {
    **splits['train'],
    masks.CORRECTION_MASK_KEY: masks.artifact_masks(config, splits['train']),
  }
  if config.correction.name == 'counterexamples' and float(config.correction.inpainted_weight):
    train[masks.INPAINTED_KEY] = remedies.telea(train['image'], train[masks.CORRECTION_MASK_KEY])
  return {'train': train, 'validation': validation}


def training_penalty(config, classifier: registry.Classifier):
  """The penalty of a case trained with one (None with every weight 0: then it is plain
  training, bit for bit)."""
  correction = config.correction
  weight = float(correction.weight)
  if correction.name == 'counterexamples':
    lrp_weight = float(correction.lrp_weight)
    inpainted_weight = float(correction.inpainted_weight)
    relevance = _lrp_penalty(config, classifier, lrp_weight) if lrp_weight else None
    if weight == 0.0 and inpainted_weight == 0.0:
      return relevance  # RRR-LRP alone
    return counterexamples.CounterexamplePenalty(
      weight,
      relevance,
      partners=int(correction.partners),
      inpainted_weight=inpainted_weight,
      preprocess=classifier.preprocess if inpainted_weight else None,
    )
  if correction.name not in case_config.PENALISED_CORRECTIONS or weight == 0.0:
    return None
  if correction.name == 'rrr':
    return rrr.InputGradientPenalty(weight)
  return _lrp_penalty(config, classifier, weight)


def _lrp_penalty(config, classifier, weight: float) -> rrr.LrpPenalty:
  return rrr.LrpPenalty(
    weight, classifier.module, config.correction.lrp_composite, float(config.lrp.epsilon)
  )


def fine_tune_config(config) -> ml_collections.ConfigDict:
  """config.train for fine-tuning a finished run (A-/RR-ClArC, or a penalised case given
  `correction.base_classifier`): `correction.epochs` at `correction.learning_rate`."""
  tuned = ml_collections.ConfigDict(config.to_dict())
  tuned.train.epochs = int(config.correction.epochs)
  tuned.train.learning_rate = float(config.correction.learning_rate)
  tuned.train.learning_rate_per_seed = None
  return tuned


# ----------------------------------------------------------------------------- the concept


def layer_features(classifier, variables, images, layer: str, batch_size: int) -> jax.Array:
  """Activations entering `layer`, flattened, for every seed: [S, N, D]."""
  model, preprocess = classifier.module, classifier.preprocess

  @jax.jit
  def features(stacked, batch):
    inputs = preprocess(batch)
    return jax.vmap(lambda v: activations.flat(activations.layer_input(model, v, inputs, layer)))(
      stacked
    )

  parts = [
    features(variables, images[start : start + batch_size])
    for start in range(0, len(images), batch_size)
  ]
  return jnp.concatenate(parts, axis=1)


def learn_concept(config, classifier, variables, split: dict) -> dict:
  """Every seed's concept from `split`: {'basis' [S, K, D], 'clean_mean' and 'artifact_mean'
  [S, D]}."""
  examples = masks.concept_examples(config, split)
  layer, batch = config.correction.layer, int(config.train.eval_batch_size)
  with_artifact = layer_features(classifier, variables, examples['with_artifact'], layer, batch)
  without = layer_features(classifier, variables, examples['without_artifact'], layer, batch)
  group = jnp.asarray(examples['group'])
  num_groups = int(examples['group'].max()) + 1
  kind = config.correction.cav

  @jax.jit
  def of_all_seeds(features_with, features_without):
    return jax.vmap(lambda a, b: clarc.concept(a, b, group, kind=kind, num_groups=num_groups))(
      features_with, features_without
    )

  basis, clean_mean, artifact_mean = of_all_seeds(with_artifact, without)
  return {
    'basis': np.asarray(basis),
    'clean_mean': np.asarray(clean_mean),
    'artifact_mean': np.asarray(artifact_mean),
  }


def concept_stage(config, classifier, result, split: dict, workdir: str) -> dict:
  """The base model's concept, learnt once (concept.npz)."""
  path = os.path.join(workdir, CONCEPT_FILE)
  if os.path.exists(path):
    with np.load(path) as cached:
      return dict(cached)
  concept = learn_concept(config, classifier, result.variables, split)
  partial = path + '.partial.npz'
  np.savez(partial, **concept)
  os.replace(partial, path)
  return concept


def _subtree(tree: dict, layer: str) -> dict:
  for part in activations.layer_path(layer):
    tree = tree[part]
  return tree


def _replace_subtree(tree: dict, layer: str, value) -> dict:
  path = activations.layer_path(layer)
  if len(path) == 1:
    return {**tree, path[0]: value}
  return {**tree, path[0]: _replace_subtree(tree[path[0]], '/'.join(path[1:]), value)}


def projected_variables(config, variables, concept: dict) -> dict:
  """P-ClArC: every seed's projection folded into the Dense layer `correction.layer`."""
  layer = config.correction.layer
  try:
    dense = _subtree(variables['params'], layer)
  except (KeyError, TypeError):
    dense = None
  feature_size = concept['basis'].shape[-1]
  if (
    not isinstance(dense, dict)
    or 'bias' not in dense
    or np.ndim(dense.get('kernel')) != 3
    or np.shape(dense['kernel'])[1] != feature_size
  ):
    raise ValueError(
      f'correction.layer={layer!r}: P-ClArC folds its projection into the Dense layer (with a '
      "bias) that reads the activations, as MobileNet's head 'conv_preds' does; this layer is "
      'not one. A-ClArC and RR-ClArC edit any layer.'
    )
  folded = jax.vmap(clarc.fold_projection_into_dense)(
    dense, jnp.asarray(concept['basis']), jnp.asarray(concept['clean_mean'])
  )
  params = _replace_subtree(variables['params'], layer, clarc.as_numpy(folded))
  return {**variables, 'params': params}


# ----------------------------------------------------------------------------- the correction


def concept_model(config, classifier, concept: dict) -> registry.Classifier:
  num_directions, feature_size = concept['basis'].shape[1:]
  module = clarc.ConceptModel(
    classifier.module, config.correction.layer, int(feature_size), int(num_directions)
  )
  return registry.Classifier(module, classifier.preprocess)


def fine_tuning_penalty(config, feature_size: int):
  correction = config.correction
  if correction.name == 'aclarc':
    return clarc.AugmentPenalty(correction.fine_tune, correction.head)
  return clarc.ConceptGradientPenalty(
    float(correction.weight), feature_size, correction.fine_tune, correction.head
  )


def correct_stage(config, splits: dict, base_result, workdir: str):
  """The corrected model of a ClArC case: a `TrainResult` holding the classifier's variables."""
  from xaijax.training import classifier as classifier_training

  classifier = registry.build(config.model)
  concept = concept_stage(config, classifier, base_result, splits['train'], workdir)
  if config.correction.name == 'pclarc':
    return dataclasses.replace(
      base_result, variables=projected_variables(config, base_result.variables, concept)
    )
  if config.correction.name not in FINE_TUNED:
    raise ValueError(f'correction.name={config.correction.name!r} has no correction stage.')
  model = concept_model(config, classifier, concept)
  run_dir = os.path.join(workdir, CORRECTION_DIR)
  timer = EpochTimer(run_dir)
  tuned = classifier_training.train_classifier(
    fine_tune_config(config),
    correction_splits(config, splits),
    run_dir,
    model,
    on_epoch_end=timer,
    initial_variables=clarc.with_concept(
      base_result.variables, concept['basis'], concept['clean_mean'], concept['artifact_mean']
    ),
    penalty=fine_tuning_penalty(config, model.module.feature_size),
  )
  timer.write()
  return dataclasses.replace(tuned, variables=clarc.without_concept(tuned.variables))


# ----------------------------------------------------------------------------- measures


def plain_and_corrected_runs(config, workdir: str) -> dict:
  """The classifier runs whose seconds per epoch a case reports."""
  own = os.path.join(workdir, CLASSIFIER_DIR)
  name = config.correction.name
  if name in case_config.PENALISED_CORRECTIONS:
    return {'corrected': own}
  plain = config.correction.base_classifier or own
  if name in FINE_TUNED:
    return {'plain': plain, 'corrected': os.path.join(workdir, CORRECTION_DIR)}
  return {'plain': plain}


def why_no_measures(config, splits: dict, result) -> str | None:
  """Why a case without a correction cannot carry the corrections' reference measures (None: it
  can): they need the overlays' ground truth and the concept layer `correction.layer`."""
  if config.correction.name != 'none':
    return None
  if not data.ground_truth(config.data)['overlay_masks']:
    return 'the data has no overlay masks'
  classifier = registry.build(config.model)
  one_seed = jax.tree.map(lambda leaf: leaf[0], result.variables)
  try:
    activations.feature_shape(
      classifier.module,
      one_seed,
      classifier.preprocess(splits['validation']['image'][:1]),
      config.correction.layer,
    )
  except ValueError as error:
    return str(error)
  return None


def concept_sensitivity(config, classifier, variables, concept, images) -> list[float]:
  """Per seed: mean over `images` of TCAV's |grad_a y_hat . v| (norm within the concept's span)."""
  model = concept_model(config, classifier, concept)
  batch = int(config.train.eval_batch_size)
  per_seed = []
  for index in range(concept['basis'].shape[0]):
    seed_variables = clarc.with_concept(
      jax.tree.map(lambda x, i=index: x[i], variables),
      concept['basis'][index],
      concept['clean_mean'][index],
      concept['artifact_mean'][index],
    )
    values = [
      clarc.concept_sensitivity(
        model.module,
        seed_variables,
        classifier.preprocess(images[start : start + batch]),
        model.module.feature_size,
      )
      for start in range(0, len(images), batch)
    ]
    per_seed.append(float(np.mean(np.concatenate([np.asarray(v) for v in values]))))
  return per_seed


def measures_stage(config, splits: dict, result, workdir: str) -> dict:
  """What a model correction is judged by besides F1 and relevance (correction.json): TCAV
  sensitivity to the artifact's concept, validation macro-F1 (as distributed, overlays swapped),
  seconds per epoch of the plain and corrected runs (`plain_and_corrected_runs`). Run for the
  Original model too, the reference of every correction."""
  path = os.path.join(workdir, MEASURES_FILE)
  if os.path.exists(path):
    return read_json(path)
  classifier = registry.build(config.model)
  # The final model's own concept: after a correction the artifact may sit in another direction.
  concept = learn_concept(config, classifier, result.variables, splits['train'])
  sensitivity = concept_sensitivity(
    config, classifier, result.variables, concept, splits['test']['image']
  )
  validation = {
    'validation': splits['validation'],
    'validation_overlays_swapped': masks.swap_overlays(splits['validation'], SWAP_SEED),
  }
  scores = evaluation.evaluate_case(config, result.variables, validation)
  classifier_dirs = plain_and_corrected_runs(config, workdir)
  seconds = {name: seconds_per_epoch(run_dir) for name, run_dir in classifier_dirs.items()}
  measures = {
    'correction': config.correction.to_dict(),
    'concept_sensitivity': sensitivity,
    'concept_directions': int(np.sum(np.any(concept['basis'] != 0, axis=-1)) // len(sensitivity)),
    'validation_f1': {name: scores[name]['per_seed']['f1'] for name in validation},
    'seconds_per_epoch': seconds,
  }
  write_json(path, measures)
  return measures
