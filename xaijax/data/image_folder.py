"""`image_folder`: your own images, one subfolder per class (nothing is fetched).

    <manual_dir>/<class name>/<any name>.<jpg|png|bmp|tif|webp|...>

Class names are the subfolder names, in sorted order (label 0 is the first). Hidden files and
folders are ignored, and so are files whose suffix is not an image's (counted in a log line). Images
are read as grayscale and resized to the configured square resolution. With `data.overlay_mode=none`
(the default for `data=image_folder`) nothing is burnt in: the data carries its own shortcut, if
any, and has no ground truth (no overlay masks, no clean images, no defect masks). With another
overlay mode the embedded overlays are burnt in as on GC10-DET, and then their masks are known.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import ClassVar

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from xaijax.data import builder, image_files
from xaijax.data.splits import SPLIT_NAMES

IMAGE_SUFFIXES = (
  '.jpg',
  '.jpeg',
  '.jpe',
  '.png',
  '.bmp',
  '.dib',
  '.tif',
  '.tiff',
  '.webp',
  '.jp2',
  '.pbm',
  '.pgm',
  '.ppm',
  '.pnm',
)
EXPECTED_LAYOUT = (
  'expected one subfolder per class holding its images: <manual_dir>/<class name>/<image> '
  f'({" ".join(IMAGE_SUFFIXES)}, any case)'
)


class ImageFolderError(image_files.LayoutError):
  """The folder does not hold one subfolder of images per class, or an image cannot be read."""


def _visible(name: str) -> bool:
  return not name.startswith('.')


def is_image(name: str) -> bool:
  return _visible(name) and os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


def class_names(manual_dir: str) -> tuple[str, ...]:
  """The class subfolders of `manual_dir`, sorted; a folder that is not laid out so is an error."""
  if not os.path.isdir(manual_dir):
    raise ImageFolderError(f'image folder {manual_dir!r} does not exist; {EXPECTED_LAYOUT}')
  entries = sorted(filter(_visible, os.listdir(manual_dir)))
  names = tuple(e for e in entries if os.path.isdir(os.path.join(manual_dir, e)))
  loose = [e for e in entries if is_image(e)]
  if len(names) < 2:
    found = f'found {len(names)} class folder(s)' + (
      f' and {len(loose)} image(s) directly inside it, which belong in class folders'
      if loose
      else ''
    )
    raise ImageFolderError(
      f'image folder {manual_dir!r}: {found}; a classifier needs at least 2 classes; '
      f'{EXPECTED_LAYOUT}'
    )
  return names


def scan(manual_dir: str) -> tuple[tuple[str, ...], list[tuple[str, int]]]:
  """(class names, [(image path, label)]) of the folder; an empty class folder is an error."""
  names = class_names(manual_dir)
  records, ignored = [], 0
  for label, name in enumerate(names):
    folder = os.path.join(manual_dir, name)
    files = sorted(f for f in os.listdir(folder) if os.path.isfile(os.path.join(folder, f)))
    images = [f for f in files if is_image(f)]
    ignored += sum(_visible(f) for f in files) - len(images)
    if not images:
      raise ImageFolderError(f'class folder {folder!r} holds no images; {EXPECTED_LAYOUT}')
    records += [(os.path.join(folder, f), label) for f in images]
  if ignored:
    logging.info('image_folder: ignored %d file(s) without an image suffix', ignored)
  return names, records


def load_images(manual_dir: str, resolution: int, on_corrupt: str):
  """(images uint8 [N, R, R], labels [N]) of every readable image; every class keeps at least one
  image per split, or the error names the folder."""
  names, records = scan(manual_dir)
  originals, kept = image_files.read_all(
    [path for path, _ in records], on_corrupt, 'image_folder', ImageFolderError
  )
  labels = np.array([records[k][1] for k in kept], np.int64)
  counts = np.bincount(labels, minlength=len(names))
  for label, count in enumerate(counts):
    if count < len(SPLIT_NAMES):
      raise ImageFolderError(
        f'class folder {os.path.join(manual_dir, names[label])!r} has {count} readable image(s); '
        f'each class needs at least {len(SPLIT_NAMES)} (one for each of {SPLIT_NAMES})'
      )
  return np.stack([image_files.resize(o, resolution) for o in originals]), labels


@dataclasses.dataclass(eq=False)
class ImageFolderConfig(builder.OverlaidImagesConfig):
  on_corrupt: str = 'error'
  # Hash of the folder's path and class names, so two folders never share a cache.
  source: str = ''
  class_names: tuple = ()


def make_config(
  manual_dir: str,
  resolution=64,
  overlay_mode='none',
  logo_class_probability=0.9,
  overlay_seed=0,
  split_seed=0,
  split_fractions=(0.7, 0.2, 0.1),
  on_corrupt='error',
  overlay_placement='strips',
  poison_classes=(1, 5),
  poison_fraction=0.3,
) -> ImageFolderConfig:
  names = class_names(manual_dir)
  identity = os.path.abspath(manual_dir) + '\n' + '\n'.join(names)
  source = hashlib.sha1(identity.encode()).hexdigest()[:8]
  config = ImageFolderConfig(
    name='pending',
    resolution=int(resolution),
    overlay_mode=overlay_mode,
    logo_class_probability=float(logo_class_probability),
    overlay_seed=int(overlay_seed),
    split_seed=int(split_seed),
    split_fractions=tuple(float(f) for f in split_fractions),
    on_corrupt=on_corrupt,
    source=source,
    class_names=names,
    overlay_placement=overlay_placement,
    poison_classes=tuple(int(c) for c in poison_classes),
    poison_fraction=float(poison_fraction),
  )
  builder.validate_overlay_settings(config, num_classes=len(names))
  config.name = f'{config.settings_name()}_{on_corrupt}_{source}'
  return config


class ImageFolder(tfds.core.GeneratorBasedBuilder):
  """A user's images in class subfolders, optionally with burnt-in overlays."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES: ClassVar[dict[str, str]] = {'1.0.0': 'First release.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = 'Point data.manual_dir at a folder with one subfolder per class.'

  def _info(self) -> tfds.core.DatasetInfo:
    config = self.builder_config
    return self.dataset_info_from_configs(
      features=builder.features(config.resolution, config.class_names),
      supervised_keys=('image', 'label'),
      description=__doc__,
    )

  def _split_generators(self, dl_manager):
    config = self.builder_config
    self._images, self._labels = load_images(
      os.fspath(dl_manager.manual_dir), config.resolution, config.on_corrupt
    )
    return builder.split_generators(self._labels, config, self._generate_examples)

  def _generate_examples(self, indices: np.ndarray, split_kind: str):
    for index in indices:
      image = self._images[index]
      yield (
        int(index),
        builder.overlaid_example(
          image,
          np.zeros_like(image),  # no defect masks: the user's data has none
          int(self._labels[index]),
          int(index),
          split_kind,
          self.builder_config,
        ),
      )
