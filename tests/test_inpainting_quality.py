import json
import os

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from xaijax import inpainting_quality as quality
from xaijax import remedies


def skimage_ssim(a, b, full=False):
  return structural_similarity(
    a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255, full=full
  )


def image_pairs():
  """Noise, a smooth ramp with a dent, and a constant against a textured image.

  Odd and even sizes.
  """
  rng = np.random.default_rng(0)
  noise = rng.integers(0, 256, (40, 37)).astype(np.uint8)
  noisy = np.clip(noise + rng.normal(0, 25, noise.shape), 0, 255).astype(np.uint8)
  ramp = np.tile(np.linspace(20, 230, 48), (48, 1)).astype(np.uint8)
  dented = ramp.copy()
  dented[10:20, 15:40] = 90
  flat = np.full((32, 32), 128, np.uint8)
  texture = (128 + 60 * np.sin(np.arange(32) / 2.0)[:, None] * np.ones(32)).astype(np.uint8)
  return [(noise, noisy), (ramp, dented), (flat, texture)]


@pytest.mark.parametrize('pair', range(3))
def test_ssim_matches_skimage(pair):
  a, b = image_pairs()[pair]
  reference, reference_map = skimage_ssim(a, b, full=True)
  np.testing.assert_allclose(quality.ssim(a, b)[0], reference, rtol=1e-10)
  np.testing.assert_allclose(quality.ssim_map(a, b)[0], reference_map, rtol=1e-9, atol=1e-12)


def test_ssim_is_one_for_identical_images_and_batches_agree_with_single_images():
  a = np.stack([a for a, _ in image_pairs()[1:2]] * 2)[..., None]
  np.testing.assert_allclose(quality.ssim(a, a), 1.0)
  rng = np.random.default_rng(3)
  batch_a = rng.integers(0, 256, (3, 24, 24, 1)).astype(np.uint8)
  batch_b = rng.integers(0, 256, (3, 24, 24, 1)).astype(np.uint8)
  each = [skimage_ssim(x[..., 0], y[..., 0]) for x, y in zip(batch_a, batch_b)]
  np.testing.assert_allclose(quality.ssim(batch_a, batch_b), each, rtol=1e-10)


def test_ssim_in_mask_is_the_mean_of_the_map_over_mask_pixels():
  a, b = image_pairs()[1]
  mask = np.zeros_like(a)
  mask[8:22, 10:42] = 1
  mask[0:3, :] = 1  # at the border too: the map there uses mirrored neighbourhoods
  _, reference_map = skimage_ssim(a, b, full=True)
  np.testing.assert_allclose(
    quality.ssim_in_mask(a, b, mask)[0], reference_map[mask == 1].mean(), rtol=1e-9
  )


def test_psnr_whole_image_matches_skimage_and_in_mask_matches_numpy():
  a, b = image_pairs()[0]
  np.testing.assert_allclose(
    quality.psnr(a, b)[0], peak_signal_noise_ratio(a, b, data_range=255), rtol=1e-12
  )
  mask = np.zeros_like(a)
  mask[5:9, 3:30] = 1
  difference = a[mask == 1].astype(np.float64) - b[mask == 1]
  expected = 10 * np.log10(255.0**2 / np.mean(difference**2))
  np.testing.assert_allclose(quality.psnr(a, b, mask)[0], expected, rtol=1e-12)
  np.testing.assert_allclose(quality.l1(a, b, mask)[0], np.mean(np.abs(difference)), rtol=1e-12)


def test_score_leaves_out_images_with_an_empty_mask():
  rng = np.random.default_rng(1)
  clean = rng.integers(0, 256, (2, 16, 16, 1)).astype(np.uint8)
  output = clean.copy()
  output[0, 2:4] = 0
  mask = np.zeros_like(clean)
  mask[0, 2:4] = 1
  scores = quality.score(output, clean, mask)
  assert scores['psnr_in_mask'] == pytest.approx(quality.psnr(output[:1], clean[:1], mask[:1])[0])
  assert scores['l1'] == pytest.approx(quality.l1(output[:1], clean[:1])[0])
  with pytest.raises(ValueError, match='every mask is empty'):
    quality.score(output, clean, np.zeros_like(mask))


def test_evaluate_scores_every_method_and_writes_json_and_grid(tmp_path):
  rng = np.random.default_rng(2)
  clean = np.tile(np.linspace(60, 200, 32), (3, 32, 1)).astype(np.uint8)[..., None]
  mask = np.zeros_like(clean)
  mask[:, 2:5, 4:28] = 1
  images = np.where(mask == 1, rng.integers(220, 256, clean.shape), clean).astype(np.uint8)
  split = dict(image=images, clean=clean)

  def telea_inpainter(images, region):  # any image -> image callable can play the fitted generator
    return remedies.telea(images, region)

  results = quality.evaluate(split, mask, telea_inpainter, str(tmp_path), grid_examples=2)
  assert set(results) == {'generative', 'telea', 'blur', 'black_stripe', 'none'}
  assert results['generative'] == results['telea']
  assert results['telea']['psnr_in_mask'] > results['none']['psnr_in_mask']
  assert results['black_stripe']['l1_in_mask'] == pytest.approx(
    quality.l1(np.zeros_like(clean), clean, mask).mean()
  )
  with open(tmp_path / quality.QUALITY_FILE) as f:
    assert json.load(f) == results
  assert os.path.getsize(tmp_path / quality.GRID_FILE) > 1000
