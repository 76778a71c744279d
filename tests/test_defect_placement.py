"""Where defects sit: anywhere (like GC10-DET photos, so strips can hide them) or between them."""

import numpy as np
import pytest

from xaijax import case_config, config_checks, data
from xaijax.data import defects, overlays, synthetic

SIZE = 64
IMAGES_PER_CLASS = 12


def defect_share_in_strip_rows(placement: str) -> float:
  """Share of all defect pixels that lie in the strip rows, over a few images of every class."""
  strip = overlays.strip_height(SIZE)
  frame = defects.Frame(SIZE, strip, placement)
  inside = total = 0
  for label in range(defects.NUM_CLASSES):
    for index in range(IMAGES_PER_CLASS):
      _, defect = defects.render_clean_image(np.random.default_rng([7, label, index]), label, frame)
      inside += int(defect[:strip].sum() + defect[-strip:].sum())
      total += int(defect.sum())
  return inside / total


def test_anywhere_puts_about_a_uniform_share_of_defect_pixels_under_the_strips():
  strip_rows = 2 * overlays.strip_height(SIZE) / SIZE  # 0.31 of the image
  anywhere = defect_share_in_strip_rows('anywhere')
  between = defect_share_in_strip_rows('between_strips')
  assert 0.25 <= anywhere <= strip_rows + 0.05, anywhere
  assert between < 0.15, between  # only welds and creases reach into the strips


def test_anywhere_is_the_default_and_a_bad_placement_is_named():
  assert case_config.get_config().data.defect_placement == 'anywhere'
  assert case_config.get_config('paper').data.defect_placement == 'anywhere'
  config = case_config.get_config('defect_placement=between_strips')
  assert config.data.defect_placement == 'between_strips'
  config.data.defect_placement = 'middle'
  with pytest.raises(ValueError, match=r'data\.defect_placement'):
    config_checks.validate(config)
  with pytest.raises(ValueError, match=r'data\.defect_placement'):
    synthetic.make_config(defect_placement='middle')


@pytest.fixture(scope='module')
def anywhere_train(tmp_path_factory):
  config = case_config.get_config().data
  config.update(resolution=SIZE, class_scale=0.06, min_per_class=6)
  config.data_dir = str(tmp_path_factory.mktemp('tfds'))
  return config, data.load_splits(config, splits=('train',))['train']


def test_masks_stay_exact_when_the_overlay_covers_a_defect(anywhere_train):
  config, train = anywhere_train
  # The overlay mask: the image differs from the clean one only on it.
  outside = train['mask'] == 0
  np.testing.assert_array_equal(train['image'][outside], train['clean'][outside])
  # The defect mask, checked against the texture redrawn from the same seed: a pixel is defect
  # where the clean image left the texture by more than the threshold (give or take the rounding
  # to uint8 and the clipping to 0..255).
  for position, index in enumerate(train['index']):
    texture = defects.brushed_metal(np.random.default_rng([config.image_seed, int(index)]), SIZE)
    change = np.abs(train['clean'][position, ..., 0].astype(np.float64) - texture)
    clean = train['clean'][position, ..., 0]
    unclipped = (clean > 0) & (clean < 255)
    defect = train['defect'][position, ..., 0].astype(bool)
    assert not (unclipped & (change > defects.DEFECT_THRESHOLD + 0.5) & ~defect).any()
    assert not (defect & (change < defects.DEFECT_THRESHOLD - 0.5)).any()
  # Some defects are partly hidden by overlay pixels; some lie wholly in the strip rows.
  strips = overlays.strip_mask(SIZE).astype(bool)[None]
  defect = train['defect'].astype(bool)
  assert (defect & train['mask'].astype(bool)).any(axis=(1, 2, 3)).sum() >= 3
  in_strips = (defect & strips).sum(axis=(1, 2, 3)) / defect.sum(axis=(1, 2, 3))
  assert (in_strips == 1.0).any()


def test_between_strips_keeps_every_defect_centre_off_the_strips():
  frame = defects.Frame(SIZE, overlays.strip_height(SIZE), 'between_strips')
  low, high = frame.centre_rows(margin=0.0)
  assert (low, high) == (frame.strip, SIZE - frame.strip)
  assert defects.Frame(SIZE, frame.strip, 'anywhere').centre_rows(margin=0.12) == (0.0, SIZE)
