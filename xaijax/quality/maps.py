"""What every measure does to a heatmap first, and how two heatmaps are compared.

Heatmaps here are [N, H, W]: relevance shaped like the input with its channels summed
(`as_maps`). Every function is per example and batched over the leading axis.

Normalisation is per image (each map divided by its own max |value|). Quantus 0.6.0's default
divides by the max over the whole batch, so one image's score there depends on the others in its
batch; per image it does not. Scores that only compare ranks or ratios are the same either way.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def as_maps(relevance):
  """[N, H, W, C] -> [N, H, W] (channels summed); [N, H, W] unchanged."""
  relevance = jnp.asarray(relevance)
  if relevance.ndim == 4:
    return relevance.sum(axis=-1)
  if relevance.ndim != 3:
    raise ValueError(f'relevance must be [N, H, W] or [N, H, W, C], got {relevance.shape}.')
  return relevance


def flat(maps):
  return maps.reshape(maps.shape[0], -1)


@jax.jit
def normalise_per_image(maps):
  """Each map divided by its max |value| (an all-zero map stays zero)."""
  peak = jnp.abs(flat(maps)).max(axis=1).reshape((-1,) + (1,) * (maps.ndim - 1))
  return maps / jnp.where(peak > 0, peak, 1)


@jax.jit
def sortable_keys(values):
  """float32 -> int32 with the same order (and equal keys for equal values, -0.0 as +0.0).

  XLA:CPU sorts a single int32 operand several times faster than floats or several operands.
  """
  values = jnp.asarray(values, jnp.float32)
  # -0.0 == 0.0 but their bits differ (XLA simplifies `x + 0.0` away, so compare instead).
  bits = jax.lax.bitcast_convert_type(jnp.where(values == 0, 0.0, values), jnp.int32)
  return jnp.where(bits < 0, bits ^ jnp.int32(0x7FFFFFFF), bits)


@jax.jit
def sort_values(values):
  """jnp.sort(values, axis=-1) for float32, through the faster integer sort."""
  keys = jnp.sort(sortable_keys(values), axis=-1)
  bits = jnp.where(keys < 0, keys ^ jnp.int32(0x7FFFFFFF), keys)
  return jax.lax.bitcast_convert_type(bits, jnp.float32)


@jax.jit
def average_ranks(values):
  """1-based ranks along the last axis, ties sharing their mean rank (as scipy.stats.rankdata)."""
  keys = sortable_keys(values)
  rows = keys.reshape(-1, keys.shape[-1])

  def ranks(row):
    ordered = jnp.sort(row)
    below = jnp.searchsorted(ordered, row, side='left')
    up_to = jnp.searchsorted(ordered, row, side='right')
    return (below + up_to + 1) / 2

  return jax.vmap(ranks)(rows).reshape(values.shape)


def pearson(a, b, axis=-1):
  """Pearson correlation along `axis`; NaN where either side is constant (undefined, as in
  scipy and so in Quantus)."""
  a = a - a.mean(axis=axis, keepdims=True)
  b = b - b.mean(axis=axis, keepdims=True)
  norm = jnp.sqrt((a * a).sum(axis=axis) * (b * b).sum(axis=axis))
  return jnp.where(norm > 0, (a * b).sum(axis=axis) / jnp.where(norm > 0, norm, 1), jnp.nan)


@jax.jit
def spearman(a, b):
  """Spearman rank correlation of two batches of maps, per example (scipy.stats.spearmanr)."""
  return pearson(average_ranks(flat(a)), average_ranks(flat(b)))


@functools.partial(jax.jit, static_argnames='window')
def ssim(a, b, window: int = 7):
  """Structural similarity of two batches of maps [N, H, W], per example.

  As Quantus computes it (`skimage.metrics.structural_similarity` with its defaults): a uniform
  `window` x `window` filter over the valid positions, sample covariances, K1 = 0.01, K2 = 0.03,
  and the data range of each pair (max - min over both maps). Two equal constant maps score 1.
  """
  if min(a.shape[1:]) < window:
    raise ValueError(f'SSIM needs maps of at least {window}x{window}, got {a.shape[1:]}.')
  both = jnp.concatenate([flat(a), flat(b)], axis=1)
  data_range = (both.max(axis=1) - both.min(axis=1))[:, None, None]
  c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2

  def mean_filter(z):
    summed = jax.lax.reduce_window(z, 0.0, jax.lax.add, (1, window, window), (1, 1, 1), 'VALID')
    return summed / window**2

  covariance_norm = window**2 / (window**2 - 1)
  mean_a, mean_b = mean_filter(a), mean_filter(b)
  var_a = covariance_norm * (mean_filter(a * a) - mean_a**2)
  var_b = covariance_norm * (mean_filter(b * b) - mean_b**2)
  cov = covariance_norm * (mean_filter(a * b) - mean_a * mean_b)
  numerator = (2 * mean_a * mean_b + c1) * (2 * cov + c2)
  denominator = (mean_a**2 + mean_b**2 + c1) * (var_a + var_b + c2)
  score = (numerator / jnp.where(denominator > 0, denominator, 1)).mean(axis=(1, 2))
  return jnp.where(data_range[:, 0, 0] > 0, score, 1.0)
