"""Remedies: image -> image functions that remove overlays, over uint8 batches [N, H, W, 1].

Each takes the region to act on as an input (a mask, or the strip geometry), so the paper's fixed
strips, the exact overlay mask of the synthetic data, or a mask found later by LRP can all drive
them. Pixels outside the region are returned untouched (crop excepted: it resamples the whole image
by design). The generative inpainter is trained in `xaijax.training.gan`; `generative` here runs the
fitted one.
"""

from __future__ import annotations

import cv2
import numpy as np

from xaijax.data.overlays import strip_height

# The paper's blur: a 17 x 17 kernel with sigma 20, at 224 px.
PAPER_BLUR_KERNEL, PAPER_BLUR_SIGMA, PAPER_RESOLUTION = 17, 20.0, 224


def _check_batch(images: np.ndarray, region: np.ndarray | None = None) -> None:
  if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 1:
    raise ValueError(f'images must be uint8 [N, H, W, 1], got {images.dtype} {images.shape}')
  if region is not None and region.shape != images.shape:
    raise ValueError(f"region mask must have the images' shape {images.shape}, got {region.shape}")


def blur_settings(resolution: int) -> tuple[int, float]:
  """The paper's kernel and sigma scaled to `resolution` (kernel kept odd, at least 3)."""
  scale = resolution / PAPER_RESOLUTION
  kernel = max(3, int(round(PAPER_BLUR_KERNEL * scale)) | 1)
  return kernel, PAPER_BLUR_SIGMA * scale


def blur(
  images: np.ndarray, region: np.ndarray, kernel: int | None = None, sigma: float | None = None
) -> np.ndarray:
  """Gaussian blur inside `region` (uint8 {0,1}, images' shape); the blur sees the whole image."""
  _check_batch(images, region)
  default_kernel, default_sigma = blur_settings(images.shape[1])
  kernel, sigma = kernel or default_kernel, sigma or default_sigma
  out = images.copy()
  for i, (image, inside) in enumerate(zip(images, region.astype(bool))):
    blurred = cv2.GaussianBlur(
      image[..., 0], (kernel, kernel), sigma, borderType=cv2.BORDER_REFLECT
    )
    out[i, ..., 0] = np.where(inside[..., 0], blurred, image[..., 0])
  return out


def black_stripe(images: np.ndarray, region: np.ndarray) -> np.ndarray:
  """Censor bars: every pixel of `region` set to black."""
  _check_batch(images, region)
  return np.where(region.astype(bool), np.uint8(0), images)


def crop(images: np.ndarray, top: int, bottom: int) -> np.ndarray:
  """Remove `top` rows and `bottom` rows, then resize back to the original size.

  The paper's crop.
  """
  _check_batch(images)
  height, width = images.shape[1:3]
  if top < 0 or bottom < 0 or top + bottom >= height:
    raise ValueError(f'crop of {top} + {bottom} rows does not fit an image of height {height}')
  out = np.empty_like(images)
  for i, image in enumerate(images):
    kept = image[top : height - bottom, :, 0]
    out[i, ..., 0] = cv2.resize(kept, (width, height), interpolation=cv2.INTER_LINEAR)
  return out


def strips_of(region: np.ndarray) -> tuple[int, int]:
  """(top, bottom) rows to crop so that no row of `region` is left in the top or bottom half.

  `region` is [H, W, 1] or [N, H, W, 1]. The crop takes everything down to the lowest region row of
  the top half, and likewise from below.
  """
  rows = region.reshape(-1, *region.shape[-3:]).any(axis=(0, 2, 3))
  half = rows.shape[0] // 2

  def rows_to_remove(from_edge: np.ndarray) -> int:
    touched = np.flatnonzero(from_edge[:half])
    return int(touched[-1]) + 1 if touched.size else 0

  return rows_to_remove(rows), rows_to_remove(rows[::-1])


def telea(images: np.ndarray, region: np.ndarray, radius: float | None = None) -> np.ndarray:
  """OpenCV's Telea inpainting of `region`; only masked pixels change."""
  _check_batch(images, region)
  radius = radius or max(3.0, images.shape[1] / 64 * 3)
  out = images.copy()
  for i, (image, inside) in enumerate(zip(images, region)):
    filled = cv2.inpaint(image[..., 0], inside[..., 0].astype(np.uint8), radius, cv2.INPAINT_TELEA)
    out[i, ..., 0] = np.where(inside[..., 0].astype(bool), filled, image[..., 0])
  return out


def strip_region(images: np.ndarray) -> np.ndarray:
  """The paper's region for every image: the top and bottom strips (35/224 of the height each)."""
  height = images.shape[1]
  strip = strip_height(height)
  region = np.zeros_like(images)
  region[:, :strip] = 1
  region[:, height - strip :] = 1
  return region


def apply(
  name: str,
  images: np.ndarray,
  overlay_mask: np.ndarray | None = None,
  region: str = 'strips',
  **settings,
) -> np.ndarray:
  """Apply remedy `name` ('none', 'blur', 'crop', 'black_stripe', 'telea', 'generative') to a batch.

  region: 'strips' (the paper: the fixed top and bottom strips) or 'mask' (the overlay mask handed
  in, which may come from the dataset or from LRP). Telea defaults to the mask when one is given.
  """
  if name not in REMEDIES:
    raise ValueError(f'unknown remedy {name!r}; choose one of {sorted(REMEDIES)}')
  if region not in ('strips', 'mask'):
    raise ValueError(f"remedy region must be 'strips' or 'mask', got {region!r}")
  if region == 'mask' and overlay_mask is None:
    raise ValueError(f"remedy {name!r} with region='mask' needs an overlay mask")
  mask = overlay_mask if region == 'mask' else strip_region(images)
  return REMEDIES[name](images, mask, **settings)


def _crop_region(images, mask, **settings):
  top, bottom = strips_of(mask)
  return crop(images, top, bottom, **settings)


def _generative(images, mask, inpainter=None):
  """The fitted inpainting GAN (`xaijax.training.gan.fit_or_load`) filling the region."""
  if inpainter is None:
    raise ValueError(
      "remedy 'generative' needs the fitted inpainter: "
      'apply(..., inpainter=xaijax.training.gan.fit_or_load(...))'
    )
  _check_batch(images, mask)
  return inpainter(images, mask)


REMEDIES = {
  'none': lambda images, mask: images.copy(),
  'blur': blur,
  'crop': _crop_region,
  'black_stripe': black_stripe,
  'telea': telea,
  'generative': _generative,
}
