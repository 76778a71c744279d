import cv2
import numpy as np
import pytest

from xaijax import remedies
from xaijax.data.overlays import strip_height


@pytest.fixture
def batch():
  return np.random.default_rng(0).integers(0, 256, (3, 64, 64, 1), dtype=np.uint8)


def strips(height=64):
  s = strip_height(height)
  inside = np.zeros(height, bool)
  inside[:s] = inside[height - s :] = True
  return inside


@pytest.mark.parametrize('name', ['blur', 'black_stripe', 'telea'])
def test_strip_remedies_touch_only_the_strips(batch, name):
  out = remedies.apply(name, batch, region='strips')
  middle = ~strips()
  np.testing.assert_array_equal(out[:, middle], batch[:, middle])
  assert np.mean(out[:, ~middle] != batch[:, ~middle]) > 0.5


def test_black_stripe_is_black(batch):
  out = remedies.apply('black_stripe', batch)
  assert not out[:, strips()].any()


def test_blur_matches_opencv_on_the_strips_with_paper_settings_at_224():
  image = np.random.default_rng(1).integers(0, 256, (1, 224, 224, 1), dtype=np.uint8)
  assert remedies.blur_settings(224) == (17, 20.0)
  out = remedies.apply('blur', image)
  reference = cv2.GaussianBlur(image[0, ..., 0], (17, 17), 20.0, borderType=cv2.BORDER_REFLECT)
  np.testing.assert_array_equal(out[0, :35, :, 0], reference[:35])
  np.testing.assert_array_equal(out[0, -35:, :, 0], reference[-35:])


def test_telea_changes_only_the_mask(batch):
  mask = np.zeros_like(batch)
  mask[:, 20:30, 10:40] = 1
  out = remedies.apply('telea', batch, mask, region='mask')
  np.testing.assert_array_equal(out[mask == 0], batch[mask == 0])
  assert np.mean(out[mask == 1] != batch[mask == 1]) > 0.5


def test_telea_fills_a_hole_in_a_smooth_image_with_nearby_values():
  ramp = np.tile(np.linspace(50, 200, 64).astype(np.uint8)[:, None], (1, 64))[None, ..., None]
  mask = np.zeros_like(ramp)
  mask[:, 30:34, 20:44] = 1
  damaged = np.where(mask == 1, np.uint8(255), ramp)
  out = remedies.telea(damaged, mask)
  assert np.abs(out.astype(int) - ramp.astype(int))[mask == 1].max() <= 6


def test_crop_removes_the_strips_and_resizes_back():
  rows = np.arange(64, dtype=np.uint8)[:, None].repeat(64, 1)
  image = (rows * 3)[None, ..., None]
  out = remedies.apply('crop', image)
  s = strip_height(64)
  expected = cv2.resize(image[0, s : 64 - s, :, 0], (64, 64), interpolation=cv2.INTER_LINEAR)
  np.testing.assert_array_equal(out[0, ..., 0], expected)
  assert out.shape == image.shape


def test_crop_region_follows_a_mask_from_anywhere():
  mask = np.zeros((1, 64, 64, 1), np.uint8)
  mask[0, 2:7, 40:50] = 1  # an overlay that does not start at the top row
  mask[0, 60:62, 3:9] = 1
  assert remedies.strips_of(mask) == (7, 4)


def test_bad_inputs_are_clear_errors(batch):
  with pytest.raises(ValueError, match='unknown remedy'):
    remedies.apply('sharpen', batch)
  with pytest.raises(ValueError, match='needs an overlay mask'):
    remedies.apply('telea', batch, region='mask')
  with pytest.raises(ValueError, match='uint8'):
    remedies.apply('blur', batch.astype(np.float32))
  with pytest.raises(ValueError, match='does not fit'):
    remedies.crop(batch, 40, 30)
