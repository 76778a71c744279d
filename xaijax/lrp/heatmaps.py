"""Heatmaps as in Bento et al. (Fig. 3, 6-8): the image beside its relevance, red for evidence
for the class, blue against, each map scaled to [-1, 1] by its largest absolute value.

Figures are built with `matplotlib.figure.Figure` (no pyplot state), so writing PNGs works in
scripts, tests and threads alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

COLORMAP = 'bwr'


def heatmap(relevance):
  """Relevance [N, H, W, C] -> [N, H, W], summed over channels."""
  return jnp.sum(jnp.asarray(relevance), axis=-1)


def normalize(maps):
  """Each map [N, H, W] divided by its largest |value|: values in [-1, 1] (zero maps stay 0)."""
  maps = np.asarray(maps, np.float64)
  scale = np.abs(maps).reshape(maps.shape[0], -1).max(axis=1)
  scale = np.where(scale > 0, scale, 1.0)
  return maps / scale[:, None, None]


def mean_relevance_per_class(maps, labels, num_classes: int):
  """Dataset-level heatmaps: per class, the mean of its normalised maps, rescaled to [-1, 1].

  Every image counts equally whatever its logit. Returns (maps [K, H, W], counts [K]); a class
  without examples has an all-zero map.
  """
  maps = normalize(_as_maps(maps))
  labels = np.asarray(labels)
  means = np.zeros((num_classes,) + maps.shape[1:])
  counts = np.bincount(labels, minlength=num_classes)[:num_classes]
  for label in range(num_classes):
    if counts[label]:
      means[label] = maps[labels == label].mean(axis=0)
  return normalize(means), counts


def _as_maps(relevance):
  relevance = np.asarray(relevance)
  return relevance.sum(axis=-1) if relevance.ndim == 4 else relevance


def _show_image(ax, image):
  image = np.asarray(image)
  if image.ndim == 3 and image.shape[-1] == 1:
    image = image[..., 0]
  ax.imshow(image, cmap='gray' if image.ndim == 2 else None, interpolation='nearest')


def _show_map(ax, relevance_map):
  return ax.imshow(relevance_map, cmap=COLORMAP, vmin=-1.0, vmax=1.0, interpolation='nearest')


def explanation_figure(images, relevance, titles: Sequence[str] | None = None, columns: int = 4):
  """A grid of (image, heatmap) pairs, `columns` pairs per row, with one colour bar."""
  from matplotlib.figure import Figure  # pylint: disable=import-outside-toplevel

  maps = normalize(_as_maps(relevance))
  count = maps.shape[0]
  if len(images) != count:
    raise ValueError(f'{len(images)} images but {count} relevance maps.')
  columns = max(1, min(columns, count))
  rows = -(-count // columns)
  figure = Figure(figsize=(2.4 * 2 * columns, 2.6 * rows), layout='constrained')
  axes = figure.subplots(rows, 2 * columns, squeeze=False)
  shown = None
  for index in range(rows * columns):
    ax_image, ax_map = axes[index // columns, 2 * (index % columns) : 2 * (index % columns) + 2]
    for ax in (ax_image, ax_map):
      ax.set_axis_off()
    if index >= count:
      continue
    _show_image(ax_image, images[index])
    shown = _show_map(ax_map, maps[index])
    if titles is not None:
      ax_image.set_title(str(titles[index]), fontsize=9)
  figure.colorbar(shown, ax=axes, shrink=0.6, label='relevance (normalised)')
  return figure


def write_heatmap_grid(
  path, images, relevance, titles: Sequence[str] | None = None, columns: int = 4, dpi: int = 100
) -> None:
  """PNG of `explanation_figure`."""
  explanation_figure(images, relevance, titles, columns).savefig(path, dpi=dpi)


def write_class_means(path, maps, labels, class_names: Sequence[str], dpi: int = 100) -> None:
  """PNG with one mean relevance map per class (`mean_relevance_per_class`), titled with the
  class name and the number of images."""
  from matplotlib.figure import Figure  # pylint: disable=import-outside-toplevel

  means, counts = mean_relevance_per_class(maps, labels, len(class_names))
  columns = min(5, len(class_names))
  rows = -(-len(class_names) // columns)
  figure = Figure(figsize=(2.4 * columns, 2.6 * rows), layout='constrained')
  axes = figure.subplots(rows, columns, squeeze=False)
  shown = None
  for index, ax in enumerate(axes.ravel()):
    ax.set_axis_off()
    if index < len(class_names):
      shown = _show_map(ax, means[index])
      ax.set_title(f'{class_names[index]} (n={counts[index]})', fontsize=9)
  figure.colorbar(shown, ax=axes, shrink=0.6, label='mean relevance (normalised)')
  figure.savefig(path, dpi=dpi)
