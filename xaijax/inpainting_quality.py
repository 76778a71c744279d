"""How well a remedy restores the image under an overlay.

Scored against the clean ground truth (synthetic data).

Per image, on gray levels 0..255 (float64), then averaged over the images of the split:

* `psnr`, `l1`: over the whole image; `psnr_in_mask`, `l1_in_mask`: over the mask pixels only
  (PSNR = 10 log10(255^2 / MSE); L1 = mean absolute difference in gray levels). The mask is the
  region every method is given to fill: the exact overlay masks, or with region 'strips' the paper's
  strips.
* `ssim`: Gaussian-window SSIM of Wang et al. 2004 (sigma 1.5, 11 taps, K1 0.01, K2 0.03, population
  covariances), the mean of the SSIM map without the border half a window wide - the same number as
  `skimage.metrics.structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=255)`.
* `ssim_in_mask`: the mean of the SSIM map over the mask pixels. The map is computed over the whole
  image with mirrored borders (scipy's 'reflect'), so mask pixels near the image edge count too;
  each value compares the 11x11 Gaussian neighbourhoods, so it also sees a few unmasked pixels
  around the hole.

Images whose mask is empty carry nothing to restore and are left out of every number.
"""

from __future__ import annotations

import json
import os

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt
import numpy as np

from xaijax import remedies

METRICS = ('psnr_in_mask', 'ssim_in_mask', 'l1_in_mask', 'psnr', 'ssim', 'l1')
CLASSICAL_METHODS = ('telea', 'blur', 'black_stripe')
QUALITY_FILE = 'inpainting_quality.json'
GRID_FILE = 'inpainting_grid.png'


def _as_batch(images) -> np.ndarray:
  """[H, W], [N, H, W] or [N, H, W, 1] -> float64 [N, H, W]."""
  images = np.asarray(images, np.float64)
  if images.ndim == 4:
    if images.shape[-1] != 1:
      raise ValueError(f'expected one channel [N, H, W, 1], got {images.shape}')
    images = images[..., 0]
  return images[None] if images.ndim == 2 else images


def gaussian_taps(sigma: float = 1.5, truncate: float = 3.5) -> np.ndarray:
  """scipy.ndimage's Gaussian kernel: radius int(truncate * sigma + 0.5), normalised to sum 1."""
  radius = int(truncate * sigma + 0.5)
  taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
  return taps / taps.sum()


def gaussian_filter(images: np.ndarray, taps: np.ndarray) -> np.ndarray:
  """Separable filtering of [N, H, W] over H and W.

  Borders are mirrored as scipy's 'reflect' (d c b a | a b c d).
  """
  radius = len(taps) // 2
  for axis in (1, 2):
    padding = [(0, 0)] * 3
    padding[axis] = (radius, radius)
    padded = np.pad(images, padding, mode='symmetric')
    length = images.shape[axis]
    images = sum(
      weight * np.take(padded, np.arange(k, k + length), axis=axis) for k, weight in enumerate(taps)
    )
  return images


def ssim_map(
  a, b, data_range: float = 255.0, sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03
) -> np.ndarray:
  """The SSIM of every pixel's Gaussian neighbourhood, [N, H, W] (Wang et al. 2004, eq. 13)."""
  a, b = _as_batch(a), _as_batch(b)
  if a.shape != b.shape:
    raise ValueError(f'SSIM needs images of one shape, got {a.shape} and {b.shape}')
  taps = gaussian_taps(sigma)
  if min(a.shape[1:]) < len(taps):
    raise ValueError(
      f"SSIM's {len(taps)}-pixel window needs images at least that large, got {a.shape[1:]}"
    )
  mean_a, mean_b = gaussian_filter(a, taps), gaussian_filter(b, taps)
  var_a = gaussian_filter(a * a, taps) - mean_a**2
  var_b = gaussian_filter(b * b, taps) - mean_b**2
  covariance = gaussian_filter(a * b, taps) - mean_a * mean_b
  c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
  return ((2 * mean_a * mean_b + c1) * (2 * covariance + c2)) / (
    (mean_a**2 + mean_b**2 + c1) * (var_a + var_b + c2)
  )


def ssim(a, b, data_range: float = 255.0, sigma: float = 1.5) -> np.ndarray:
  """Per-image SSIM [N].

  The map's mean without the border half a window wide (skimage's convention).
  """
  radius = len(gaussian_taps(sigma)) // 2
  return ssim_map(a, b, data_range, sigma)[:, radius:-radius, radius:-radius].mean(axis=(1, 2))


def _masked_mean(values: np.ndarray, mask) -> np.ndarray:
  """Per-image mean of [N, H, W] values over mask pixels.

  All pixels when mask is None; NaN if the mask is empty.
  """
  if mask is None:
    return values.mean(axis=(1, 2))
  weights = _as_batch(mask) > 0
  counts = weights.sum(axis=(1, 2))
  with np.errstate(invalid='ignore', divide='ignore'):
    return np.where(counts > 0, (values * weights).sum(axis=(1, 2)) / counts, np.nan)


