"""The quality table on a tiny CNN trained on planted data (the class is where a bright square
sits), two seeds at once: the sanity check passes LRP and fails the explainers that ignore the
model, faithfulness and localisation order the explainers as they must, and the summary, the
report section and the figure come out of it."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from xaijax import case_config
from xaijax.quality import summary, table

SIDE, SQUARE = 16, 4


class PlantedCNN(nn.Module):
  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.Conv(6, (3, 3), use_bias=False)(x)
    x = nn.relu(nn.BatchNorm(use_running_average=not train)(x))
    x = nn.relu(nn.Conv(4, (3, 3), strides=(2, 2))(x))
    return nn.Dense(2)(x.reshape(x.shape[0], -1))  # flat, so the dense layer sees where


def planted_images(count, seed):
  """Noise with a bright square in the left (class 0) or the right half (class 1), and its mask."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 2, count)
  images = rng.normal(0.0, 0.3, (count, SIDE, SIDE, 1)).astype(np.float32)
  masks = np.zeros((count, SIDE, SIDE), np.uint8)
  for n, label in enumerate(labels):
    row = rng.integers(0, SIDE - SQUARE + 1)
    col = rng.integers(0, SIDE // 2 - SQUARE + 1) + label * SIDE // 2
    images[n, row : row + SQUARE, col : col + SQUARE] += 1.5
    masks[n, row : row + SQUARE, col : col + SQUARE] = 1
  return images, labels, masks


def train_seeds(model, images, labels, seeds, steps=150):
  """Adam on the whole set, every seed in one vmapped program: variables with a seed axis."""
  optimizer = optax.adam(0.03)

  def train(key):
    variables = model.init(key, images[:1], train=False)
    state = (variables['params'], variables['batch_stats'], optimizer.init(variables['params']))

    def step(state, _):
      params, stats, opt = state

      def loss(p):
        logits, updates = model.apply(
          {'params': p, 'batch_stats': stats}, images, train=True, mutable=['batch_stats']
        )
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), updates

      grads, updates = jax.grad(loss, has_aux=True)(params)
      change, opt = optimizer.update(grads, opt)
      return (optax.apply_updates(params, change), updates['batch_stats'], opt), None

    (params, stats, _), _ = jax.lax.scan(step, state, None, length=steps)
    return {'params': params, 'batch_stats': stats}

  return jax.jit(jax.vmap(train))(jax.vmap(jax.random.key)(jnp.asarray(seeds)))


def small_settings(**changes):
  quality = case_config.get_config().quality
  quality.update(
    images=8,
    integrated_gradients_steps=4,
    smoothgrad_samples=4,
    mprt_cuts=3,
    region_patch=4,
    regions=6,
    faithfulness_runs=16,
    faithfulness_subset=16,
    # The image minimum ('black') is far darker than anything in this data; the mean stays in it.
    baseline='mean',
    explainers=('gradient', 'smoothgrad', 'random', 'edges', 'lrp_epsilon'),
  )
  return dataclasses.replace(table.Settings.from_config(quality, 0.1), **changes)


@pytest.fixture(scope='module')
def trained():
  model = PlantedCNN()
  images, labels, _ = planted_images(128, seed=0)
  variables = train_seeds(model, images, labels, [0, 1])
  test_images, test_labels, test_masks = planted_images(8, seed=1)
  accuracy = jax.vmap(
    lambda v: jnp.mean(jnp.argmax(model.apply(v, test_images, train=False), -1) == test_labels)
  )(variables)
  assert np.all(np.asarray(accuracy) >= 0.85), accuracy  # the model learned the planted rule
  return model, variables, test_images, test_masks


@pytest.fixture(scope='module')
def scores(trained):
  model, variables, images, masks = trained
  return table.evaluate(model, variables, images, masks, small_settings())


def test_every_explainer_gets_every_measure_per_seed(scores):
  settings = small_settings()
  assert list(scores['explainers']) == list(settings.explainers)
  for measures in scores['explainers'].values():
    assert set(measures) == set(table.MEASURES)
    for values in measures.values():
      assert values.shape == (2,)
  assert scores['cascade'][-1] == 'Conv_0'  # the last cut randomises down to the first layer
  assert scores['mprt_curves']['gradient']['spearman'].shape == (2, 3)


