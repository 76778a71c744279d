"""What SpRAy clusters: items, each an image's region with a descriptor, or a whole image.

`reveal.features`:

* 'regions' (default): every image's strongest relevant regions (up to `reveal.max_regions`,
  outlined as `localisation.relevance_regions` does), each described by the positive relevance per
  channel at `reveal.layer`'s input, pooled over the region. An artifact is one object among the
  things a model reads, and not always the strongest; as a region of its own it keeps the same
  descriptor wherever it sits and whatever else the image holds. An image belongs to a cluster
  through its regions in it, and those regions are its outline.
* 'concepts': one item per image, the relevance per channel pooled over the whole image
  (Reveal2Revise clusters such vectors); the outline is the strongest region.
* 'heatmaps': one item per image, CoRelAy's pixel SpRAy (downsampled heatmaps over their signed
  sum); it cannot group an artifact that moves (DESIGN.md).
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from xaijax.reveal import localisation, relevance

FEATURES = ('regions', 'concepts', 'heatmaps')


@dataclasses.dataclass
class Items:
  image: np.ndarray  # [M] index of the image each item comes from
  masks: np.ndarray  # [M, H, W] bool: the item's outline in its image
  features: np.ndarray  # [M, D] unit-length descriptors

  def outlines(self, chosen: np.ndarray, count: int) -> np.ndarray:
    """bool [count, H, W]: per image, the union of the outlines of its items in `chosen` (a bool
    or index selection of items)."""
    masks = np.zeros((count,) + self.masks.shape[1:], bool)
    selected = np.zeros(len(self.image), bool)
    selected[chosen] = True
    for item in np.flatnonzero(selected):
      masks[self.image[item]] |= self.masks[item]
    return masks


def unit_rows(vectors: np.ndarray) -> np.ndarray:
  vectors = np.asarray(vectors, np.float64)
  return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def region_descriptor(layer: np.ndarray, region: np.ndarray) -> np.ndarray:
  """Positive relevance per channel [C] of `layer` [h, w, C] pooled over `region` [H, W], resampled
  to the layer's grid by area (a place the region half covers counts half)."""
  weight = cv2.resize(region.astype(np.float32), layer.shape[1::-1], interpolation=cv2.INTER_AREA)
  return (np.maximum(layer, 0.0) * weight[..., None]).sum(axis=(0, 1))


def extract(explained: relevance.Relevances, settings, sigma: float) -> Items:
  """The items of explained images (`reveal.features` decides which; see the module docstring)."""
  thresholds = dict(low=float(settings.low), sigma=sigma, high=float(settings.high))
  if settings.features == 'regions':
    found = localisation.relevance_regions(
      explained.heatmaps, max_regions=int(settings.max_regions), **thresholds
    )
    image = np.array([i for i, regions in enumerate(found) for _ in regions], np.int64)
    masks = [region for regions in found for region in regions]
    if not masks:
      shape = explained.heatmaps.shape[1:]
      return Items(image, np.zeros((0, *shape), bool), np.zeros((0, explained.layer.shape[-1])))
    features = [region_descriptor(explained.layer[i], m) for i, m in zip(image, masks)]
    return Items(image, np.stack(masks), unit_rows(np.stack(features)))
  masks = localisation.relevance_masks(explained.heatmaps, **thresholds)
  if settings.features == 'concepts':
    features = unit_rows(explained.concepts)
  else:
    features = relevance.heatmap_features(explained.heatmaps, int(settings.heatmap_size))
  return Items(np.arange(len(masks)), masks, features)