def ssim_in_mask(a, b, mask, data_range: float = 255.0, sigma: float = 1.5) -> np.ndarray:
  """Per-image mean of the (whole-image, mirrored-border) SSIM map over the mask pixels [N]."""
  return _masked_mean(ssim_map(a, b, data_range, sigma), mask)


def psnr(a, b, mask=None, data_range: float = 255.0) -> np.ndarray:
  """Per-image PSNR in dB [N], over the mask pixels when a mask is given.

  inf where the pixels agree.
  """
  mse = _masked_mean((_as_batch(a) - _as_batch(b)) ** 2, mask)
  with np.errstate(divide='ignore'):
    return 10.0 * np.log10(data_range**2 / mse)


def l1(a, b, mask=None) -> np.ndarray:
  """Per-image mean absolute difference in gray levels [N].

  Over the mask pixels when a mask is given.
  """
  return _masked_mean(np.abs(_as_batch(a) - _as_batch(b)), mask)


def score(output: np.ndarray, clean: np.ndarray, mask: np.ndarray) -> dict[str, float]:
  """Every metric of METRICS, averaged over the images with a non-empty mask."""
  kept = _as_batch(mask).any(axis=(1, 2))
  if not kept.any():
    raise ValueError(
      "every mask is empty: there is nothing inpainted to score (overlay_mode='none'?)"
    )
  output, clean, mask = output[kept], clean[kept], mask[kept]
  values = dict(
    psnr_in_mask=psnr(output, clean, mask),
    ssim_in_mask=ssim_in_mask(output, clean, mask),
    l1_in_mask=l1(output, clean, mask),
    psnr=psnr(output, clean),
    ssim=ssim(output, clean),
    l1=l1(output, clean),
  )
  return {name: float(np.mean(values[name])) for name in METRICS}


def remedy_outputs(
  images: np.ndarray,
  region: np.ndarray,
  inpainter=None,
  methods=('generative',) + CLASSICAL_METHODS,
) -> dict[str, np.ndarray]:
  """Each method's output on `images` with `region` as the mask.

  'generative' needs the fitted inpainter.
  """
  outputs = {}
  for method in methods:
    if method == 'generative':
      if inpainter is None:
        raise ValueError(
          "method 'generative' needs the fitted inpainter (xaijax.training.gan.fit_or_load)"
        )
      outputs[method] = inpainter(images, region)
    else:
      outputs[method] = remedies.apply(method, images, region, region='mask')
  return outputs


def write_grid(
  path: str, images, region, outputs: dict[str, np.ndarray], clean, count: int = 6
) -> None:
  """Rows of examples spread over the split.

  Columns: input, mask, every method's output, clean (gray levels 0..255).
  """
  with_overlay = np.flatnonzero(_as_batch(region).any(axis=(1, 2)))
  chosen = with_overlay[
    np.linspace(0, len(with_overlay) - 1, min(count, len(with_overlay))).astype(int)
  ]
  columns = [('input', images, 'gray'), ('mask', region, 'magma')]
  columns += [(name, output, 'gray') for name, output in outputs.items()] + [
    ('clean', clean, 'gray')
  ]
  figure, axes = plt.subplots(
    len(chosen), len(columns), figsize=(2.0 * len(columns), 2.0 * len(chosen)), squeeze=False
  )
  for row, index in enumerate(chosen):
    for column, (title, array, colours) in enumerate(columns):
      axis = axes[row, column]
      axis.imshow(
        array[index, ..., 0],
        cmap=colours,
        vmin=0,
        vmax=1 if title == 'mask' else 255,
        interpolation='nearest',
      )
      axis.set_xticks([])
      axis.set_yticks([])
      if row == 0:
        axis.set_title(title, fontsize=8)
  figure.tight_layout()
  figure.savefig(path, dpi=110)
  plt.close(figure)


def evaluate(
  split: dict, region: np.ndarray, inpainter, workdir: str | None = None, grid_examples: int = 6
) -> dict[str, dict[str, float]]:
  """Scores of generative, Telea, blur, black stripe and the untouched input ('none').

  On a split with clean images, keyed by method; with a workdir also `inpainting_quality.json` and
  the `inpainting_grid.png` figure.
  """
  if 'clean' not in split:
    raise ValueError('inpainting quality needs the clean images of the split (synthetic data only)')
  outputs = remedy_outputs(split['image'], region, inpainter)
  results = {name: score(output, split['clean'], region) for name, output in outputs.items()}
  results['none'] = score(split['image'], split['clean'], region)
  if workdir:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, QUALITY_FILE), 'w') as f:
      json.dump(results, f, indent=2)
    write_grid(
      os.path.join(workdir, GRID_FILE),
      split['image'],
      region,
      outputs,
      split['clean'],
      grid_examples,
    )
  return results
