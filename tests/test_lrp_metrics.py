"""Localisation metrics on hand-built maps and pixel flipping on a predictor with known answers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xaijax.lrp import metrics


def test_relevance_mass_counts_positive_relevance_only():
  relevance = np.array(
    [
      [[3.0, -1.0], [1.0, 0.0]],  # 3 of 4 positive inside
      [[-5.0, 2.0], [2.0, 0.0]],  # only negative relevance inside
      [[-1.0, -2.0], [0.0, 0.0]],  # no positive relevance at all
      [[1.0, 1.0], [1.0, 1.0]],
    ]
  )  # empty mask
  mask = np.array([[[1, 0], [0, 0]]] * 3 + [[[0, 0], [0, 0]]], np.uint8)
  mass = metrics.relevance_mass_in_mask(relevance, mask)
  np.testing.assert_allclose(mass[:3], [0.75, 0.0, 0.0])
  assert np.isnan(mass[3])


def test_relevance_mass_sums_channels_and_accepts_masks_with_a_channel_axis():
  rng = np.random.default_rng(0)
  relevance = rng.normal(size=(3, 6, 5, 2))
  mask = (rng.uniform(size=(3, 6, 5, 1)) < 0.3).astype(np.uint8)
  ours = metrics.relevance_mass_in_mask(relevance, mask)
  for n in range(3):
    summed = relevance[n].sum(axis=-1)
    inside = mask[n, ..., 0] == 1
    positive = np.maximum(summed, 0)
    np.testing.assert_allclose(ours[n], positive[inside].sum() / positive.sum(), rtol=1e-6)


def test_rank_accuracy_on_a_hand_built_map():
  relevance = np.array([[[9.0, 8.0, 0.0], [7.0, 0.0, 0.0]]])
  mask = np.array([[[0, 1, 0], [1, 0, 1]]])  # K = 3: top-3 pixels are 9 (out), 8 (in), 7 (in)
  np.testing.assert_allclose(metrics.relevance_rank_accuracy(relevance, mask), [2 / 3])


def test_rank_accuracy_matches_a_sorting_loop():
  rng = np.random.default_rng(1)
  relevance = rng.normal(size=(4, 7, 7))
  mask = (rng.uniform(size=(4, 7, 7)) < 0.25).astype(np.uint8)
  ours = metrics.relevance_rank_accuracy(relevance, mask)
  for n in range(4):
    flat, inside = relevance[n].ravel(), mask[n].ravel()
    top = sorted(range(flat.size), key=lambda i: -flat[i])[: inside.sum()]
    np.testing.assert_allclose(ours[n], inside[top].mean(), rtol=1e-6)


def test_pointing_game():
  relevance = np.array([[[0.0, 5.0], [1.0, 0.0]], [[0.0, 5.0], [1.0, 0.0]]])
  mask = np.array([[[0, 1], [0, 0]], [[0, 0], [1, 0]]])
  np.testing.assert_array_equal(metrics.pointing_game(relevance, mask), [1.0, 0.0])


def test_mismatched_shapes_are_explained():
  with pytest.raises(ValueError, match='same pixels'):
    metrics.relevance_mass_in_mask(np.zeros((2, 4, 4)), np.zeros((2, 4, 5)))


def linear_predictor(weights):
  """Scores [N, 2]: class 0 = sum(w * x), class 1 = -sum(w * x)."""

  def predict(images):
    score = jnp.sum(images * weights, axis=(1, 2, 3))
    return jnp.stack([score, -score], axis=1)

  return predict


def test_pixel_flipping_curve_of_a_linear_model_is_its_sorted_contributions():
  rng = np.random.default_rng(2)
  images = rng.uniform(0.1, 1.0, size=(2, 4, 4, 1)).astype(np.float32)
  weights = rng.normal(size=(4, 4, 1)).astype(np.float32)
  contributions = images * weights  # exact relevance of a linear model, baseline 0
  result = metrics.pixel_flipping(
    linear_predictor(weights),
    images,
    contributions,
    target=np.array([0, 0]),
    key=jax.random.key(0),
    steps=16,
  )
  for n in range(2):
    ordered = np.sort(contributions[n].ravel())[::-1]
    expected = ordered.sum() - np.concatenate([[0.0], np.cumsum(ordered)])
    np.testing.assert_allclose(result.relevance_curve[n], expected, rtol=1e-5, atol=1e-5)
    # Random order flips the same pixels in the end: same start and end points.
    np.testing.assert_allclose(result.random_curve[n, [0, -1]], expected[[0, -1]], atol=1e-5)
    np.testing.assert_allclose(result.aopc_relevance[n], np.mean(expected[0] - expected), rtol=1e-5)
  # Removing the most positive evidence first drops the score faster than a random order.
  assert np.all(result.aopc_relevance > result.aopc_random)


def test_pixel_flipping_in_patches_and_towards_a_baseline_image():
  rng = np.random.default_rng(3)
  images = rng.uniform(size=(1, 4, 4, 1)).astype(np.float32)
  weights = np.ones((4, 4, 1), np.float32)
  relevance = np.zeros((1, 4, 4))
  relevance[0, 2:, :2] = 1.0  # the bottom-left 2x2 patch goes first
  baseline = np.full((4, 4, 1), 0.5, np.float32)
  result = metrics.pixel_flipping(
    linear_predictor(weights),
    images,
    relevance,
    target=np.array([0]),
    key=jax.random.key(1),
    steps=4,
    baseline=baseline,
    patch=2,
  )
  after_first = images.copy()
  after_first[0, 2:, :2] = 0.5
  np.testing.assert_allclose(
    result.relevance_curve[0, :2], [images.sum(), after_first.sum()], rtol=1e-6
  )
  np.testing.assert_allclose(result.relevance_curve[0, -1], 0.5 * 16, rtol=1e-6)
  with pytest.raises(ValueError, match='patch 3'):
    metrics.pixel_flipping(
      linear_predictor(weights),
      images,
      relevance,
      target=np.array([0]),
      key=jax.random.key(1),
      patch=3,
    )
