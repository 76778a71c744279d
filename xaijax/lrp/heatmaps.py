"""Heatmaps."""

import jax.numpy as jnp


def heatmap(relevance):
  """Relevance [N, H, W, C] -> [N, H, W], summed over channels."""
  return jnp.sum(relevance, axis=-1)
