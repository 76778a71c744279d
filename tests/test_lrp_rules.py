"""Every LRP rule against its formula written out in numpy on the layer's explicit matrix.

The matrix M (outputs x inputs) of each layer comes from `jax.jacobian`; with contributions
C_ji = M_ji x_i the rules are sums over C, so the reference never calls the rule code or the
layer with a modified kernel (M+ = max(M, 0) holds because every entry of a convolution's matrix
is a single kernel weight or 0).
"""

import dataclasses
import functools
import zlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xaijax.lrp import rules
from xaijax.models.depthwise import shifted_conv_general_dilated


@pytest.fixture(autouse=True)
def float64():
  with jax.enable_x64(True):
    yield


LAYERS = {
  'dense': (lambda bias: nn.Dense(5, use_bias=bias), (3, 7)),
  'conv': (lambda bias: nn.Conv(4, (3, 3), padding='SAME', use_bias=bias), (2, 5, 5, 3)),
  'strided_conv': (
    lambda bias: nn.Conv(3, (3, 3), strides=(2, 2), padding=((1, 0), (0, 1)), use_bias=bias),
    (2, 7, 6, 2),
  ),
  'depthwise_conv': (
    lambda bias: nn.Conv(
      3, (3, 3), strides=(2, 2), padding='SAME', feature_group_count=3, use_bias=bias
    ),
    (2, 6, 6, 3),
  ),
  'depthwise_shifted': (
    lambda bias: nn.Conv(
      4,
      (3, 3),
      strides=(2, 2),
      padding=((0, 1), (0, 1)),
      feature_group_count=4,
      use_bias=bias,
      conv_general_dilated=shifted_conv_general_dilated,
    ),
    (2, 6, 6, 4),
  ),
}


@functools.cache
def make_case(layer_name, with_bias):
  """(AffineLayer, x, relevance, matrix [J, I], bias per output [J]) in float64."""
  with jax.enable_x64(True):
    make_module, shape = LAYERS[layer_name]
    module = make_module(with_bias)
    rng = np.random.default_rng(zlib.crc32(f'{layer_name}{with_bias}'.encode()))
    x = jnp.asarray(rng.normal(size=shape))
    params = module.init(jax.random.key(0), x)['params']
    kernel = jnp.asarray(rng.normal(size=params['kernel'].shape))
    bias = jnp.asarray(rng.normal(size=params['bias'].shape)) if with_bias else None
    linear_module = module.clone(use_bias=False)

    def linear(k, inputs):
      return linear_module.apply({'params': {'kernel': k}}, inputs)

    layer = rules.AffineLayer(linear=linear, kernel=kernel, bias=bias)
    one = x[:1]
    out_shape = linear(kernel, one).shape
    matrix = np.asarray(jax.jacobian(lambda v: linear(kernel, v))(one)).reshape(
      int(np.prod(out_shape)), one.size
    )
    bias_out = (
      np.broadcast_to(np.asarray(bias), out_shape).ravel()
      if with_bias
      else np.zeros(matrix.shape[0])
    )
    relevance = jnp.asarray(rng.normal(size=(shape[0],) + out_shape[1:]))
    return layer, x, relevance, matrix, bias_out


def stab(z, eps):
  return z + eps * np.where(z >= 0, 1.0, -1.0)


def divide(r, den):
  return np.where(den == 0, 0.0, r / np.where(den == 0, 1.0, den))


def share(contributions, denominator, relevance, eps):
  """R_i = sum_j contributions_ji / stab(denominator_j) R_j."""
  return contributions.T @ divide(relevance, stab(denominator, eps))


def reference(rule, x, r, m, b, eps, low=None, high=None, gamma=0.25, alpha=2.0, beta=1.0):
  """One example: x [I], r [J], m [J, I], b [J]."""
  c = m * x[None, :]
  pos, neg = np.maximum(c, 0), np.minimum(c, 0)
  if rule in ('epsilon', 'lrp_0'):
    return share(c, c.sum(1) + b, r, 0.0 if rule == 'lrp_0' else eps)
  if rule == 'zplus':
    return share(pos, pos.sum(1) + np.maximum(b, 0), r, eps)
  if rule == 'alpha_beta':
    return alpha * share(pos, pos.sum(1) + np.maximum(b, 0), r, eps) - beta * share(
      neg, neg.sum(1) + np.minimum(b, 0), r, eps
    )
  if rule == 'gamma':
    z = c.sum(1) + b
    up, down = c + gamma * pos, c + gamma * neg
    return share(up, up.sum(1) + b + gamma * np.maximum(b, 0), np.where(z > 0, r, 0), eps) + share(
      down, down.sum(1) + b + gamma * np.minimum(b, 0), np.where(z < 0, r, 0), eps
    )
  if rule == 'zbox':
    boxed = c - np.maximum(m, 0) * low[None, :] - np.minimum(m, 0) * high[None, :]
    return share(boxed, boxed.sum(1), r, eps)
  if rule == 'flat':
    connected = (m != 0).astype(float)
    return share(connected, connected.sum(1), r, eps)
  if rule == 'wsquare':
    squared = m**2
    return share(squared, squared.sum(1) + b**2, r, eps)
  raise ValueError(rule)


