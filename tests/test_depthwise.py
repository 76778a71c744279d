"""shifted_conv_general_dilated against lax.conv_general_dilated (float64).

Forward and gradients. Each comparison runs as one jitted program: op by op, every primitive of
the shifted taps compiled on its own and the file took a minute on two cores.
"""

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import pytest

from xaijax.models import depthwise
from xaijax.models.depthwise import shifted_conv_general_dilated


@pytest.fixture(autouse=True)
def float64():
  with jax.enable_x64(True):
    yield


def _dimension_numbers(num_spatial):
  spatial = 'DHW'[-num_spatial:]
  return ('N' + spatial + 'C', spatial + 'IO', 'N' + spatial + 'C')


def _both(x_shape, window, strides, padding, dilation=None):
  channels = x_shape[-1]
  kwargs = dict(
    rhs_dilation=dilation,
    dimension_numbers=_dimension_numbers(len(window)),
    feature_group_count=channels,
  )

  def reference(x, kernel):
    return lax.conv_general_dilated(x, kernel, strides, padding, **kwargs)

  def shifted(x, kernel):
    return shifted_conv_general_dilated(x, kernel, strides, padding, **kwargs)

  x = jax.random.normal(jax.random.key(0), x_shape, jnp.float64)
  kernel = jax.random.normal(jax.random.key(1), tuple(window) + (1, channels), jnp.float64)
  return reference, shifted, x, kernel


CASES_2D = [
  (stride, padding)
  for stride in (1, 2)
  for padding in ('SAME', 'VALID', ((0, 1), (0, 1)), ((2, 0), (1, -1)))
]


@pytest.mark.parametrize('stride,padding', CASES_2D)
def test_matches_lax_forward_and_gradients(stride, padding):
  # An odd height and an even width: padding splits differ between the two.
  reference, shifted, x, kernel = _both((3, 9, 8, 5), (3, 3), (stride, stride), padding)
  cotangent = jax.random.normal(
    jax.random.key(2), jax.eval_shape(reference, x, kernel).shape, jnp.float64
  )

  @jax.jit
  def forward_and_vjp(x, kernel, cotangent):
    (expected, reference_vjp), (got, shifted_vjp) = (
      jax.vjp(f, x, kernel) for f in (reference, shifted)
    )
    return expected, got, reference_vjp(cotangent), shifted_vjp(cotangent)

  expected, got, expected_grads, got_grads = forward_and_vjp(x, kernel, cotangent)
  assert got.shape == expected.shape
  np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
  for got_grad, expected_grad in zip(got_grads, expected_grads):
    np.testing.assert_allclose(got_grad, expected_grad, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
  'x_shape,window,strides,padding,dilation',
  [
    ((2, 11, 4), (3,), (2,), 'SAME', (1,)),  # 1-D
    ((2, 13, 3), (5,), (3,), ((2, 1),), (2,)),  # stride 3, dilated
    ((2, 9, 9, 4), (3, 3), (1, 2), 'SAME', (2, 1)),  # mixed strides, dilated
    ((1, 7, 6, 5, 3), (3, 2, 2), (2, 1, 2), 'SAME', (1, 2, 1)),  # 3-D
  ],
)
def test_matches_lax_other_geometries(x_shape, window, strides, padding, dilation):
  reference, shifted, x, kernel = _both(x_shape, window, strides, padding, dilation)
  loss = lambda f: lambda x, k: jnp.sum(jnp.sin(f(x, k)))

  @jax.jit
  def forward_and_grads(x, kernel):
    return [(f(x, kernel), jax.grad(loss(f), (0, 1))(x, kernel)) for f in (shifted, reference)]

  (got, got_grads), (expected, expected_grads) = forward_and_grads(x, kernel)
  np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
  for got_grad, expected_grad in zip(got_grads, expected_grads):
    np.testing.assert_allclose(got_grad, expected_grad, rtol=0, atol=1e-12)


