"""How well a heatmap points at a region.

Localisation against a binary mask (Arras, Osman & Samek 2022, "CLEVR-XAI"), per example:
  relevance_mass_in_mask    positive relevance inside the mask / positive relevance in total
  relevance_rank_accuracy   of the K most relevant pixels (K = mask size), the share inside it
  pointing_game             whether the single most relevant pixel lies inside the mask
An example with an empty mask gets NaN (the question has no answer); average with nanmean.

Faithfulness, randomisation and complexity measures, and these three under Quantus' names, are in
`xaijax.quality`.

Relevance may be [N, H, W] or [N, H, W, C] (channels are summed); masks [N, H, W] or
[N, H, W, 1] in {0, 1}.
"""

from __future__ import annotations

import jax.numpy as jnp


def maps_and_masks(relevance, mask):
  """([N, H*W] maps with channels summed, [N, H*W] bool masks), shapes checked."""
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
  maps, inside = maps_and_masks(relevance, mask)
  positive = jnp.maximum(maps, 0)
  total = positive.sum(axis=1)
  in_mask = jnp.where(inside, positive, 0).sum(axis=1)
  share = jnp.where(total > 0, in_mask / jnp.where(total > 0, total, 1), 0.0)
  return _nan_where_empty(share, inside)


def relevance_rank_accuracy(relevance, mask):
  """Share of the K highest-relevance pixels that lie inside the mask, K = pixels in the mask."""
  maps, inside = maps_and_masks(relevance, mask)
  order = jnp.argsort(-maps, axis=1, stable=True)
  inside_by_rank = jnp.take_along_axis(inside, order, axis=1)
  size = inside.sum(axis=1)
  top = jnp.arange(maps.shape[1])[None, :] < size[:, None]
  hits = jnp.where(top, inside_by_rank, False).sum(axis=1)
  return _nan_where_empty(hits / jnp.maximum(size, 1), inside)


def pointing_game(relevance, mask):
  """1.0 where the most relevant pixel lies inside the mask, else 0.0."""
  maps, inside = maps_and_masks(relevance, mask)
  best = jnp.argmax(maps, axis=1)
  hit = jnp.take_along_axis(inside, best[:, None], axis=1)[:, 0]
  return _nan_where_empty(hit.astype(jnp.float32), inside)