def call_rule(rule, layer, x, relevance, eps, low, high):
  if rule == 'epsilon':
    return rules.epsilon(layer, x, relevance, epsilon=eps)
  if rule == 'lrp_0':
    return rules.lrp_0(layer, x, relevance)
  if rule == 'zbox':
    return rules.zbox(layer, x, relevance, low=low, high=high, stabilizer=eps)
  return rules.RULES[rule](layer, x, relevance, stabilizer=eps)


@pytest.mark.parametrize('rule', sorted(rules.RULES))
@pytest.mark.parametrize('layer_name', sorted(LAYERS))
@pytest.mark.parametrize('with_bias', [False, True])
@pytest.mark.parametrize('eps', [1e-9, 0.5])
def test_rule_matches_explicit_matrix_reference(rule, layer_name, with_bias, eps):
  layer, x, relevance, matrix, bias = make_case(layer_name, with_bias)
  # z-box bounds: per-input arrays (a box around x) for one layer kind, scalars otherwise.
  if layer_name == 'conv':
    low, high = x - 0.5, x + 1.0
  else:
    low, high = -3.0, 3.0
  ours = np.asarray(call_rule(rule, layer, x, relevance, eps, low, high))
  assert ours.shape == x.shape
  for example in range(x.shape[0]):
    flat_x = np.asarray(x[example]).ravel()
    expected = reference(
      rule,
      flat_x,
      np.asarray(relevance[example]).ravel(),
      matrix,
      bias,
      eps,
      low=np.broadcast_to(np.asarray(low), x.shape)[example].ravel(),
      high=np.broadcast_to(np.asarray(high), x.shape)[example].ravel(),
    )
    scale = np.abs(expected).max()
    np.testing.assert_allclose(ours[example].ravel(), expected, rtol=1e-6, atol=1e-9 * scale)


def test_stabilizer_pushes_zero_up_and_keeps_signs():
  z = jnp.array([-2.0, -0.0, 0.0, 3.0])
  np.testing.assert_array_equal(rules.stabilize(z, 0.5), [-2.5, 0.5, 0.5, 3.5])


def test_lrp_0_passes_nothing_through_an_exactly_zero_output():
  layer = rules.AffineLayer(linear=lambda k, x: x @ k, kernel=jnp.array([[1.0], [1.0]]))
  x = jnp.array([[1.0, -1.0]])  # z = 0
  relevance_in = rules.lrp_0(layer, x, jnp.array([[5.0]]))
  np.testing.assert_array_equal(relevance_in, [[0.0, 0.0]])


def test_alpha_beta_requires_alpha_minus_beta_one():
  layer, x, relevance, _, _ = make_case('dense', True)
  with pytest.raises(ValueError, match='alpha - beta = 1'):
    rules.alpha_beta(layer, x, relevance, alpha=2.0, beta=2.0)


@pytest.mark.parametrize('rule', ['epsilon', 'zplus', 'alpha_beta', 'flat', 'wsquare', 'zbox'])
def test_rules_conserve_relevance_without_bias(rule):
  """Without bias and with a vanishing stabiliser a layer passes on all of its relevance."""
  layer, x, relevance, _, _ = make_case('conv', False)
  if rule in ('zplus', 'alpha_beta'):
    # Every output needs positive (and negative) contributions to keep its relevance.
    x = jnp.abs(x)
  eps = 1e-12
  relevance_in = call_rule(rule, layer, x, relevance, eps, -3.0, 3.0)
  np.testing.assert_allclose(
    relevance_in.sum(axis=(1, 2, 3)), relevance.sum(axis=(1, 2, 3)), rtol=1e-8
  )


@pytest.mark.parametrize('rule', ['zplus', 'alpha_beta', 'gamma'])
@pytest.mark.parametrize('layer_name', ['conv', 'depthwise_shifted'])
def test_nonnegative_input_shortcut_gives_the_same_relevance(rule, layer_name):
  layer, x, relevance, _, _ = make_case(layer_name, True)
  x = jnp.abs(x)
  promised = dataclasses.replace(layer, nonnegative_inputs=True)
  np.testing.assert_allclose(
    rules.RULES[rule](promised, x, relevance),
    rules.RULES[rule](layer, x, relevance),
    rtol=1e-12,
    atol=1e-15,
  )
