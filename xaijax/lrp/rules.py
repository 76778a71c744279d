"""LRP rules for one affine layer, as pure functions built on `jax.vjp`.

An affine layer is `z = linear(kernel, x) + bias`, with `linear` linear in `x` and in `kernel`
separately (a convolution of any stride, padding or grouping, a dense layer, a BatchNorm's
per-channel scale) and `bias` added along the last axis. Every rule maps the relevance of the
outputs `relevance` (shape of z) to the relevance of the inputs (shape of x) as

    z, vjp = jax.vjp(lambda v: linear(kernel', v), x')      for one or more modified (x', kernel')
    relevance_in = x' * vjp(relevance / stabilize(z))

so no rule builds the layer's matrix. The formulas are Zennit's (`zennit.rules`, v0.5), so the
numbers agree with it, including inputs of both signs:

  epsilon     x W^T (R / stab(xW + b))                                    sign(0) counts as +1
  lrp_0       epsilon with epsilon 0; an output that is exactly 0 passes no relevance
  zplus       positive contributions only: x+W+ + x-W- (+ b+)             (alpha 1, beta 0)
  alpha_beta  alpha * positive share - beta * negative share, alpha - beta = 1
  gamma       W + gamma W+ for positive outputs, W + gamma W- for negative ones (Andeol et al.)
  zbox        x W - low W+ - high W-, for an input bounded by [low, high] (the bias cancels)
  flat        every connected input gets an equal share (weights and inputs set to one)
  wsquare     shares proportional to W^2 (+ b^2), independent of the input

The bias takes part in z wherever Zennit's does, so a layer keeps (absorbs) the share
`bias / z` of its relevance; `xaijax.lrp.explain_with_details` reports how much.
"""

from __future__ import annotations

from collections.abc import Callable
import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

Array = Any


@dataclasses.dataclass(frozen=True)
class AffineLayer:
  """z = linear(kernel, x) + bias, the bias broadcast along the last axis (None: no bias).

  `nonnegative_inputs` promises x >= 0 (the layer reads a ReLU's output): the rules that split
  x into x+ and x- then skip the x- terms, which are zero, and run about twice as fast.
  """

  linear: Callable[[Array, Array], Array]
  kernel: Array
  bias: Array | None = None
  nonnegative_inputs: bool = False

  def __call__(self, x):
    return _affine(self.linear, self.kernel, self.bias, x)


def stabilize(z, epsilon):
  """z + epsilon * sign(z), with sign(0) = +1, so a zero output is pushed away from zero."""
  return z + epsilon * jnp.where(z >= 0, 1.0, -1.0).astype(z.dtype)


def safe_divide(numerator, denominator):
  """numerator / denominator, and 0 where the denominator is exactly 0 (only with epsilon 0)."""
  zero = denominator == 0
  return jnp.where(zero, 0.0, numerator / jnp.where(zero, 1.0, denominator)).astype(numerator.dtype)


def _affine(linear, kernel, bias, x):
  z = linear(kernel, x)
  return z if bias is None else z + bias


def _vjp(linear, kernel, bias, x):
  """(z, vjp) of x -> linear(kernel, x) + bias."""
  return jax.vjp(lambda inputs: _affine(linear, kernel, bias, inputs), x)


def _positive(a):
  return None if a is None else jnp.maximum(a, 0)


def _negative(a):
  return None if a is None else jnp.minimum(a, 0)


# ----------------------------------------------------------------------------- rules


def epsilon(layer: AffineLayer, x, relevance, epsilon: float = 1e-6):
  """LRP-epsilon: R_i = x_i sum_j W_ji R_j / (z_j + epsilon sign(z_j))."""
  z, vjp = _vjp(layer.linear, layer.kernel, layer.bias, x)
  (grad,) = vjp(safe_divide(relevance, stabilize(z, epsilon)))
  return x * grad


def lrp_0(layer: AffineLayer, x, relevance):
  """LRP-0: R_i = x_i sum_j W_ji R_j / z_j (no stabiliser; zero outputs pass nothing)."""
  return epsilon(layer, x, relevance, epsilon=0.0)


def _signed_terms(layer, x, kernel_for_positive_x, kernel_for_negative_x, bias):
  """z and vjps of the two terms x+ K1 + bias and x- K2 (the split Zennit uses)."""
  if layer.nonnegative_inputs:
    z, vjp = _vjp(layer.linear, kernel_for_positive_x, bias, x)
    return z, lambda scaled: x * vjp(scaled)[0]
  x_pos, x_neg = jnp.maximum(x, 0), jnp.minimum(x, 0)
  z_pos, vjp_pos = _vjp(layer.linear, kernel_for_positive_x, bias, x_pos)
  z_neg, vjp_neg = _vjp(layer.linear, kernel_for_negative_x, None, x_neg)

  def relevance_in(scaled):
    return x_pos * vjp_pos(scaled)[0] + x_neg * vjp_neg(scaled)[0]

  return z_pos + z_neg, relevance_in


