"""Is the heatmap faithful to the model? Perturb what it calls relevant and watch the score.

  region_perturbation       (Samek et al. 2017) patch x patch regions ranked by their summed
                            relevance are replaced by a baseline one after another, most relevant
                            first ('morf'), least relevant first ('lerf') or at random; the curve
                            is f(x) - f(x_k) after k = 1 .. regions replaced, as Quantus 0.6.0
                            records it, on the softmax probability of the target by default.
  aopc                      area over that curve: its mean. MoRF high (the score falls at once)
                            and LeRF low (it hardly moves) mark a faithful map.
  faithfulness_correlation  (Bhatt et al. 2020) Pearson correlation, over `runs` random subsets of
                            `subset` pixels, between the relevance in the subset and the drop of
                            the target logit when the subset is replaced by the baseline.

Baselines (Quantus' names): 'black' (each image's minimum), 'white' (maximum), 'mean' (its mean),
'zero'. Perturbation replaces whole pixels (all channels); maps are [N, H, W], channels summed.
Where Quantus pads an image that the patch size does not divide, we ask for a patch that does.
Everything is batched: the perturbed copies of all images go through the model together, up to
`chunk` copies per image at a time.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from xaijax.quality.maps import as_maps, flat, pearson

BASELINES = ('black', 'white', 'mean', 'zero')
ORDERS = ('morf', 'lerf', 'random')


def baseline_values(x, baseline: str):
  """One replacement value per image [N, 1, 1, 1] (or a scalar for 'zero')."""
  axes = tuple(range(1, x.ndim))
  if baseline == 'black':
    return x.min(axis=axes, keepdims=True)
  if baseline == 'white':
    return x.max(axis=axes, keepdims=True)
  if baseline == 'mean':
    return x.mean(axis=axes, keepdims=True)
  if baseline == 'zero':
    return jnp.zeros((), x.dtype)
  raise ValueError(f'Unknown baseline {baseline!r}; choose from {BASELINES}.')


def patch_sums(maps, patch: int):
  """[N, H, W] -> [N, (H / patch) * (W / patch)] relevance per patch, row-major."""
  n, height, width = maps.shape
  if height % patch or width % patch:
    raise ValueError(
      f'the patch size {patch} must divide the image size {height}x{width} '
      '(set config.quality.region_patch to a divisor).'
    )
  return (
    maps.reshape(n, height // patch, patch, width // patch, patch).sum(axis=(2, 4)).reshape(n, -1)
  )


def _target_scores(predict, target, softmax: bool):
  def scores(images):
    logits = predict(images)
    if softmax:
      logits = jax.nn.softmax(logits, axis=-1)
    return jnp.take_along_axis(logits, target[:, None], axis=1)[:, 0]

  return scores


def _perturbed_scores(scores, x, masks_of, count: int, baseline, chunk: int):
  """scores(where(masks_of(k), baseline, x)) for k = 0 .. count-1 -> [count, N]."""

  def one(k):
    return scores(jnp.where(masks_of(k)[..., None], baseline, x))

  # A divisor of `count`, so that every batch has the same shape (one compiled body).
  batch = max(d for d in range(1, min(chunk, count) + 1) if count % d == 0)
  return jax.lax.map(one, jnp.arange(count), batch_size=batch)


def region_perturbation(
  predict: Callable,
  x,
  relevance,
  target,
  *,
  patch: int = 8,
  regions: int = 16,
  order: str = 'morf',
  baseline: str = 'black',
  softmax: bool = True,
  key=None,
  chunk: int = 16,
):
  """Curve [N, regions]: f(x) - f(x with the first k regions replaced), k = 1 .. regions.

  Args:
    predict: model inputs [M, H, W, C] -> logits [M, K].
    x: model inputs [N, H, W, C]; relevance: [N, H, W] or [N, H, W, C]; target: class per example.
    patch: region side in pixels (divides H and W); regions: how many are replaced, one per step.
    order: 'morf', 'lerf' or 'random' (needs `key`); ties keep the row-major patch order.
    baseline: a name in BASELINES; softmax: track probabilities (Quantus' default) or logits.
    chunk: perturbation steps that go through the model at once.
  """
  if order not in ORDERS:
    raise ValueError(f'Unknown order {order!r}; choose from {ORDERS}.')
  maps = as_maps(relevance)
  n, height, width = maps.shape
  sums = patch_sums(maps, patch)
  regions = min(regions, sums.shape[1])
  if order == 'random':
    if key is None:
      raise ValueError("order='random' needs a PRNG key.")
    sums = jax.random.uniform(key, sums.shape)
  ranking = jnp.argsort(-sums if order != 'lerf' else sums, axis=1, stable=True)
  rank = jnp.argsort(ranking, axis=1)  # rank[n, p]: at which step patch p is replaced
  rank = rank.reshape(n, height // patch, width // patch)
  rank = jnp.repeat(jnp.repeat(rank, patch, axis=1), patch, axis=2)
  target = jnp.broadcast_to(jnp.asarray(target, jnp.int32), (n,))
  scores = _target_scores(predict, target, softmax)
  after = _perturbed_scores(
    scores, x, lambda k: rank <= k, regions, baseline_values(x, baseline), chunk
  )
  return (scores(x)[None] - after).T


def aopc(curve):
  """Area over the perturbation curve: the mean of f(x) - f(x_k) over its steps."""
  return jnp.mean(curve, axis=-1)


def faithfulness_correlation(
  predict: Callable,
  x,
  relevance,
  target,
  key,
  *,
  runs: int = 32,
  subset: int = 64,
  baseline: str = 'black',
  softmax: bool = False,
  chunk: int = 16,
):
  """Per example: Pearson r between relevance in random pixel subsets and the score drop they
  cause (logits by default, as Quantus). Constant relevance sums or drops give NaN."""
  maps = flat(as_maps(relevance))
  n, pixels = maps.shape
  if not 0 < subset < pixels:
    raise ValueError(
      f'the subset size {subset} must lie between 0 and the pixel count {pixels} '
      '(config.quality.faithfulness_subset).'
    )
  target = jnp.broadcast_to(jnp.asarray(target, jnp.int32), (n,))
  draws = jax.random.uniform(key, (runs, n, pixels))
  threshold = jax.lax.top_k(draws, subset)[0][..., -1:]
  chosen = draws >= threshold  # exactly `subset` pixels per run and image
  scores = _target_scores(predict, target, softmax)
  after = _perturbed_scores(
    scores, x, lambda k: chosen[k].reshape(x.shape[:3]), runs, baseline_values(x, baseline), chunk
  )
  drops = scores(x)[None] - after  # [runs, N]
  relevance_in_subset = jnp.where(chosen, maps[None], 0).sum(axis=2)
  return pearson(relevance_in_subset, drops, axis=0)
