"""Figures of a reveal, for a person to check what the numbers say.

reveal_eigenvalues.png   per class, the smallest Laplacian eigenvalues and the gap that chose k
reveal_embedding.png     per class, a 2-D Laplacian eigenmap of what was clustered, by cluster
reveal_clusters.png      per cluster shown: its mean heatmap beside members with their outlines
reveal_masks.png         images showing a found shortcut: heatmap, found outline (and the true one)
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt
import numpy as np

from xaijax.lrp.heatmaps import normalize

FOUND_COLOUR, TRUE_COLOUR = 'red', 'lime'
MAX_ROWS = 40


def _grid(count: int, columns: int, size: float = 2.6):
  rows = max(1, -(-count // columns))
  figure, axes = plt.subplots(rows, columns, figsize=(size * columns, size * rows), squeeze=False)
  for axis in axes.ravel()[count:]:
    axis.axis('off')
  return figure, axes.ravel()


def _save(figure, path: str, title: str) -> str:
  figure.suptitle(title, fontsize=10)
  figure.tight_layout(rect=(0, 0, 1, 0.96))
  figure.savefig(path, dpi=100)
  plt.close(figure)
  return os.path.basename(path)


def eigenvalues_figure(path: str, classes: list[dict]) -> str:
  figure, axes = _grid(len(classes), 5)
  for axis, entry in zip(axes, classes):
    values = np.asarray(entry['eigenvalues'])[:16]
    k = entry['num_clusters']
    axis.plot(np.arange(1, len(values) + 1), values, 'o-', ms=3, lw=1)
    axis.axvline(k + 0.5, color='red', ls='--', lw=1)
    axis.set_title(f'{entry["name"]}\nk = {k}, gap {entry["eigengap"]:.3f}', fontsize=8)
    axis.set_xlabel('eigenvalue number', fontsize=7)
    axis.tick_params(labelsize=6)
  return _save(figure, path, 'Laplacian eigenvalues per class; dashed: the eigengap that chose k')


def embedding_figure(path: str, classes: list[dict], groups, found_items, item_cluster, eigenmap):
  figure, axes = _grid(len(classes), 5)
  item_class = groups[found_items.image]
  for axis, entry in zip(axes, classes):
    members = np.flatnonzero(item_class == entry['class'])
    points = eigenmap[members]
    flagged = {c['cluster'] for c in entry['clusters'] if c['shortcut_evidence']}
    for number in range(entry['num_clusters']):
      inside = item_cluster[members] == number
      axis.scatter(
        *points[inside].T,
        s=14 if number in flagged else 6,
        marker='*' if number in flagged else 'o',
        label=f'{number} ({inside.sum()})' + (' shortcut' if number in flagged else ''),
      )
    axis.set_title(entry['name'], fontsize=8)
    axis.set_xticks([])
    axis.set_yticks([])
    if entry['num_clusters']:
      axis.legend(fontsize=6, loc='best', markerscale=1.5)
  return _save(
    figure, path, 'Laplacian eigenmap (eigenvectors 2 and 3) of the items per class, by cluster'
  )


def _outline(axis, mask, colour, width: float = 1.0, style: str = 'solid'):
  if np.asarray(mask).any():
    axis.contour(
      np.asarray(mask, float), levels=[0.5], colors=colour, linewidths=width, linestyles=style
    )


def clusters_figure(
  path, classes, source, groups, found_items, item_cluster, heatmaps, examples=5
) -> str:
  """One row per cluster, class by class, best-ranked first (at most MAX_ROWS): the mean heatmap of
  the cluster's images, then members with the outline of their items in the cluster. What a person
  looks at before naming clusters in `reveal.shortcut_clusters`."""
  rows = [(entry, cluster) for entry in classes for cluster in entry['clusters']][:MAX_ROWS]
  figure, axes = plt.subplots(
    len(rows), examples + 1, figsize=(1.6 * (examples + 1), 1.75 * len(rows)), squeeze=False
  )
  item_class = groups[found_items.image]
  for row, (entry, cluster) in enumerate(rows):
    chosen = np.flatnonzero((item_class == entry['class']) & (item_cluster == cluster['cluster']))
    images = np.unique(found_items.image[chosen])
    outlines = found_items.outlines(chosen, len(groups))
    mean = normalize(normalize(heatmaps[images]).mean(axis=0)[None])[0]
    axes[row, 0].imshow(mean, cmap='bwr', vmin=-1, vmax=1, interpolation='nearest')
    verdict = ' EVIDENCE' if cluster['shortcut_evidence'] else ''
    axes[row, 0].set_title(
      f'{entry["class"]}:{cluster["cluster"]} {entry["name"]}{verdict}\n'
      f'{cluster["images"]} img, rep {cluster.get("pattern_repetition", float("nan")):.2f}, '
      f'flip {cluster["flip_rate"]:.2f} (ctrl {cluster["control_flip_rate"]:.2f}), '
      f'copy {cluster.get("copy_spread", float("nan")):.2f}',
      fontsize=6,
    )
    for column, index in enumerate(images[:examples], start=1):
      axes[row, column].imshow(source['image'][index, ..., 0], cmap='gray', vmin=0, vmax=255)
      _outline(axes[row, column], outlines[index], FOUND_COLOUR)
  for axis in axes.ravel():
    axis.set_xticks([])
    axis.set_yticks([])
  return _save(
    figure,
    path,
    'Per cluster (class:cluster): mean heatmap of its images, then members, outlined (red)',
  )


def masks_figure(path, splits, found_masks, per_class, has_truth: bool, examples: int = 4) -> str:
  """Per split, a row of images that show a found shortcut: each with its outlines, beside its
  heatmap for the shortcut's class."""
  rows = []
  for name in ('train', 'test', 'test_attacked'):
    if name in found_masks:
      shown = np.flatnonzero(found_masks[name].any(axis=(1, 2, 3)))[:examples]
      if len(shown):
        rows.append((name, shown))
  if not rows:
    return ''
  figure, axes = plt.subplots(
    len(rows), 2 * examples, figsize=(1.5 * 2 * examples, 1.7 * len(rows)), squeeze=False
  )
  for row, (name, shown) in enumerate(rows):
    for k, index in enumerate(shown):
      image_axis, map_axis = axes[row, 2 * k], axes[row, 2 * k + 1]
      image_axis.imshow(splits[name]['image'][index, ..., 0], cmap='gray', vmin=0, vmax=255)
      # Wide found, thin dashed true on top: both stay visible where they coincide.
      _outline(image_axis, found_masks[name][index, ..., 0], FOUND_COLOUR, width=2.5)
      if has_truth:
        _outline(image_axis, splits[name]['mask'][index, ..., 0], TRUE_COLOUR, 1.0, 'dashed')
      heatmap = _heatmap_of(per_class, name, index)
      if heatmap is not None:
        map_axis.imshow(normalize(heatmap[None])[0], cmap='bwr', vmin=-1, vmax=1)
      image_axis.set_title(f'{name} #{index}', fontsize=6)
  for axis in axes.ravel():
    axis.set_xticks([])
    axis.set_yticks([])
    if not axis.images:
      axis.axis('off')
  legend = (
    'found (red, wide) and true (green, dashed) outlines' if has_truth else 'found outlines (red)'
  )
  return _save(figure, path, f'Images that show a found shortcut: {legend}, heatmap beside')


def _heatmap_of(per_class, name, index):
  """The heatmap for the first shortcut class (an image is usually flagged for one)."""
  for explained in per_class.values():
    if name in explained:
      return explained[name][0].heatmaps[index]
  return None


def write_all(
  out_dir,
  summary,
  source,
  groups,
  found_items,
  item_cluster,
  eigenmap,
  heatmaps,
  splits,
  found_masks,
  per_class,
  has_truth,
) -> list[str]:
  """Every figure of the reveal; returns their file names."""
  classes = summary['classes']
  written = [
    eigenvalues_figure(os.path.join(out_dir, 'reveal_eigenvalues.png'), classes),
    embedding_figure(
      os.path.join(out_dir, 'reveal_embedding.png'),
      classes,
      groups,
      found_items,
      item_cluster,
      eigenmap,
    ),
    clusters_figure(
      os.path.join(out_dir, 'reveal_clusters.png'),
      classes,
      source,
      groups,
      found_items,
      item_cluster,
      heatmaps,
    ),
    masks_figure(
      os.path.join(out_dir, 'reveal_masks.png'), splits, found_masks, per_class, has_truth
    ),
  ]
  return [name for name in written if name]
