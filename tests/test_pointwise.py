"""dot_conv_general_dilated against lax.conv_general_dilated (float64), forward and gradients.

Each comparison runs as one jitted program: op by op, every primitive compiled on its own and
the file took about 17 s on two cores.
"""

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import pytest

from xaijax.models import pointwise
from xaijax.models.pointwise import dot_conv_general_dilated


@pytest.fixture(autouse=True)
def float64():
  with jax.enable_x64(True):
    yield


@pytest.mark.parametrize(
  'x_shape,padding',
  [((3, 5, 4, 6), 'SAME'), ((2, 7, 6), 'VALID'), ((2, 3, 4, 2, 5), ((0, 0),) * 3)],
)
def test_matches_lax_forward_and_gradients(x_shape, padding):
  num_spatial = len(x_shape) - 2
  spatial = 'DHW'[-num_spatial:]
  dimension_numbers = ('N' + spatial + 'C', spatial + 'IO', 'N' + spatial + 'C')
  strides = (1,) * num_spatial
  x = jax.random.normal(jax.random.key(0), x_shape, jnp.float64)
  kernel = jax.random.normal(jax.random.key(1), (1,) * num_spatial + (x_shape[-1], 7), jnp.float64)

  def reference(x, kernel):
    return lax.conv_general_dilated(
      x, kernel, strides, padding, dimension_numbers=dimension_numbers
    )

  def as_dot(x, kernel):
    return dot_conv_general_dilated(
      x, kernel, strides, padding, dimension_numbers=dimension_numbers
    )

  cotangent = jax.random.normal(
    jax.random.key(2), jax.eval_shape(reference, x, kernel).shape, jnp.float64
  )

  @jax.jit
  def forward_and_vjp(x, kernel, cotangent):
    (expected, reference_vjp), (got, dot_vjp) = (jax.vjp(f, x, kernel) for f in (reference, as_dot))
    return expected, got, reference_vjp(cotangent), dot_vjp(cotangent)

  expected, got, expected_grads, got_grads = forward_and_vjp(x, kernel, cotangent)
  np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
  for got_grad, expected_grad in zip(got_grads, expected_grads):
    np.testing.assert_allclose(got_grad, expected_grad, rtol=0, atol=1e-12)


def test_vmap_and_second_order():
  x = jax.random.normal(jax.random.key(0), (3, 2, 4, 4, 5), jnp.float64)
  kernel = jax.random.normal(jax.random.key(1), (3, 1, 1, 5, 2), jnp.float64)
  dn = ('NHWC', 'HWIO', 'NHWC')

  def loss(conv):
    def f(x, k):
      inner = jax.grad(
        lambda x: jnp.sum(jnp.tanh(conv(x, k, (1, 1), 'SAME', dimension_numbers=dn)))
      )
      return jnp.sum(inner(x) ** 2)

    return f

  got, expected = jax.jit(
    lambda x, kernel: [
      jax.vmap(jax.grad(loss(conv), (0, 1)))(x, kernel)
      for conv in (dot_conv_general_dilated, lax.conv_general_dilated)
    ]
  )(x, kernel)
  for g, e in zip(got, expected):
    np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-12)


def test_other_convolutions_fall_back_to_lax(monkeypatch):
  calls = []
  original = lax.conv_general_dilated

  def spy(*args, **kwargs):
    calls.append(args[2])
    return original(*args, **kwargs)

  monkeypatch.setattr(pointwise.lax, 'conv_general_dilated', spy)
  x = jnp.ones((1, 6, 6, 4))
  for conv in (
    nn.Conv(3, (3, 3)),
    nn.Conv(3, (1, 1), strides=2),
    nn.Conv(4, (1, 1), feature_group_count=2),
    nn.Conv(3, (1, 1), padding=1),
  ):
    conv = conv.clone(conv_general_dilated=dot_conv_general_dilated)
    # Tracing is enough to see which function the layer calls; nothing needs compiling.
    jax.eval_shape(conv.init, jax.random.key(0), x)
  assert len(calls) == 4
  calls.clear()
  conv = nn.Conv(3, (1, 1), conv_general_dilated=dot_conv_general_dilated)
  jax.eval_shape(conv.init, jax.random.key(0), x)
  assert calls == []
