"""`synthetic_gc10`: the embedded dataset, generated procedurally and deterministically from a seed.

Ten GC10-DET classes drawn on brushed metal (`defects.py`), GC10-DET's class imbalance scaled by
`class_scale`, overlays burnt in (`overlays.py`). Nothing is downloaded: the code is the dataset.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import tensorflow_datasets as tfds

from xaijax.data import builder, defects, overlays


@dataclasses.dataclass(eq=False)
class SyntheticGc10Config(builder.OverlaidImagesConfig):
  class_scale: float = 0.5
  min_per_class: int = 10
  image_seed: int = 0
  defect_placement: str = 'anywhere'  # defects.DEFECT_PLACEMENTS

  def labels(self) -> np.ndarray:
    counts = defects.class_counts(self.class_scale, self.min_per_class)
    return np.repeat(np.arange(defects.NUM_CLASSES), counts)


def make_config(
  resolution=64,
  class_scale=0.5,
  min_per_class=10,
  image_seed=0,
  defect_placement='anywhere',
  overlay_mode='spurious',
  logo_class_probability=0.9,
  overlay_seed=0,
  split_seed=0,
  split_fractions=(0.7, 0.2, 0.1),
  overlay_placement='strips',
  poison_classes=(1, 5),
  poison_fraction=0.3,
) -> SyntheticGc10Config:
  config = SyntheticGc10Config(
    name='pending',
    resolution=int(resolution),
    class_scale=float(class_scale),
    min_per_class=int(min_per_class),
    image_seed=int(image_seed),
    defect_placement=str(defect_placement),
    overlay_mode=overlay_mode,
    logo_class_probability=float(logo_class_probability),
    overlay_seed=int(overlay_seed),
    split_seed=int(split_seed),
    split_fractions=tuple(float(f) for f in split_fractions),
    overlay_placement=overlay_placement,
    poison_classes=tuple(int(c) for c in poison_classes),
    poison_fraction=float(poison_fraction),
  )
  builder.validate_overlay_settings(config)
  defects.Frame(config.resolution, 0, config.defect_placement)  # a bad placement fails here
  config.name = (
    f'{config.settings_name()}_c{class_scale:g}-{min_per_class}_i{image_seed}_{defect_placement}'
  )
  return config


def clean_image(
  config: SyntheticGc10Config, index: int, label: int
) -> tuple[np.ndarray, np.ndarray]:
  """(clean image, defect mask) of one example, both uint8 [R, R]."""
  rng = np.random.default_rng([config.image_seed, index])
  frame = defects.Frame(
    config.resolution, overlays.strip_height(config.resolution), config.defect_placement
  )
  return defects.render_clean_image(rng, label, frame)


class SyntheticGc10(tfds.core.GeneratorBasedBuilder):
  """Synthetic GC10-DET-like metal surface defects with burnt-in text and logos."""

  VERSION = tfds.core.Version('1.1.0')
  RELEASE_NOTES: ClassVar[dict[str, str]] = {
    '1.0.0': 'First release.',
    '1.1.0': 'A logo placed anywhere is the same pixels as in the strips (was 1 px off where its '
    'place had the other parity); the strip overlays are unchanged.',
  }
  BUILDER_CONFIGS: ClassVar[list[SyntheticGc10Config]] = [make_config()]

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
      features=builder.features(self.builder_config.resolution),
      supervised_keys=('image', 'label'),
      description=__doc__,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    return builder.split_generators(
      self.builder_config.labels(), self.builder_config, self._generate_examples
    )

  def _generate_examples(self, indices: np.ndarray, split_kind: str):
    config = self.builder_config
    labels = config.labels()
    for index in indices:
      clean, defect = clean_image(config, int(index), int(labels[index]))
      yield (
        int(index),
        builder.overlaid_example(clean, defect, int(labels[index]), int(index), split_kind, config),
      )


def make_builder(config: SyntheticGc10Config, data_dir: str) -> SyntheticGc10:
  # TFDS refuses a custom config object that shares a name with a registered one; pass the name
  # then.
  registered = {c.name for c in SyntheticGc10.BUILDER_CONFIGS}
  return SyntheticGc10(
    data_dir=data_dir, config=config.name if config.name in registered else config
  )
