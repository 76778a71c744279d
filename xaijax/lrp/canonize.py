"""How each piece of a traced Linen model is read for LRP (the canonizers).

* BatchNorm with inference statistics is folded into the Conv or Dense layer right before it
  (`fold_batchnorm`): the pair becomes one affine layer, so the composite's rule sees the layer
  the data actually goes through. A BatchNorm with no such layer before it stays an affine layer
  of its own (a per-channel scale and shift).
* Pointwise activations (ReLU, ReLU6, clip, tanh, ...) pass relevance through unchanged, whether
  they are a Flax module, `jax.nn.relu6` or a plain function: a saturated ReLU6 (z > 6, gradient
  0) still passes its relevance on. Multiplying or dividing by a constant passes it too.
* Dropout at inference is the identity and leaves nothing in the traced program.
* Sums without weights (global average pooling, average pooling, residual additions, adding a
  constant) are linear layers: relevance is shared in proportion to each input's contribution
  (LRP-epsilon with the composite's stabiliser); a constant added in takes its share like a bias.
* Selections and reshapes (reshape, transpose, slicing, padding, concatenation, broadcasting,
  dtype casts) move relevance with the values they move; max pooling gives it to the winner.

Anything else that touches an activation, or a module that owns weights other than Conv, Dense
and BatchNorm, raises an error naming it.
"""

from __future__ import annotations

import jax.numpy as jnp

from xaijax.lrp.rules import AffineLayer

# Applied elementwise to one activation with everything else constant; relevance passes through.
PASS_THROUGH = frozenset(
  {
    'max',
    'min',
    'clamp',
    'mul',
    'div',
    'neg',
    'tanh',
    'logistic',
    'erf',
    'abs',
    'integer_pow',
    'exp',
    'log1p',
    'expm1',
  }
)

# Move values without mixing them; relevance follows through the transpose (vjp).
ROUTE = frozenset(
  {
    'reshape',
    'squeeze',
    'expand_dims',
    'broadcast_in_dim',
    'transpose',
    'slice',
    'dynamic_slice',
    'concatenate',
    'pad',
    'rev',
    'copy',
    'copy_p',
    'convert_element_type',
    'reduce_precision',
    'reduce_max',
    'reduce_min',
    'reduce_window_max',
    'reduce_window_min',
    'gather',
    'split',
    'select_n',
  }
)

# Linear in the activations (plus constants): LRP-epsilon with the composite's stabiliser.
SUM_LIKE = frozenset(
  {
    'add',
    'add_any',
    'sub',
    'reduce_sum',
    'reduce_window_sum',
    'cumsum',
    'dot_general',
    'conv_general_dilated',
  }
)

# What may appear inside a pointwise activation function (a `jit` or custom-derivative block that
# maps one activation elementwise onto an output of the same shape).
ELEMENTWISE = frozenset(
  {
    'add',
    'sub',
    'mul',
    'div',
    'neg',
    'max',
    'min',
    'abs',
    'sign',
    'exp',
    'exp2',
    'log',
    'log1p',
    'expm1',
    'tanh',
    'logistic',
    'erf',
    'erfc',
    'erf_inv',
    'sqrt',
    'rsqrt',
    'cbrt',
    'pow',
    'integer_pow',
    'square',
    'select_n',
    'clamp',
    'gt',
    'ge',
    'lt',
    'le',
    'eq',
    'ne',
    'and',
    'or',
    'not',
    'xor',
    'convert_element_type',
    'copy',
    'copy_p',
    'is_finite',
    'floor',
    'ceil',
    'round',
    'sin',
    'cos',
    'nextafter',
    'reduce_precision',
    'stop_gradient',
  }
)


def fold_batchnorm(layer: AffineLayer, mean, var, scale, offset, epsilon: float) -> AffineLayer:
  """The affine layer `batchnorm(layer(x))`, with BatchNorm's inference statistics.

  BatchNorm computes (z - mean) * scale / sqrt(var + epsilon) + offset per output feature
  (last axis), so the features' column of the kernel is scaled and the bias becomes
  (bias - mean) * factor + offset. Relies on `layer.linear` being linear in its kernel with the
  output feature on the kernel's last axis, as for `nn.Conv` (grouped too) and `nn.Dense`.
  """
  factor = jnp.asarray(scale) * jnp.reciprocal(jnp.sqrt(jnp.asarray(var) + epsilon))
  kernel = layer.kernel * factor.astype(layer.kernel.dtype)
  bias = -mean if layer.bias is None else layer.bias - mean
  bias = bias * factor + offset
  return AffineLayer(linear=layer.linear, kernel=kernel, bias=bias.astype(kernel.dtype))


def batchnorm_as_layer(mean, var, scale, offset, epsilon: float) -> AffineLayer:
  """A BatchNorm with nothing to fold into: the per-feature affine map x * factor + shift."""
  ones = jnp.ones_like(jnp.asarray(mean))
  identity = AffineLayer(linear=_scale_features, kernel=ones, bias=None)
  return fold_batchnorm(identity, mean, var, scale, offset, epsilon)


def _scale_features(kernel, x):
  return x * kernel


# Sign propagation: which outputs are provably >= 0 given which inputs are (a ReLU's output,
# a pooled ReLU output, ...). Rules split inputs into x+ and x-; on such inputs they skip x-.
_ALWAYS_NONNEGATIVE = frozenset({'abs', 'exp', 'exp2', 'logistic', 'sqrt', 'rsqrt', 'square'})
_NONNEGATIVE_IF_ALL = frozenset(
  {
    'min',
    'mul',
    'div',
    'add',
    'add_any',
    'dot_general',
    'conv_general_dilated',
    'reduce_sum',
    'reduce_max',
    'reduce_min',
    'reduce_window_sum',
    'reduce_window_max',
    'reduce_window_min',
    'cumsum',
    'reshape',
    'squeeze',
    'expand_dims',
    'broadcast_in_dim',
    'transpose',
    'slice',
    'dynamic_slice',
    'concatenate',
    'pad',
    'rev',
    'copy',
    'copy_p',
    'convert_element_type',
    'reduce_precision',
    'gather',
    'split',
    'erf',
  }
)


def output_is_nonnegative(name: str, params: dict, nonnegative: list) -> bool:
  """Whether a primitive's (every) output is >= 0, given per input whether it is (ints: True)."""
  if name in _ALWAYS_NONNEGATIVE:
    return True
  if name == 'max':
    return any(nonnegative)
  if name == 'clamp':  # clamp(low, x, high)
    return nonnegative[0] or (nonnegative[1] and nonnegative[2])
  if name == 'select_n':
    return all(nonnegative[1:])
  if name == 'integer_pow':
    return params['y'] % 2 == 0 or nonnegative[0]
  return name in _NONNEGATIVE_IF_ALL and all(nonnegative)
