"""Outline what the model looks at in each image, and score outlines against truth.

Reveal2Revise's recipe: keep relevance above 0.1 of the image's maximum, smooth it with a Gaussian,
keep what is above 0.3 of the smoothed maximum. Each connected blob of that is a region; an artifact
is one of them, and not always the strongest (the defect the model also reads may be). Where a
cluster's outlines agree in place (an artifact at a fixed position), they are restricted to the
region where they agree.
"""

from __future__ import annotations

import cv2
import numpy as np


def relevance_regions(
  heatmaps: np.ndarray,
  low: float = 0.1,
  sigma: float = 1.3,
  high: float = 0.3,
  max_regions: int = 1,
) -> list[list[np.ndarray]]:
  """Per heatmap [N, H, W], its high-relevance regions: bool [H, W] masks, strongest first.

  Positive relevance above `low` x its maximum, Gaussian-smoothed with `sigma` pixels, above
  `high` x the smoothed maximum; each 8-connected blob of that is a region, ranked by its smoothed
  peak; at most `max_regions` are kept. A map without positive relevance has none.
  """
  regions = []
  for heatmap in np.asarray(heatmaps, np.float32):
    positive = np.maximum(heatmap, 0.0)
    peak = positive.max()
    if not peak > 0:
      regions.append([])
      continue
    kept = np.where(positive > low * peak, positive, 0.0).astype(np.float32)
    smooth = cv2.GaussianBlur(kept, (0, 0), sigma) if sigma > 0 else kept
    count, blobs = cv2.connectedComponents(
      (smooth > high * smooth.max()).astype(np.uint8), connectivity=8
    )
    peaks = sorted((-smooth[blobs == b].max(), b) for b in range(1, count))[:max_regions]
    regions.append([blobs == b for _, b in peaks])
  return regions


def relevance_masks(
  heatmaps: np.ndarray, low: float = 0.1, sigma: float = 1.3, high: float = 0.3
) -> np.ndarray:
  """bool [N, H, W]: the strongest high-relevance region of each heatmap (`relevance_regions`), as
  Reveal2Revise outlines an artifact, plus one step: of what passes the thresholds only the blob
  holding the smoothed maximum is kept, since an artifact is one object and a second blob is
  usually the defect the model also looks at. Empty where a map has no positive relevance."""
  masks = np.zeros(np.shape(heatmaps), bool)
  for i, found in enumerate(relevance_regions(heatmaps, low, sigma, high, max_regions=1)):
    if found:
      masks[i] = found[0]
  return masks


def consistency(masks: np.ndarray) -> np.ndarray:
  """float [H, W]: the fraction of masks that cover each pixel."""
  return np.asarray(masks, np.float64).mean(axis=0) if len(masks) else np.zeros(masks.shape[1:])


def consistent_region(masks: np.ndarray, agreement: float = 0.5, level: float = 0.25):
  """The region where a cluster's masks agree, or None when they do not agree anywhere.

  They agree when some pixel is covered by at least `agreement` of them (an artifact at a fixed
  place); the region is then every pixel covered by at least `level` of them, grown by one pixel.
  A moving artifact agrees nowhere and gets no restriction.
  """
  frequency = consistency(masks)
  if frequency.size == 0 or frequency.max() < agreement:
    return None
  region = (frequency >= level).astype(np.uint8)
  return cv2.dilate(region, np.ones((3, 3), np.uint8)).astype(bool)


def restrict(masks: np.ndarray, region) -> np.ndarray:
  """The masks inside `region` (unchanged when region is None)."""
  return masks if region is None else masks & region[None]


def mask_scores(found: np.ndarray, true: np.ndarray) -> dict[str, np.ndarray]:
  """Per image: IoU, pixel precision and pixel recall of found against true masks [N, H, W].

  An empty found mask has precision NaN (nothing claimed); an empty true mask recall NaN; both
  empty, IoU NaN.
  """
  found, true = np.asarray(found, bool), np.asarray(true, bool)
  found = found.reshape(len(found), int(np.prod(found.shape[1:])))
  true = true.reshape(len(true), int(np.prod(true.shape[1:])))
  both = (found & true).sum(axis=1).astype(np.float64)
  union = (found | true).sum(axis=1)
  claimed, present = found.sum(axis=1), true.sum(axis=1)

  def ratio(numerator, denominator):
    return np.where(denominator > 0, numerator / np.maximum(denominator, 1), np.nan)

  return {
    'iou': ratio(both, union),
    'precision': ratio(both, claimed),
    'recall': ratio(both, present),
  }


def relevance_share(heatmaps: np.ndarray, masks: np.ndarray) -> np.ndarray:
  """Per image: the share of positive relevance inside its mask (NaN without positive relevance)."""
  heatmaps, masks = np.asarray(heatmaps, np.float64), np.asarray(masks, bool)
  positive = np.maximum(heatmaps, 0.0).reshape(len(heatmaps), int(np.prod(heatmaps.shape[1:])))
  inside = (positive * masks.reshape(positive.shape)).sum(axis=1)
  total = positive.sum(axis=1)
  return np.where(total > 0, inside / np.maximum(total, 1e-300), np.nan)
