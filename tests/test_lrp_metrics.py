"""Localisation metrics on hand-built maps (faithfulness lives in tests/test_quality_*)."""

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
