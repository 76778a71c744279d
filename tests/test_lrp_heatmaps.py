"""Heatmap helpers: channel sums, [-1, 1] scaling, per-class means and the PNGs they write."""

import matplotlib.image
import numpy as np
import pytest

from xaijax.lrp import heatmaps


def test_heatmap_sums_channels():
  relevance = np.arange(2 * 3 * 3 * 3, dtype=np.float32).reshape(2, 3, 3, 3)
  np.testing.assert_allclose(heatmaps.heatmap(relevance), relevance.sum(axis=-1))


def test_normalize_scales_each_map_by_its_largest_magnitude():
  maps = np.array([[[2.0, -4.0]], [[0.0, 0.0]], [[0.5, 0.25]]])
  np.testing.assert_allclose(heatmaps.normalize(maps), [[[0.5, -1.0]], [[0.0, 0.0]], [[1.0, 0.5]]])


def test_class_means_weigh_every_image_equally():
  maps = np.array([[[1.0, 0.0]], [[0.0, 100.0]], [[-3.0, 3.0]]])
  labels = np.array([0, 0, 2])
  means, counts = heatmaps.mean_relevance_per_class(maps, labels, num_classes=3)
  np.testing.assert_array_equal(counts, [2, 0, 1])
  np.testing.assert_allclose(means[0], [[1.0, 1.0]])  # (1, 0) and (0, 1) averaged, rescaled
  np.testing.assert_allclose(means[1], [[0.0, 0.0]])
  np.testing.assert_allclose(means[2], [[-1.0, 1.0]])


def read_png(path):
  image = matplotlib.image.imread(path)
  assert image.ndim == 3 and image.shape[-1] in (3, 4)
  return image[..., :3]


def test_grid_png_shows_positive_relevance_red_and_negative_blue(tmp_path):
  images = np.zeros((3, 16, 16, 1), np.uint8)
  relevance = np.zeros((3, 16, 16, 1))
  relevance[:, :8] = 1.0  # top half: evidence for the class
  relevance[:, 8:] = -1.0  # bottom half: against
  path = tmp_path / 'grid.png'
  heatmaps.write_heatmap_grid(path, images, relevance, titles=['a', 'b', 'c'], columns=2)
  pixels = read_png(path)
  red = (pixels[..., 0] > 0.9) & (pixels[..., 1] < 0.1) & (pixels[..., 2] < 0.1)
  blue = (pixels[..., 2] > 0.9) & (pixels[..., 0] < 0.1) & (pixels[..., 1] < 0.1)
  assert red.sum() > 500 and blue.sum() > 500


def test_class_means_png_and_mismatched_inputs(tmp_path):
  path = tmp_path / 'means.png'
  heatmaps.write_class_means(
    path,
    np.random.default_rng(0).normal(size=(6, 8, 8)),
    np.array([0, 1, 2, 0, 1, 2]),
    ['x', 'y', 'z'],
  )
  assert read_png(path).shape[0] > 100
  with pytest.raises(ValueError, match='3 images but 2'):
    heatmaps.explanation_figure(np.zeros((3, 4, 4, 1)), np.zeros((2, 4, 4)))
