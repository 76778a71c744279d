"""Pictures of the data.

One example per class (the paper's Fig. 4) and one image under every remedy (Fig. 5).
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt
import numpy as np

from xaijax import remedies
from xaijax.data.defects import CLASS_NAMES


def first_of_each_class(split: dict, count: int = 1) -> np.ndarray:
  """Indices of the first `count` examples of every class present in the split, class by class."""
  return np.concatenate(
    [np.flatnonzero(split['label'] == c)[:count] for c in np.unique(split['label'])]
  )


def class_grid(
  split: dict, path: str, per_class: int = 2, title: str = '', class_names=CLASS_NAMES
) -> None:
  """Rows of classes; per class the overlaid image and its overlay mask, `per_class` examples."""
  chosen = first_of_each_class(split, per_class)
  labels = split['label'][chosen]
  classes = list(dict.fromkeys(labels.tolist()))
  figure, axes = plt.subplots(
    len(classes), 2 * per_class, figsize=(2.0 * 2 * per_class, 2.0 * len(classes)), squeeze=False
  )
  for row, label in enumerate(classes):
    for k, index in enumerate(chosen[labels == label]):
      axes[row, 2 * k].imshow(split['image'][index, ..., 0], cmap='gray', vmin=0, vmax=255)
      axes[row, 2 * k + 1].imshow(split['mask'][index, ..., 0], cmap='magma', vmin=0, vmax=1)
      if row == 0:
        axes[row, 2 * k].set_title('image', fontsize=8)
        axes[row, 2 * k + 1].set_title('overlay mask', fontsize=8)
    axes[row, 0].set_ylabel(f'{label}: {class_names[label]}', fontsize=8)
  _finish(figure, axes, path, title)


def _finish(figure, axes, path: str, title: str) -> None:
  """No ticks (these are images), the title on top, saved and closed."""
  for axis in axes.ravel():
    axis.set_xticks([])
    axis.set_yticks([])
  if title:
    figure.suptitle(title, fontsize=10)
  figure.tight_layout(rect=(0, 0, 1, 0.97) if title else None)
  figure.savefig(path, dpi=110)
  plt.close(figure)


def image_row(images: dict[str, np.ndarray], path: str, title: str = '') -> None:
  """One panel per named uint8 [H, W, 1] image, side by side.

  For example the same image under every remedy.
  """
  figure, axes = plt.subplots(1, len(images), figsize=(2.4 * len(images), 2.8), squeeze=False)
  for axis, (name, image) in zip(axes[0], images.items()):
    axis.imshow(image[..., 0], cmap='gray', vmin=0, vmax=255)
    axis.set_title(name, fontsize=9)
  _finish(figure, axes, path, title)


def write_previews(splits: dict, out: str, title: str, class_names=CLASS_NAMES) -> list[str]:
  """dataset_classes.png and dataset_remedies.png in `out`.

  dataset_classes.png shows two examples per class, with masks; dataset_remedies.png one test image
  under every remedy. Needs the 'train' and 'test' splits.
  """
  os.makedirs(out, exist_ok=True)
  classes_png = os.path.join(out, 'dataset_classes.png')
  class_grid(splits['train'], classes_png, per_class=2, title=title, class_names=class_names)
  test = splits['test']
  index = int(first_of_each_class(test)[0])
  image, mask = test['image'][index : index + 1], test['mask'][index : index + 1]
  panels = {'clean (truth)': test['clean'][index], 'original': image[0]}
  for name in ('blur', 'crop', 'black_stripe'):
    panels[name] = remedies.apply(name, image)[0]
  panels['telea (mask)'] = remedies.apply('telea', image, mask, region='mask')[0]
  remedies_png = os.path.join(out, 'dataset_remedies.png')
  image_row(panels, remedies_png, title='one test image under every remedy')
  return [classes_png, remedies_png]
