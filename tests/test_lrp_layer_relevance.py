"""Relevance at a named layer's input (explain_with_details(layers=...)), against conservation and
a hand-written NumPy epsilon rule for the head."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xaijax import lrp


class SmallNet(nn.Module):
  use_bias: bool = True

  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Conv(4, (3, 3), use_bias=self.use_bias, name='first')(x))
    x = nn.relu(nn.Conv(6, (3, 3), strides=(2, 2), use_bias=self.use_bias, name='middle')(x))
    x = x.mean(axis=(1, 2))
    return nn.Dense(3, use_bias=self.use_bias, name='head')(x)


@pytest.fixture(scope='module')
def float64():
  with jax.enable_x64(True):
    yield


def setup(use_bias):
  model = SmallNet(use_bias)
  x = jax.random.normal(jax.random.key(0), (3, 8, 8, 2), jnp.float64)
  return model, model.init(jax.random.key(1), x), x


def test_without_biases_every_layer_input_holds_the_whole_logit(float64):
  model, variables, x = setup(use_bias=False)
  explanation = lrp.explain_with_details(
    model,
    variables,
    x,
    composite='epsilon',
    epsilon=1e-12,
    stabilizer=1e-12,
    layers=('first', 'middle', 'head'),
  )
  logit = explanation.logits[jnp.arange(3), explanation.target]
  for name in ('first', 'middle', 'head'):
    total = explanation.layer_relevance[name].reshape(3, -1).sum(axis=1)
    np.testing.assert_allclose(total, logit, rtol=1e-9, err_msg=name)
  assert explanation.layer_relevance['middle'].shape == (3, 8, 8, 4)
  np.testing.assert_array_equal(explanation.layer_relevance['first'], explanation.relevance)


def test_the_heads_input_relevance_is_the_epsilon_rule_by_hand(float64):
  model, variables, x = setup(use_bias=True)
  target = np.array([0, 2, 1])
  explanation = lrp.explain_with_details(
    model, variables, x, target=target, composite='epsilon', epsilon=0.25, layers=('head',)
  )
  # The head's input: the pooled features, computed here by plain application of the layers.
  _, state = model.apply(variables, x, capture_intermediates=True, mutable=['intermediates'])
  pooled = np.asarray(state['intermediates']['middle']['__call__'][0])
  pooled = np.maximum(pooled, 0).mean(axis=(1, 2))
  kernel = np.asarray(variables['params']['head']['kernel'])
  bias = np.asarray(variables['params']['head']['bias'])
  expected = np.zeros_like(pooled)
  for n in range(3):
    c = target[n]
    z = pooled[n] @ kernel[:, c] + bias[c]
    for j in range(pooled.shape[1]):
      expected[n, j] = pooled[n, j] * kernel[j, c] * z / (z + 0.25 * (1.0 if z >= 0 else -1.0))
  np.testing.assert_allclose(explanation.layer_relevance['head'], expected, rtol=1e-10)


def test_an_unknown_layer_is_an_error_listing_the_layers():
  model = SmallNet()
  x = jnp.zeros((1, 8, 8, 2))
  variables = model.init(jax.random.key(0), x)
  with pytest.raises(ValueError, match=r"'pooling' is not a layer.*'first', 'middle', 'head'"):
    lrp.explain_with_details(model, variables, x, layers=('pooling',))
