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
    axis.legend(fontsize=6, loc='best', markerscale=1.5)
  return _save(
    figure, path, 'Laplacian eigenmap (eigenvectors 2 and 3) of the items per class, by cluster'
  )


def _outline(axis, mask, colour):
  if np.asarray(mask).any():
    axis.contour(np.asarray(mask, float), levels=[0.5], colors=colour, linewidths=1.0)


def clusters_figure(
  path, classes, source, groups, found_items, item_cluster, heatmaps, examples=5
) -> str:
  """One row per cluster shown: the classes with a shortcut show all their clusters, the others
  their top-ranked one. Each row: the mean heatmap of the cluster's images, then members with the
  outline of their items in the cluster."""
  rows = []
  for entry in classes:
    if not entry['clusters']:
      continue
    flagged = any(c['shortcut_evidence'] for c in entry['clusters'])
    for cluster in entry['clusters'] if flagged else entry['clusters'][:1]:
      rows.append((entry, cluster))
  rows = rows[:14]
  figure, axes = plt.subplots(
    len(rows), examples + 1, figsize=(1.9 * (examples + 1), 2.0 * len(rows)), squeeze=False
  )
  item_class = groups[found_items.image]
  for row, (entry, cluster) in enumerate(rows):
    chosen = np.flatnonzero((item_class == entry['class']) & (item_cluster == cluster['cluster']))
    images = np.unique(found_items.image[chosen])
    outlines = found_items.outlines(chosen, len(groups))
    mean = normalize(normalize(heatmaps[images]).mean(axis=0)[None])[0]
    axes[row, 0].imshow(mean, cmap='bwr', vmin=-1, vmax=1, interpolation='nearest')
    verdict = 'SHORTCUT' if cluster['shortcut_evidence'] else ''
    axes[row, 0].set_title(
      f'{entry["name"]} c{cluster["cluster"]} ({cluster["images"]} img) {verdict}\n'
      f'flip {cluster["flip_rate"]:.2f} vs {cluster["control_flip_rate"]:.2f}, '
      f'share {cluster["relevance_in_mask"]:.2f}',
      fontsize=7,
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
    'Per cluster: mean heatmap of its images (red +, blue -), then members, outlined (red)',
  )


def masks_figure(path, splits, found_masks, per_class, has_truth: bool, examples: int = 4) -> str:
  """Rows of images that show a found shortcut, per split: image and outlines, heatmap."""
  rows = []
  for name in ('train', 'test', 'test_attacked'):
    if name not in found_masks:
      continue
    shown = np.flatnonzero(found_masks[name].any(axis=(1, 2, 3)))[:examples]
    rows += [(name, int(i)) for i in shown]
  if not rows:
    return ''
  figure, axes = plt.subplots(len(rows), 2, figsize=(4.4, 2.2 * len(rows)), squeeze=False)
  for row, (name, index) in enumerate(rows):
    image = splits[name]['image'][index, ..., 0]
    axes[row, 0].imshow(image, cmap='gray', vmin=0, vmax=255)
    _outline(axes[row, 0], found_masks[name][index, ..., 0], FOUND_COLOUR)
    if has_truth:
      _outline(axes[row, 0], splits[name]['mask'][index, ..., 0], TRUE_COLOUR)
    heatmap = _heatmap_of(per_class, name, index)
    if heatmap is not None:
      axes[row, 1].imshow(normalize(heatmap[None])[0], cmap='bwr', vmin=-1, vmax=1)
    axes[row, 0].set_ylabel(f'{name} #{index}', fontsize=7)
  for axis in axes.ravel():
    axis.set_xticks([])
    axis.set_yticks([])
  legend = 'found (red) and true (green) outline' if has_truth else 'found outline (red)'
  return _save(figure, path, f'{legend}; heatmap for the shortcut class')


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