def test_second_order_gradient_matches_lax():
  # The custom backward is itself built from differentiable ops (e.g. for a gradient penalty).
  reference, shifted, x, kernel = _both((2, 6, 6, 3), (3, 3), (2, 2), ((0, 1), (0, 1)))

  def grad_norm(f):
    return lambda x, k: jnp.sum(jax.grad(lambda x: jnp.sum(f(x, k) ** 2))(x) ** 2)

  got, expected = jax.jit(
    lambda x, kernel: [jax.grad(grad_norm(f), 1)(x, kernel) for f in (shifted, reference)]
  )(x, kernel)
  np.testing.assert_allclose(got, expected, rtol=1e-10)


def test_vmap_over_stacked_kernels_and_inputs():
  reference, shifted, x, kernel = _both((2, 8, 8, 4), (3, 3), (2, 2), 'SAME')
  xs = jnp.stack([x, 2 * x + 1, -x])
  kernels = jnp.stack([kernel, -kernel, kernel**2])

  def loss(f):
    return lambda x, k: jnp.sum(jnp.tanh(f(x, k)))

  got = jax.jit(jax.vmap(jax.value_and_grad(loss(shifted), (0, 1))))(xs, kernels)
  reference_value_and_grad = jax.jit(jax.value_and_grad(loss(reference), (0, 1)))
  expected = [reference_value_and_grad(a, b) for a, b in zip(xs, kernels)]
  np.testing.assert_allclose(got[0], [e[0] for e in expected], rtol=1e-12)
  for i in range(3):
    np.testing.assert_allclose(got[1][0][i], expected[i][1][0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(got[1][1][i], expected[i][1][1], rtol=0, atol=1e-12)


@pytest.mark.parametrize('batch', [1, 7, 48])
def test_kernel_gradient_for_batches_not_a_multiple_of_the_unroll(batch):
  reference, shifted, x, kernel = _both((batch, 5, 5, 2), (3, 3), (1, 1), 'SAME')
  loss = lambda f: lambda k: jnp.sum(f(x, k) ** 2)
  got, expected = jax.jit(lambda k: [jax.grad(loss(f))(k) for f in (shifted, reference)])(kernel)
  np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_other_convolutions_fall_back_to_lax(monkeypatch):
  calls = []
  original = lax.conv_general_dilated

  def spy(*args, **kwargs):
    calls.append(kwargs.get('feature_group_count', 1))
    return original(*args, **kwargs)

  monkeypatch.setattr(depthwise.lax, 'conv_general_dilated', spy)
  x = jnp.ones((1, 6, 6, 4))

  def init(features, groups):
    # Tracing is enough to see which function the layer calls; nothing needs compiling.
    conv = nn.Conv(
      features,
      (3, 3),
      feature_group_count=groups,
      conv_general_dilated=shifted_conv_general_dilated,
    )
    jax.eval_shape(conv.init, jax.random.key(0), x)

  # An ordinary convolution and a grouped (not depthwise) one both go to lax.
  init(3, 1)
  init(4, 2)
  assert calls == [1, 2]
  # A depthwise one does not.
  calls.clear()
  init(4, 4)
  assert calls == []


def test_flax_conv_with_shifted_impl_matches_plain_conv():
  x = jax.random.normal(jax.random.key(3), (2, 10, 10, 6))
  plain = nn.Conv(6, (3, 3), strides=2, padding=((0, 1), (0, 1)), feature_group_count=6)
  fast = nn.Conv(
    6,
    (3, 3),
    strides=2,
    padding=((0, 1), (0, 1)),
    feature_group_count=6,
    conv_general_dilated=shifted_conv_general_dilated,
  )
  variables = jax.jit(plain.init)(jax.random.key(0), x)
  assert jax.tree.map(jnp.shape, jax.eval_shape(fast.init, jax.random.key(0), x)) == jax.tree.map(
    jnp.shape, variables
  )
  np.testing.assert_allclose(
    jax.jit(fast.apply)(variables, x), jax.jit(plain.apply)(variables, x), atol=1e-12
  )
