"""What the two TFDS builders (embedded synthetic, real GC10-DET) share.

They share features, overlay settings and splits. A builder produces clean grayscale images and
labels; this module burns overlays in, splits the data stratified, and yields the five splits
(train, validation, test, test_clean, test_attacked). Features are `tfds.features.Tensor`, since
`tfds.features.Image` needs TensorFlow to encode PNGs (DESIGN.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from xaijax.data import overlays
from xaijax.data.defects import CLASS_NAMES
from xaijax.data.splits import SPLIT_NAMES, TEST_VARIANTS, stratified_split

# Independent random streams per example, so the three test variants share the image and the text.
_TEXT_STREAM, _LOGO_STREAM, _ATTACK_STREAM = 1, 2, 3


@dataclasses.dataclass(eq=False)
class OverlaidImagesConfig(tfds.core.BuilderConfig):
  """Settings that decide the bytes of the dataset; the config name is derived from them."""

  resolution: int = 64
  overlay_mode: str = 'spurious'
  logo_class_probability: float = 0.9
  overlay_seed: int = 0
  split_seed: int = 0
  split_fractions: tuple = (0.7, 0.2, 0.1)
  overlay_placement: str = 'strips'
  poison_classes: tuple = (1, 5)
  poison_fraction: float = 0.3

  def settings_name(self) -> str:
    fractions = '-'.join(f'{f:g}' for f in self.split_fractions)
    return (
      f'r{self.resolution}_{self.overlay_mode}_p{self.logo_class_probability:g}_o{self.overlay_seed}'
      f'_s{self.split_seed}_f{fractions}{self.shortcut_name()}'
    )

  def shortcut_name(self) -> str:
    """The name's part for placement and poisoning: empty for the paper's strips, so datasets built
    before these settings existed keep their names."""
    name = '_anywhere' if self.overlay_placement == 'anywhere' else ''
    if self.overlay_mode == 'poisoned':
      classes = '-'.join(str(int(c)) for c in self.poison_classes)
      name += f'_c{classes}_q{self.poison_fraction:g}'
    return name


def features(resolution: int, class_names=CLASS_NAMES) -> tfds.features.FeaturesDict:
  image = lambda: tfds.features.Tensor(shape=(resolution, resolution, 1), dtype=np.uint8)
  return tfds.features.FeaturesDict(
    {
      'image': image(),  # what the classifier sees: clean image with the overlay burnt in
      'clean': image(),  # the same image without overlay
      'mask': image(),  # 1 where an overlay pixel was drawn
      # 1 on the defect (synthetic: where it changed the texture; GC10: its boxes)
      'defect': image(),
      'label': tfds.features.ClassLabel(names=list(class_names)),
      'logo': tfds.features.Scalar(dtype=np.int32),  # logo shown, -1 for none
      'index': tfds.features.Scalar(dtype=np.int64),  # position in the unsplit dataset
    }
  )


def overlaid_example(
  clean: np.ndarray,
  defect: np.ndarray,
  label: int,
  index: int,
  split_kind: str,
  config: OverlaidImagesConfig,
) -> dict:
  """One example for split kind 'fit', 'test', 'clean' or 'attacked' from a clean uint8 [H, W] image
  and its defect mask."""
  text_rng = np.random.default_rng([config.overlay_seed, index, _TEXT_STREAM])
  logo_stream = _ATTACK_STREAM if split_kind == 'attacked' else _LOGO_STREAM
  logo_rng = np.random.default_rng([config.overlay_seed, index, logo_stream])
  if config.overlay_mode == 'poisoned':
    logo = overlays.choose_artifact(
      logo_rng, label, split_kind, config.poison_classes, config.poison_fraction
    )
  else:
    logo = overlays.choose_logo(
      logo_rng, label, config.overlay_mode, split_kind, config.logo_class_probability
    )
  # Only 'anywhere' reads the defect: the strips' bytes stay those of datasets built before it.
  avoid = defect if config.overlay_placement == 'anywhere' else None
  if (
    split_kind == 'clean'
    or config.overlay_mode == 'none'
    or (config.overlay_mode == 'poisoned' and logo is None)
  ):
    image, mask = clean, np.zeros_like(clean)
  else:
    if config.overlay_mode == 'poisoned':
      draw = overlays.draw_artifact(text_rng, clean.shape[0], logo, config.overlay_placement, avoid)
    else:
      draw = overlays.draw_overlay(text_rng, clean.shape[0], logo, config.overlay_placement, avoid)
    values, mask = draw
    image = overlays.apply_overlay(clean, values, mask)
  return {
    'image': image[..., None],
    'clean': clean[..., None],
    'mask': mask[..., None],
    'defect': defect[..., None],
    'label': int(label),
    'logo': -1 if logo is None else int(logo),
    'index': int(index),
  }


def split_generators(
  labels: np.ndarray, config: OverlaidImagesConfig, generate: Callable[[np.ndarray, str], Iterator]
) -> dict[str, Iterator]:
  """TFDS split generators.

  `generate(indices, split_kind)` is the builder's `_generate_examples`.
  """
  parts = stratified_split(labels, config.split_fractions, config.split_seed)
  generators = {name: generate(parts[name], 'fit') for name in SPLIT_NAMES if name != 'test'}
  for split_name, kind in TEST_VARIANTS.items():
    generators[split_name] = generate(parts['test'], kind)
  return generators


def validate_overlay_settings(config: OverlaidImagesConfig, num_classes: int = 10) -> None:
  if config.overlay_mode not in overlays.OVERLAY_MODES:
    raise ValueError(
      f'data.overlay_mode must be one of {overlays.OVERLAY_MODES}, got {config.overlay_mode!r}'
    )
  if config.overlay_placement not in overlays.OVERLAY_PLACEMENTS:
    raise ValueError(
      f'data.overlay_placement must be one of {overlays.OVERLAY_PLACEMENTS}, '
      f'got {config.overlay_placement!r}'
    )
  if config.overlay_mode == 'poisoned':
    classes = list(config.poison_classes)
    if not classes or any(not 0 <= int(c) < num_classes for c in classes):
      raise ValueError(
        f'data.poison_classes must name classes in [0, {num_classes}), got {classes}'
      )
    if not 0.0 < config.poison_fraction <= 1.0:
      raise ValueError(f'data.poison_fraction must be in (0, 1], got {config.poison_fraction}')
  if not 0.0 <= config.logo_class_probability <= 1.0:
    raise ValueError(
      f'data.logo_class_probability must be in [0, 1], got {config.logo_class_probability}'
    )
  if config.resolution < 32:
    raise ValueError(
      f"data.resolution must be at least 32 px (MobileNet's minimum), got {config.resolution}"
    )
