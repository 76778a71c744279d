"""How well a heatmap points at a region, and how faithful it is to the model.

Localisation against a binary mask (Arras, Osman & Samek 2022, "CLEVR-XAI"), per example:
  relevance_mass_in_mask    positive relevance inside the mask / positive relevance in total
  relevance_rank_accuracy   of the K most relevant pixels (K = mask size), the share inside it
  pointing_game             whether the single most relevant pixel lies inside the mask
An example with an empty mask gets NaN (the question has no answer); average with nanmean.

Faithfulness by pixel flipping (Samek et al. 2017): pixels (or patches) are replaced by a
baseline in order of decreasing relevance and the target score is recorded after each step;
AOPC, the area over that curve, is compared with the same curve for a random order.

Relevance may be [N, H, W] or [N, H, W, C] (channels are summed); masks [N, H, W] or
[N, H, W, 1] in {0, 1}.
"""

from __future__ import annotations

from collections.abc import Callable
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np


def _maps_and_masks(relevance, mask):
  relevance = jnp.asarray(relevance)
  mask = jnp.asarray(mask)
  if mask.ndim == 4:
    if mask.shape[-1] != 1:
      raise ValueError(f'mask must be [N, H, W] or [N, H, W, 1], got {mask.shape}.')
    mask = mask[..., 0]
  if relevance.ndim == 4:
    relevance = relevance.sum(axis=-1)
  if relevance.shape != mask.shape:
    raise ValueError(
      f'relevance {relevance.shape} and mask {mask.shape} do not cover the same '
      'pixels (expected [N, H, W] for both, channels summed).'
    )
  n = relevance.shape[0]
  return relevance.reshape(n, -1), (mask.reshape(n, -1) > 0)


def _nan_where_empty(value, inside):
  return jnp.where(inside.any(axis=1), value, jnp.nan)


def relevance_mass_in_mask(relevance, mask):
  """Sum of positive relevance inside the mask / sum of positive relevance (0 if none)."""
  maps, inside = _maps_and_masks(relevance, mask)
  positive = jnp.maximum(maps, 0)
  total = positive.sum(axis=1)
  in_mask = jnp.where(inside, positive, 0).sum(axis=1)
  share = jnp.where(total > 0, in_mask / jnp.where(total > 0, total, 1), 0.0)
  return _nan_where_empty(share, inside)


def relevance_rank_accuracy(relevance, mask):
  """Share of the K highest-relevance pixels that lie inside the mask, K = pixels in the mask."""
  maps, inside = _maps_and_masks(relevance, mask)
  order = jnp.argsort(-maps, axis=1, stable=True)
  inside_by_rank = jnp.take_along_axis(inside, order, axis=1)
  size = inside.sum(axis=1)
  top = jnp.arange(maps.shape[1])[None, :] < size[:, None]
  hits = jnp.where(top, inside_by_rank, False).sum(axis=1)
  return _nan_where_empty(hits / jnp.maximum(size, 1), inside)


def pointing_game(relevance, mask):
  """1.0 where the most relevant pixel lies inside the mask, else 0.0."""
  maps, inside = _maps_and_masks(relevance, mask)
  best = jnp.argmax(maps, axis=1)
  hit = jnp.take_along_axis(inside, best[:, None], axis=1)[:, 0]
  return _nan_where_empty(hit.astype(jnp.float32), inside)


# ----------------------------------------------------------------------------- pixel flipping


@dataclasses.dataclass(frozen=True)
class PixelFlipping:
  """Target scores [N, steps + 1] after flipping 0, 1/steps, ..., all pixels, and AOPC [N]."""

  relevance_curve: np.ndarray
  random_curve: np.ndarray
  aopc_relevance: np.ndarray
  aopc_random: np.ndarray


def aopc(curve):
  """Area over the perturbation curve: mean over steps k = 0..L of f(x^(0)) - f(x^(k))."""
  curve = np.asarray(curve)
  return np.mean(curve[:, :1] - curve, axis=1)


def _patch_scores(maps, patch):
  n, height, width = maps.shape
  if height % patch or width % patch:
    raise ValueError(f'patch {patch} must divide the image size {height}x{width}.')
  return maps.reshape(n, height // patch, patch, width // patch, patch).sum(axis=(2, 4))


def flipping_curve(
  predict: Callable, images, order, target, steps: int, baseline=0.0, patch: int = 1
):
  """Target score after replacing the first k/steps of `order` (patch indices, most important
  first, [N, patches]) by `baseline`, for k = 0..steps. `predict(images) -> scores [N, K]`."""
  images = jnp.asarray(images)
  n, height, width = images.shape[:3]
  patches = order.shape[1]
  rank = jnp.argsort(order, axis=1)  # rank[n, p]: when patch p is flipped
  rows = jnp.arange(n)
  curve = []
  for step in range(steps + 1):
    flipped = rank < round(step * patches / steps)
    flipped = flipped.reshape(n, height // patch, width // patch)
    flipped = jnp.repeat(jnp.repeat(flipped, patch, axis=1), patch, axis=2)
    perturbed = jnp.where(flipped[..., None], jnp.asarray(baseline, images.dtype), images)
    curve.append(np.asarray(predict(perturbed)[rows, target]))
  return np.stack(curve, axis=1)


def pixel_flipping(
  predict: Callable, images, relevance, target, key, steps: int = 20, baseline=0.0, patch: int = 1
) -> PixelFlipping:
  """Most-relevant-first flipping against a random order (same steps, same baseline).

  Args:
    predict: images [N, H, W, C] -> scores [N, K] (logits or probabilities), e.g. a jitted
      `lambda x: model.apply(variables, x, train=False)`.
    images: model inputs [N, H, W, C].
    relevance: [N, H, W] or [N, H, W, C]; patches are ranked by their summed relevance.
    target: class per example [N] whose score is tracked.
    key: PRNG key for the random order.
    steps: curve points after the start; each flips 1/steps of the patches.
    baseline: the replacement value (scalar, or broadcastable to one image, e.g. a mean image).
    patch: flip patch x patch blocks instead of single pixels (must divide H and W).
  """
  relevance = jnp.asarray(relevance)
  maps = relevance.sum(axis=-1) if relevance.ndim == 4 else relevance
  scores = _patch_scores(maps, patch).reshape(maps.shape[0], -1)
  target = jnp.broadcast_to(jnp.asarray(target), (maps.shape[0],))
  by_relevance = jnp.argsort(-scores, axis=1, stable=True)
  keys = jax.random.split(key, maps.shape[0])
  at_random = jax.vmap(lambda k: jax.random.permutation(k, scores.shape[1]))(keys)
  relevance_curve = flipping_curve(predict, images, by_relevance, target, steps, baseline, patch)
  random_curve = flipping_curve(predict, images, at_random, target, steps, baseline, patch)
  return PixelFlipping(relevance_curve, random_curve, aopc(relevance_curve), aopc(random_curve))