def test_sanity_check_passes_lrp_and_fails_explainers_that_ignore_the_model(scores):
  for control in ('random', 'edges'):
    measures = scores['explainers'][control]
    np.testing.assert_allclose(measures['MPRT'], 1.0, rtol=1e-6)
    np.testing.assert_allclose(measures['RandomLogit'], 1.0, rtol=1e-6)
    np.testing.assert_allclose(measures['EfficientMPRT'], 0.0, atol=1e-6)
  # The model's explanations change when it is randomised. LRP-epsilon keeps about half of its
  # rank order here: its maps also follow the input's bright square, whatever the weights.
  assert np.all(scores['explainers']['gradient']['MPRT'] < 0.2)
  assert np.all(scores['explainers']['lrp_epsilon']['MPRT'] < 0.7)
  curve = scores['mprt_curves']['lrp_epsilon']['spearman']
  assert np.all(curve[:, 1] < 0.5)  # after the dense layer and the BatchNorm
  quality = summary.summarise(scores, small_settings(), 0.5, {'images': 8, 'mask_name': 'square'})
  verdict = summary.choose_explainer(quality['table'], 0.5)
  assert verdict['explainer'] not in ('random', 'edges', None)
  assert 'random, edges fail the sanity check' in verdict['sentence']


def test_faithfulness_and_localisation_rank_model_explanations_above_noise(scores):
  lrp, random = scores['explainers']['lrp_epsilon'], scores['explainers']['random']
  assert np.all(lrp['RegionPerturbation_MoRF'] > random['RegionPerturbation_MoRF'])
  assert np.all(lrp['RegionPerturbation_MoRF'] > lrp['RegionPerturbation_LeRF'])
  assert np.all(lrp['FaithfulnessCorrelation'] > random['FaithfulnessCorrelation'])
  assert np.all(lrp['RelevanceMassAccuracy'] > 2 * random['RelevanceMassAccuracy'])
  assert np.all(lrp['AUC'] > 0.75) and np.all(np.abs(random['AUC'] - 0.5) < 0.1)


def test_report_section_and_figure(scores, tmp_path):
  quality = summary.summarise(
    scores, small_settings(), 0.5, {'images': 8, 'mask_name': 'planted square'}
  )
  quality['figure'] = 'explanation_quality.png'
  lines = summary.markdown(quality)
  text = '\n'.join(lines)
  for method in small_settings().explainers:
    assert f'| {method} |' in text
  assert quality['verdict'] in text and '| explainer | MPRT ↓ |' in text
  row = quality['table']['random']['MPRT']
  assert row['mean'] == pytest.approx(1.0) and len(row['per_seed']) == 2
  summary.write_figure(str(tmp_path / 'quality.png'), quality)
  assert (tmp_path / 'quality.png').stat().st_size > 10_000


def test_only_the_chosen_measures_run(trained):
  model, variables, images, _ = trained
  settings = small_settings(explainers=('edges',), measures=('Sparseness', 'AUC'))
  chosen = table.evaluate(model, variables, images, None, settings)  # no masks: no AUC
  assert set(chosen['explainers']['edges']) == {'Sparseness'}
  assert chosen['mprt_curves'] == {} and chosen['region_curves'] == {'edges': {}}


def test_randomisation_scores_from_given_maps_match_those_it_explains(trained):
  """Given the trained model's maps (as Quantus takes a_batch), the randomisation measures come
  out the same as when the table explains them itself."""
  model, variables, images, _ = trained
  settings = small_settings(explainers=('gradient',))
  quality = table.QualityTable(model, settings)
  x = jnp.asarray(images)
  targets = jnp.argmax(jax.vmap(quality.logits, in_axes=(0, None))(variables, x), axis=-1)
  cascade = quality.cascade(variables, x, num_classes=2)
  maps, explained = quality.randomisation_scores('gradient', variables, x, targets, cascade)
  given_maps, given = quality.randomisation_scores(
    'gradient', variables, x, targets, cascade, original=maps
  )
  np.testing.assert_array_equal(np.asarray(given_maps), np.asarray(maps))
  assert set(given) == set(explained) >= {'MPRT', 'EfficientMPRT', 'RandomLogit'}
  for name, values in explained.items():
    np.testing.assert_allclose(np.asarray(given[name]), np.asarray(values), rtol=1e-5, atol=1e-6)


def test_verdict_when_nothing_passes():
  failing = {'random': {'MPRT': {'mean': 1.0}}, 'edges': {'MPRT': {'mean': 0.9}}}
  verdict = summary.choose_explainer(failing, 0.5)
  assert verdict['explainer'] is None and 'No explainer passes' in verdict['sentence']


def test_config_problems_name_the_key():
  quality = case_config.get_config().quality
  quality.update(explainers=('gradient', 'saliency'), region_patch=5, baseline='grey')
  problems = '\n'.join(table.config_problems(quality, 64))
  assert "quality.explainers: unknown ['saliency']" in problems
  assert 'quality.region_patch=5: must divide data.resolution=64' in problems
  assert "quality.baseline='grey'" in problems
