"""Datasets: the embedded `synthetic_gc10`, the real `gc10_det` and your own `image_folder`, read
into numpy splits.

`load_splits(config.data)` builds the TFDS dataset once (array_record, no TensorFlow) under
`config.data.data_dir` and returns
{split: {'image', 'clean', 'mask', 'defect', 'label', 'logo', 'index'}} with images
uint8 [N, H, W, 1], in a fixed order (by example index).
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow_datasets as tfds

from xaijax.data import gc10, image_folder, synthetic
from xaijax.data.defects import CLASS_NAMES, NUM_CLASSES  # noqa: F401  (re-exported)
from xaijax.data.splits import SPLIT_NAMES, TEST_VARIANTS

ALL_SPLITS = tuple(n for n in SPLIT_NAMES if n != 'test') + tuple(TEST_VARIANTS)
DATASETS = ('synthetic_gc10', 'gc10_det', 'image_folder')
DEFAULT_DATA_DIR = os.path.join('~', '.cache', 'xaijax', 'tensorflow_datasets')


def make_builder(data_config) -> tfds.core.DatasetBuilder:
  """The TFDS builder the data config describes (nothing is generated yet)."""
  data_dir = os.path.expanduser(data_config.data_dir or DEFAULT_DATA_DIR)
  common = dict(
    resolution=data_config.resolution,
    overlay_mode=data_config.overlay_mode,
    logo_class_probability=data_config.logo_class_probability,
    overlay_seed=data_config.overlay_seed,
    split_seed=data_config.split_seed,
    split_fractions=tuple(data_config.split_fractions),
    overlay_placement=data_config.overlay_placement,
    poison_classes=tuple(data_config.poison_classes),
    poison_fraction=data_config.poison_fraction,
  )
  if data_config.name == 'synthetic_gc10':
    config = synthetic.make_config(
      class_scale=data_config.class_scale,
      min_per_class=data_config.min_per_class,
      image_seed=data_config.image_seed,
      defect_placement=data_config.defect_placement,
      **common,
    )
    return synthetic.make_builder(config, data_dir)
  if data_config.name == 'gc10_det':
    manual_dir = _manual_dir(data_config)
    # The config's identity hashes the folder's path, never its contents, so a built dataset is
    # found again after the folder was moved or deleted.
    config = gc10.make_config(manual_dir, on_corrupt=data_config.on_corrupt, **common)
    gc10_builder = gc10.Gc10Det(data_dir=data_dir, config=config)
    if not gc10_builder.is_prepared():
      gc10.scan(manual_dir)  # fail now, with the layout explained, rather than deep inside TFDS
    return gc10_builder
  if data_config.name == 'image_folder':
    return image_folder.ImageFolder(
      data_dir=data_dir,
      config=image_folder.make_config(
        _manual_dir(data_config), on_corrupt=data_config.on_corrupt, **common
      ),
    )
  raise ValueError(f'data.name must be one of {DATASETS}, got {data_config.name!r}')


def _manual_dir(data_config) -> str:
  if not data_config.manual_dir:
    what = {
      'gc10_det': "the folder of the GC10-DET download (holding '1' ... '10' and 'lable')",
      'image_folder': 'the folder of your images, one subfolder per class',
    }[data_config.name]
    raise ValueError(f'data.name={data_config.name!r} needs data.manual_dir: {what}')
  return os.path.expanduser(data_config.manual_dir)


def class_names(data_config) -> tuple[str, ...]:
  """The class names of the dataset: GC10-DET's ten, or an image folder's subfolders."""
  if data_config.name == 'image_folder':
    return image_folder.class_names(_manual_dir(data_config))
  return CLASS_NAMES


def ground_truth(data_config) -> dict[str, bool]:
  """What truth the data keeps beside its images: overlay masks (and with them the clean images
  and the attacked test set), and defect masks."""
  overlays = data_config.overlay_mode != 'none'
  return {'overlay_masks': overlays, 'defects': data_config.name != 'image_folder'}


def prepare(data_config) -> tfds.core.DatasetBuilder:
  """Build the dataset if it is not on disk yet; a finished build is reused."""
  builder = make_builder(data_config)
  download_config = None
  if data_config.name in ('gc10_det', 'image_folder'):
    download_config = tfds.download.DownloadConfig(
      manual_dir=os.path.expanduser(data_config.manual_dir)
    )
  builder.download_and_prepare(file_format='array_record', download_config=download_config)
  return builder


def read_split(builder: tfds.core.DatasetBuilder, split: str) -> dict[str, np.ndarray]:
  source = builder.as_data_source(split)
  examples = [source[i] for i in range(len(source))]
  if not examples:
    raise ValueError(f'split {split!r} of {builder.info.full_name} is empty')
  order = np.argsort([int(e['index']) for e in examples], kind='stable')
  arrays = {key: np.stack([np.asarray(examples[i][key]) for i in order]) for key in examples[0]}
  arrays['label'] = arrays['label'].astype(np.int32)
  arrays['logo'] = arrays['logo'].astype(np.int32)
  return arrays


def load_splits(data_config, splits=ALL_SPLITS) -> dict[str, dict[str, np.ndarray]]:
  builder = prepare(data_config)
  return {split: read_split(builder, split) for split in splits}