def _positive_share(layer, x, relevance, stabilizer):
  """Relevance distributed over the positive contributions x+W+ + x-W- (+ b+)."""
  z, relevance_in = _signed_terms(
    layer, x, _positive(layer.kernel), _negative(layer.kernel), _positive(layer.bias)
  )
  return relevance_in(safe_divide(relevance, stabilize(z, stabilizer)))


def _negative_share(layer, x, relevance, stabilizer):
  """Relevance distributed over the negative contributions x+W- + x-W+ (+ b-)."""
  z, relevance_in = _signed_terms(
    layer, x, _negative(layer.kernel), _positive(layer.kernel), _negative(layer.bias)
  )
  return relevance_in(safe_divide(relevance, stabilize(z, stabilizer)))


def zplus(layer: AffineLayer, x, relevance, stabilizer: float = 1e-6):
  """LRP-z+: only positive contributions x_i W_ji > 0 (and a positive bias) share R_j."""
  return _positive_share(layer, x, relevance, stabilizer)


def alpha_beta(
  layer: AffineLayer, x, relevance, alpha: float = 2.0, beta: float = 1.0, stabilizer: float = 1e-6
):
  """LRP-alpha-beta: alpha * (positive share) - beta * (negative share), alpha - beta = 1."""
  if alpha < 0 or beta < 0 or abs((alpha - beta) - 1.0) > 1e-12:
    raise ValueError(
      f'alpha_beta needs alpha >= 0, beta >= 0 and alpha - beta = 1 (so relevance is '
      f'conserved), got alpha={alpha}, beta={beta}.'
    )
  return alpha * _positive_share(layer, x, relevance, stabilizer) - beta * _negative_share(
    layer, x, relevance, stabilizer
  )


def gamma(layer: AffineLayer, x, relevance, gamma: float = 0.25, stabilizer: float = 1e-6):
  """LRP-gamma, generalised to inputs and outputs of both signs (Zennit's Gamma).

  A positive output j spreads R_j over x+ (W + gamma W+) + x- (W + gamma W-) + b + gamma b+;
  a negative one over x+ (W + gamma W-) + x- (W + gamma W+) + b + gamma b-. For non-negative
  inputs and positive outputs this is Montavon et al.'s rule with rho(w) = w + gamma w+.
  """
  kernel, bias = layer.kernel, layer.bias
  z = _affine(layer.linear, kernel, bias, x)
  favour_positive = (
    kernel + gamma * _positive(kernel),
    kernel + gamma * _negative(kernel),
    None if bias is None else bias + gamma * _positive(bias),
  )
  favour_negative = (
    kernel + gamma * _negative(kernel),
    kernel + gamma * _positive(kernel),
    None if bias is None else bias + gamma * _negative(bias),
  )
  total = jnp.zeros_like(x)
  for sign_mask, kernels in ((z > 0, favour_positive), (z < 0, favour_negative)):
    denominator, relevance_in = _signed_terms(layer, x, *kernels)
    masked = jnp.where(sign_mask, relevance, 0.0).astype(relevance.dtype)
    total = total + relevance_in(safe_divide(masked, stabilize(denominator, stabilizer)))
  return total


def zbox(layer: AffineLayer, x, relevance, low=-1.0, high=1.0, stabilizer: float = 1e-6):
  """LRP-z^B for an input layer whose inputs lie in [low, high] (scalars or arrays like x)."""
  low = jnp.broadcast_to(jnp.asarray(low, x.dtype), x.shape)
  high = jnp.broadcast_to(jnp.asarray(high, x.dtype), x.shape)
  kernel = layer.kernel
  z_x, vjp_x = _vjp(layer.linear, kernel, None, x)
  z_low, vjp_low = _vjp(layer.linear, _positive(kernel), None, low)
  z_high, vjp_high = _vjp(layer.linear, _negative(kernel), None, high)
  scaled = safe_divide(relevance, stabilize(z_x - z_low - z_high, stabilizer))
  return x * vjp_x(scaled)[0] - low * vjp_low(scaled)[0] - high * vjp_high(scaled)[0]


def _input_free(layer, x, relevance, kernel, bias, stabilizer):
  """Rules that replace the input by ones: R_i = sum_j K_ji R_j / sum_i K_ji."""
  z, vjp = _vjp(layer.linear, kernel, bias, jnp.ones_like(x))
  return vjp(safe_divide(relevance, stabilize(z, stabilizer)))[0]


def flat(layer: AffineLayer, x, relevance, stabilizer: float = 1e-6):
  """LRP-flat: R_j is shared equally by all inputs its receptive field connects."""
  return _input_free(layer, x, relevance, jnp.ones_like(layer.kernel), None, stabilizer)


def wsquare(layer: AffineLayer, x, relevance, stabilizer: float = 1e-6):
  """LRP-w^2: R_j is shared in proportion to W_ji^2 (the bias, squared, takes part)."""
  bias = None if layer.bias is None else layer.bias**2
  return _input_free(layer, x, relevance, layer.kernel**2, bias, stabilizer)


RULES = {
  'epsilon': epsilon,
  'lrp_0': lrp_0,
  'zplus': zplus,
  'alpha_beta': alpha_beta,
  'gamma': gamma,
  'zbox': zbox,
  'flat': flat,
  'wsquare': wsquare,
}
