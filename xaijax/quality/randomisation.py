"""Sanity checks (Adebayo et al. 2018): an explanation of the model must change with the model.

  mprt           Model Parameter Randomisation Test, cascading top-down: the layers' variables
                 are replaced by a fresh initialisation from the top layer down, and after each
                 cut the heatmap is compared with the original one: Spearman rank correlation of
                 |maps| (Quantus' default) and SSIM of |maps| / max |map|, per example. Low at full
                 randomisation: the explainer depends on the model. Quantus' `MPRT` score is
                 the last point (`return_last_correlation`).
  efficient_mprt (Hedström et al. 2023) relative rise of the heatmap's discrete entropy from the
                 original to the fully randomised model: (H(e_random) - H(e)) / H(e). High: the
                 explanation turns to noise when the model does.
  random_logit   SSIM between the map of the target class and that of a random other class
                 (Sixt et al. 2020), maps / max |map|. Low: the explanation depends on the class.

Randomisation as in Quantus: one initialisation seed for every layer, and a "layer" is every
module that owns variables, BatchNorm included, which `model.init` resets to mean 0, var 1,
scale 1, bias 0 (Quantus' `reset_parameters`). Quantus randomises every layer; `cuts` chooses
how many points of the cascade are measured (the last is always the whole model). All points run
as one compiled loop (`jax.lax.map`), so the cost is one explanation per point.
"""

from __future__ import annotations

from collections.abc import Callable
import functools

import flax.linen as nn
import flax.traverse_util
import jax
import jax.numpy as jnp

from xaijax.quality import complexity
from xaijax.quality.maps import as_maps, normalise_per_image, spearman, ssim


def layer_paths(model, variables, x, call_kwargs) -> list[tuple[str, ...]]:
  """Module paths that own variables, in the order the model first calls them (bottom-up)."""
  called = []

  def record(next_fun, args, kwargs, context):
    path = tuple(context.module.path)
    if path not in called:
      called.append(path)
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(record):
    jax.eval_shape(lambda v, inputs: model.apply(v, inputs, **call_kwargs), variables, x)
  owners = []
  for key in flax.traverse_util.flatten_dict(variables):
    owner = tuple(key[1:-1])
    if owner not in owners:
      owners.append(owner)
  ordered = [path for path in called if path in owners]
  return ordered + [path for path in owners if path not in ordered]


def layer_ranks(variables, paths):
  """A pytree like `variables`: each leaf's layer position counted from the top (0 = last layer)."""
  position = {path: len(paths) - 1 - index for index, path in enumerate(paths)}
  flat_variables = flax.traverse_util.flatten_dict(variables)
  ranks = {key: position[tuple(key[1:-1])] for key in flat_variables}
  return flax.traverse_util.unflatten_dict(ranks)


def cascade_cuts(layers: int, cuts: int) -> list[int]:
  """How many top layers are randomised at each measured point: `cuts` points, evenly spread,
  the last one the whole model (every layer when cuts >= layers)."""
  cuts = max(1, min(cuts, layers))
  return sorted({max(1, round(k * layers / cuts)) for k in range(1, cuts + 1)})


def randomised_top(variables, random_variables, ranks, cut):
  """`variables` with the `cut` top layers taken from `random_variables` (cut may be traced)."""
  return jax.tree.map(
    lambda kept, fresh, rank: jnp.where(rank < cut, fresh, kept), variables, random_variables, ranks
  )


@functools.partial(jax.jit, static_argnames='bins')
def compare_to_original(original_maps, randomised_maps, bins: int = 100):
  """One point of the cascade, per example: 'spearman' and 'ssim' of the |maps| / max |map| of
  the original and the randomised model, and the discrete 'entropy' of the randomised maps."""
  original_abs = normalise_per_image(jnp.abs(original_maps))
  randomised_abs = normalise_per_image(jnp.abs(randomised_maps))
  return {
    'spearman': spearman(original_abs, randomised_abs),
    'ssim': ssim(original_abs, randomised_abs),
    'entropy': complexity.discrete_entropy(randomised_maps, bins),
  }


def mprt(
  explain_with: Callable,
  variables,
  random_variables,
  ranks,
  cuts,
  original_maps,
  bins: int = 100,
):
  """`compare_to_original` at every point of the top-down cascade: dict of [cuts, N].

  Args:
    explain_with: variables -> relevance [N, H, W(, C)] (the explainer, its inputs, targets and
      key bound, so only the model changes).
    variables, random_variables: the trained and a freshly initialised set (same structure).
    ranks: `layer_ranks(variables, ...)`; cuts: `cascade_cuts(...)`.
    original_maps: the explainer's maps on the trained model.
    bins: histogram bins of the discrete entropy (EfficientMPRT).
  """

  def at_cut(cut):
    randomised = randomised_top(variables, random_variables, ranks, cut)
    return compare_to_original(original_maps, as_maps(explain_with(randomised)), bins)

  return jax.lax.map(at_cut, jnp.asarray(cuts, jnp.int32))


@functools.partial(jax.jit, static_argnames='bins')
def efficient_mprt(original_maps, randomised_entropy, bins: int = 100):
  """(H(randomised) - H(original)) / H(original) per example; NaN where H(original) = 0."""
  original = complexity.discrete_entropy(original_maps, bins)
  return jnp.where(original > 0, (randomised_entropy - original) / original, jnp.nan)


def other_classes(key, target, num_classes: int):
  """A uniformly random class other than `target`, per example."""
  shift = jax.random.randint(key, target.shape, 1, num_classes)
  return (target + shift) % num_classes


@jax.jit
def random_logit(original_maps, other_class_maps):
  """SSIM between the maps of the target class and of another class, both / max |map|."""
  return ssim(normalise_per_image(original_maps), normalise_per_image(other_class_maps))
