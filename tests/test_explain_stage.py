"""The explanation stage's relevance shares, against LRP image by image and plain numpy."""

import json

import jax
import numpy as np
import pytest

from xaijax import case_config, lrp, workflow
from xaijax.models import registry


class TwoSeeds:
  """A finished run's result with two seeds of a freshly initialised model."""

  def __init__(self, variables):
    self.variables = variables
    self.seeds = [0, 1]
    self.best_validation_f1 = [0.4, 0.6]

  def variables_of(self, index):
    return self.variables[index]


def random_split(rng, count, size, blank_masks=0):
  """Images with a random box as the overlay mask; the first `blank_masks` carry none."""
  mask = np.zeros((count, size, size, 1), np.uint8)
  for i in range(blank_masks, count):
    top, left = rng.integers(0, size // 2, 2)
    mask[i, top : top + size // 3, left : left + size // 2] = 1
  return {
    'image': rng.integers(0, 256, (count, size, size, 1), dtype=np.uint8),
    'mask': mask,
    'defect': np.roll(mask, size // 4, axis=1),
    'label': rng.integers(0, 3, count).astype(np.int32),
  }


def jiggled(variables, seed):
  """Parameters moved off their initial values (a fresh head answers 0, so LRP would find none)."""
  leaves, tree = jax.tree.flatten(variables['params'])
  rng = np.random.default_rng(seed)
  moved = [leaf + 0.1 * rng.standard_normal(leaf.shape).astype(leaf.dtype) for leaf in leaves]
  return {**variables, 'params': jax.tree.unflatten(tree, moved)}


@pytest.fixture(scope='module')
def tiny_case():
  config = case_config.get_config()
  config.data.resolution = 32
  config.model.alpha = 0.25
  config.lrp.batch_size = 4  # batches that split the images unevenly
  classifier = registry.build(config.model)
  sample = np.zeros((1, 32, 32, 1), np.float32)
  variables = [
    jiggled(classifier.module.init(jax.random.key(s), sample, train=False), s) for s in (3, 4)
  ]
  return config, classifier, TwoSeeds(variables)


def overlay_share_by_hand(classifier, variables, config, split) -> float:
  """Mean over images with an overlay of positive relevance inside it / positive relevance."""
  shares = []
  for image, mask in zip(split['image'], split['mask']):
    relevance = lrp.explain(
      classifier.module,
      variables,
      classifier.preprocess(image[None]),
      composite=config.lrp.composite,
      epsilon=float(config.lrp.epsilon),
    )
    positive = np.maximum(np.asarray(relevance, np.float64)[0].sum(-1), 0.0)
    if mask.sum() == 0:
      continue  # no overlay, no answer
    shares.append(positive[mask[..., 0] > 0].sum() / positive.sum())
  return float(np.mean(shares))


def test_validation_overlay_share_is_computed_on_the_validation_images(tiny_case, tmp_path):
  config, classifier, result = tiny_case
  rng = np.random.default_rng(0)
  splits = {
    'test': random_split(rng, 6, 32),
    'validation': random_split(rng, 7, 32, blank_masks=2),
  }
  explanation = workflow.explain_stage(config, splits, result, str(tmp_path))
  validation = explanation['validation_relevance_mass_in_overlay']
  test = explanation['relevance_mass_in_overlay']
  assert len(validation['per_seed']) == 2
  for index in range(2):
    variables = result.variables_of(index)
    expected = overlay_share_by_hand(classifier, variables, config, splits['validation'])
    assert validation['per_seed'][index] == pytest.approx(expected, abs=1e-4)
    expected_test = overlay_share_by_hand(classifier, variables, config, splits['test'])
    assert test['per_seed'][index] == pytest.approx(expected_test, abs=1e-4)
  assert validation['per_seed'] != test['per_seed']
  saved = json.loads((tmp_path / workflow.EXPLANATION_FILE).read_text())
  assert saved['validation_relevance_mass_in_overlay'] == validation


def test_no_overlay_masks_no_validation_share(tiny_case, tmp_path):
  config, _, result = tiny_case
  config = config.copy_and_resolve_references()
  config.data.overlay_mode = 'none'
  rng = np.random.default_rng(1)
  splits = {'test': random_split(rng, 5, 32), 'validation': random_split(rng, 5, 32)}
  explanation = workflow.explain_stage(config, splits, result, str(tmp_path))
  assert explanation['validation_relevance_mass_in_overlay'] is None
  assert explanation['relevance_mass_in_overlay'] is None
