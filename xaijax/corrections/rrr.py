"""Right for the Right Reasons (Ross et al. 2017): explanations on the artifact cost loss.

Two penalties for `per_seed.Settings.penalty`, each added to the cross-entropy of the same step:

* `InputGradientPenalty` (Ross et al.): weight * mean over the batch of
  sum over pixels (mask * d(sum_k log p_k)/dx)^2, the gradient taken with respect to the model's
  input (after preprocessing). The forward pass is shared with the cross-entropy: one `jax.vjp`
  gives the logits and the input gradient, and `jax.grad` of the whole loss differentiates through
  that vjp (a second-order derivative). BatchNorm is in training mode, as in the step itself, so
  an image's gradient also carries the small (1/batch) path through the batch statistics.
* `LrpPenalty` (new): weight * mean over the batch of the share of positive LRP relevance inside
  the mask, `lrp.metrics.relevance_mass_in_mask` of `lrp.explain` -- the very number the report
  measures -- differentiated with `jax.grad` through the LRP backward pass. LRP explains the
  predicted class of the function the step trains: BatchNorm folded with this batch's statistics,
  recorded from the cross-entropy's own training-mode forward pass. (Explaining with the running
  statistics instead let the penalty and the cross-entropy act on two different networks: early
  in training the running statistics are still near their initial values, the penalty wrecked
  the inference-mode network while the training-mode one fitted the data, and validation F1 stayed
  at chance.)

Which composite (`correction.lrp_composite`): `epsilon_plus`, z+ below the head, chosen on
validation. `epsilon` (the report's) is the cheapest to differentiate (one vjp per layer, where z+
needs two), but with it the network learned to move epsilon-LRP relevance off the overlay while it
still read the logo: 0.005 of the relevance on the overlay and chance F1 once the logos are swapped
(README: "Model corrections").
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import flax.linen as nn
import flax.traverse_util
import jax
import jax.numpy as jnp
import numpy as np

from xaijax import lrp
from xaijax.corrections.masks import CORRECTION_MASK_KEY


def _mask_like(mask, inputs):
  """uint8 [B, H, W, 1] -> float [B, H, W, C] of the inputs' dtype and channels."""
  return jnp.broadcast_to(jnp.asarray(mask, inputs.dtype), inputs.shape)


def log_probability_sum_cotangent(logits):
  """d(sum_k log softmax(z)_k)/dz = 1 - K softmax(z): the vjp seed of Ross et al.'s explanation."""
  return 1.0 - logits.shape[-1] * jax.nn.softmax(logits, axis=-1)


def input_gradient_penalty_value(input_gradient, mask):
  """mean over images of sum over pixels (mask * gradient)^2."""
  masked = input_gradient * _mask_like(mask, input_gradient)
  return jnp.mean(jnp.sum(jnp.square(masked).reshape(masked.shape[0], -1), axis=1))


@dataclasses.dataclass(frozen=True)
class InputGradientPenalty:
  """Ross et al.'s right-reasons term: weight * mean_n sum (mask * d(sum_k log p_k)/dx)^2."""

  weight: float
  batch_keys: ClassVar[tuple[str, ...]] = (CORRECTION_MASK_KEY,)

  def __call__(self, forward, variables, inputs, batch):
    logits, vjp, batch_stats = jax.vjp(lambda x: forward(variables, x), inputs, has_aux=True)
    (input_gradient,) = vjp(log_probability_sum_cotangent(logits))
    value = input_gradient_penalty_value(input_gradient, batch[CORRECTION_MASK_KEY])
    return logits, batch_stats, self.weight * value


def relevance_share_in_mask(relevance, mask):
  """Per image: positive relevance inside the mask / all positive relevance (0: empty mask).

  The share does not change when a map is scaled, so each map is first divided by its largest
  |relevance|, held constant: the gradient is the same, but it stays inside float32 where the
  epsilon rule has absorbed nearly all relevance. An untrained MobileNet explained with its initial
  running statistics gave totals of about 1e-21; the quotient's gradient squares them, which
  underflowed to 0 and made the loss gradient NaN.
  """
  axes = tuple(range(1, relevance.ndim))
  scale = jax.lax.stop_gradient(jnp.max(jnp.abs(relevance), axis=axes, keepdims=True))
  relevance = relevance / jnp.where(scale > 0, scale, 1.0)
  share = lrp.metrics.relevance_mass_in_mask(relevance, mask)
  return jnp.where(jnp.isnan(share), 0.0, share)


def _record_batch_statistics(recorded: dict):
  """A method interceptor that stores, for every BatchNorm the model calls in training mode, the
  mean and (biased) variance of its input over the batch as Flax computes them, keyed by
  (module path..., 'mean' | 'var')."""

  def record(next_fun, args, kwargs, context):
    module = context.module
    if isinstance(module, nn.BatchNorm) and context.method_name == '__call__':
      use_running_average = nn.merge_param(
        'use_running_average', module.use_running_average, kwargs.get('use_running_average')
      )
      if not use_running_average:
        x = jnp.asarray(args[0], jnp.promote_types(args[0].dtype, jnp.float32))
        feature_axes = {a % x.ndim for a in np.atleast_1d(module.axis)}
        axes = tuple(a for a in range(x.ndim) if a not in feature_axes)
        mean = jnp.mean(x, axes)
        if module.use_fast_variance:
          variance = jnp.maximum(jnp.mean(jnp.square(x), axes) - jnp.square(mean), 0.0)
        else:
          variance = jnp.mean(jnp.square(x - jnp.expand_dims(mean, axes)), axes)
        recorded[(*module.path, 'mean')] = mean
        recorded[(*module.path, 'var')] = variance
    return next_fun(*args, **kwargs)

  return record


@dataclasses.dataclass(frozen=True)
class LrpPenalty:
  """weight * mean_n (share of positive LRP relevance of the predicted class inside the mask)."""

  weight: float
  model: nn.Module  # the classifier, for LRP (inference mode)
  composite: str = 'epsilon'
  epsilon: float = 0.1
  batch_keys: ClassVar[tuple[str, ...]] = (CORRECTION_MASK_KEY,)

  def relevance(self, variables, inputs):
    return lrp.explain(
      self.model, variables, inputs, target=None, composite=self.composite, epsilon=self.epsilon
    )

  def __call__(self, forward, variables, inputs, batch):
    with nn.intercept_methods(_record_batch_statistics(recorded := {})):
      logits, batch_stats = forward(variables, inputs)
    as_trained = {**variables, 'batch_stats': flax.traverse_util.unflatten_dict(recorded)}
    relevance = self.relevance(as_trained if recorded else variables, inputs)
    share = relevance_share_in_mask(relevance, batch[CORRECTION_MASK_KEY])
    return logits, batch_stats, self.weight * jnp.mean(share)
