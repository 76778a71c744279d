"""How concentrated a heatmap is (Quantus' complexity measures), per example, on maps [N, H, W].

  sparseness        Gini index of |map| (Chalasani et al. 2020): 0 for a constant map, -> 1 when
                    one pixel holds everything. Higher: sparser.
  complexity        entropy of |map| / sum |map| (Bhatt et al. 2020): log(pixels) for a constant
                    map, 0 for one pixel. Lower: simpler.
  discrete_entropy  entropy of the histogram of the signed values in `bins` equal bins between the
                    map's min and max (what EfficientMPRT compares).

As in Quantus 0.6.0 (|a| + 1e-7 for Gini, 1e-12 inside the log), after per-image normalisation.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from xaijax.quality.maps import flat, normalise_per_image, sort_values


@jax.jit
def sparseness(maps):
  values = sort_values(flat(jnp.abs(normalise_per_image(maps))) + 1e-7)
  n = values.shape[1]
  index = jnp.arange(1, n + 1, dtype=values.dtype)
  return ((2 * index - n - 1) * values).sum(axis=1) / (n * values.sum(axis=1))


@jax.jit
def complexity(maps):
  values = flat(jnp.abs(normalise_per_image(maps)))
  total = values.sum(axis=1, keepdims=True)
  shares = values / jnp.where(total > 0, total, 1)
  return -(shares * jnp.log(shares + 1e-12)).sum(axis=1)


@functools.partial(jax.jit, static_argnames='bins')
def discrete_entropy(maps, bins: int = 100):
  """np.histogram(map, bins) then scipy.stats.entropy, per example (a constant map: 0)."""
  values = flat(maps)
  low = values.min(axis=1, keepdims=True)
  width = values.max(axis=1, keepdims=True) - low
  position = (values - low) / jnp.where(width > 0, width, 1) * bins
  # np.histogram's last bin is closed on the right, so the maximum falls into it.
  index = jnp.clip(jnp.floor(position).astype(jnp.int32), 0, bins - 1)
  counts = jax.vmap(lambda i: jnp.zeros(bins, values.dtype).at[i].add(1.0))(index)
  shares = counts / values.shape[1]
  return -jnp.where(shares > 0, shares * jnp.log(jnp.where(shares > 0, shares, 1)), 0).sum(axis=1)
