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

dm-pix computes SSIM, PSNR and L1 (`pix.ssim`, `pix.psnr`, `pix.mae`) in float64; an in-mask
number is a NaN-ignoring mean (dm-pix's `ignore_nans`) with NaN outside the mask.

Images whose mask is empty carry nothing to restore and are left out of every number.
"""

from __future__ import annotations

import functools
import json
import os

import dm_pix as pix
import jax
import jax.numpy as jnp
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
  """[H, W], [N, H, W] or [N, H, W, 1] -> float64 [N, H, W, 1], the layout dm-pix reads."""
  images = np.asarray(images, np.float64)
  if images.ndim == 4:
    if images.shape[-1] != 1:
      raise ValueError(f'expected one channel [N, H, W, 1], got {images.shape}')
    return images
  return (images[None] if images.ndim == 2 else images)[..., None]


def ssim_window(sigma: float) -> int:
  """Taps of the Gaussian window: radius int(3.5 * sigma + 0.5), as scipy.ndimage and skimage cut
  it (11 for sigma 1.5)."""
  return 2 * int(3.5 * sigma + 0.5) + 1


@functools.partial(jax.jit, static_argnames=('data_range', 'sigma', 'k1', 'k2', 'return_map'))
def _dm_pix_ssim(a, b, data_range, sigma, k1, k2, return_map):
  return pix.ssim(
    a,
    b,
    max_val=data_range,
    filter_size=ssim_window(sigma),
    filter_sigma=sigma,
    k1=k1,
    k2=k2,
    return_map=return_map,
  )


def _ssim(a, b, data_range, sigma, k1, k2, mirrored_border: bool) -> np.ndarray:
  a, b = _as_batch(a), _as_batch(b)
  if a.shape != b.shape:
    raise ValueError(f'SSIM needs images of one shape, got {a.shape} and {b.shape}')
  window = ssim_window(sigma)
  if min(a.shape[1:3]) < window:
    raise ValueError(
      f"SSIM's {window}-pixel window needs images at least that large, got {a.shape[1:3]}"
    )
  if mirrored_border:
    # dm-pix filters 'valid' only, so its map lacks the border half a window wide; mirroring the
    # images first (numpy's 'symmetric' is scipy's 'reflect', d c b a | a b c d) gives the
    # whole-image map that skimage computes.
    radius = window // 2
    padding = ((0, 0), (radius, radius), (radius, radius), (0, 0))
    a, b = np.pad(a, padding, mode='symmetric'), np.pad(b, padding, mode='symmetric')
  # float64, so the numbers match skimage's to ~1e-14 (float32 would give ~1e-6).
  with jax.enable_x64(True):
    return np.asarray(_dm_pix_ssim(a, b, data_range, sigma, k1, k2, return_map=mirrored_border))


def ssim_map(
  a, b, data_range: float = 255.0, sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03
) -> np.ndarray:
  """The SSIM of every pixel's Gaussian neighbourhood, [N, H, W] (Wang et al. 2004, eq. 13).

  dm-pix's `ssim` map over the whole image, borders mirrored (scipy's 'reflect').
  """
  return _ssim(a, b, data_range, sigma, k1, k2, mirrored_border=True)[..., 0]


def ssim(a, b, data_range: float = 255.0, sigma: float = 1.5) -> np.ndarray:
  """Per-image SSIM [N].

  The map's mean without the border half a window wide (skimage's convention), which is what
  dm-pix's `ssim` averages.
  """
  return _ssim(a, b, data_range, sigma, k1=0.01, k2=0.03, mirrored_border=False)


def _nan_outside(values: np.ndarray, mask) -> np.ndarray:
  """values [N, H, W, 1] with NaN outside the mask, so that a NaN-ignoring mean (dm-pix's
  `ignore_nans`) is the mean over the mask pixels; an empty mask gives NaN."""
  if mask is None:
    return values
  return np.where(_as_batch(mask) > 0, values, np.nan)


def ssim_in_mask(a, b, mask, data_range: float = 255.0, sigma: float = 1.5) -> np.ndarray:
  """Per-image mean of the (whole-image, mirrored-border) SSIM map over the mask pixels [N]."""
  in_mask = _nan_outside(ssim_map(a, b, data_range, sigma)[..., None], mask)
  with jax.enable_x64(True):
    return np.asarray(jnp.nanmean(in_mask, axis=(1, 2, 3)))


def psnr(a, b, mask=None, data_range: float = 255.0) -> np.ndarray:
  """Per-image PSNR in dB [N], over the mask pixels when a mask is given.

  inf where the pixels agree.
  """
  # dm-pix's psnr takes the range to be 1.
  a = _nan_outside(_as_batch(a) / data_range, mask)
  with jax.enable_x64(True):
    return np.asarray(pix.psnr(a, _as_batch(b) / data_range, ignore_nans=True))


def l1(a, b, mask=None) -> np.ndarray:
  """Per-image mean absolute difference in gray levels [N].

  Over the mask pixels when a mask is given.
  """
  with jax.enable_x64(True):
    return np.asarray(pix.mae(_nan_outside(_as_batch(a), mask), _as_batch(b), ignore_nans=True))


def score(output: np.ndarray, clean: np.ndarray, mask: np.ndarray) -> dict[str, float]:
  """Every metric of METRICS, averaged over the images with a non-empty mask."""
  kept = _as_batch(mask).any(axis=(1, 2, 3))
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
  with_overlay = np.flatnonzero(_as_batch(region).any(axis=(1, 2, 3)))
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
