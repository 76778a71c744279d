"""The explainers on models whose attributions are known in closed form, and the stacked-model
path the quality table takes against one model at a time."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xaijax.quality import explainers

SHAPE = (3, 6, 6, 1)
RNG = np.random.default_rng(0)


class Linear(nn.Module):
  """Logits [N, 2]: class 0 = sum(w * x), class 1 = -sum(w * x) (no train flag)."""

  @nn.compact
  def __call__(self, x):
    score = nn.Dense(1, use_bias=False)(x.reshape(x.shape[0], -1))
    return jnp.concatenate([score, -score], axis=1)


class Quadratic(nn.Module):
  """Logits [N, 2]: class 0 = sum(v * x^2); its gradient 2 v x is linear along any ray."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    v = self.param('v', nn.initializers.normal(1.0), x.shape[1:])
    score = jnp.sum(v * x * x, axis=(1, 2, 3))
    return jnp.stack([score, -score], axis=1)


class SmallCNN(nn.Module):
  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.relu(nn.BatchNorm(use_running_average=not train)(nn.Conv(3, (3, 3))(x)))
    return nn.Dense(2)(x.mean(axis=(1, 2)))


@pytest.fixture(scope='module')
def inputs():
  return jnp.asarray(RNG.uniform(-1, 1, SHAPE), jnp.float32)


def test_gradient_methods_of_a_linear_model(inputs):
  model = Linear()
  variables = model.init(jax.random.key(0), inputs)
  w = np.asarray(variables['params']['Dense_0']['kernel']).reshape(SHAPE[1:])
  target = np.array([0, 1, 0])
  sign = np.where(target == 0, 1.0, -1.0)[:, None, None, None]
  settings = explainers.Settings(integrated_gradients_steps=4, smoothgrad_samples=5)
  key = jax.random.key(1)

  def explain(method):
    return np.asarray(explainers.explain(method, model, variables, inputs, target, key, settings))

  np.testing.assert_allclose(explain('gradient'), sign * w, rtol=1e-5)
  np.testing.assert_allclose(explain('gradient_x_input'), sign * w * inputs, rtol=1e-5, atol=1e-7)
  # The gradient is the same everywhere: integrated gradients is exact, SmoothGrad is w.
  np.testing.assert_allclose(
    explain('integrated_gradients'), sign * w * inputs, rtol=1e-5, atol=1e-7
  )
  np.testing.assert_allclose(explain('smoothgrad'), sign * w, rtol=1e-5, atol=1e-7)


def test_integrated_gradients_is_complete_and_exact_on_a_quadratic_model(inputs):
  model = Quadratic()
  variables = model.init(jax.random.key(2), inputs)
  v = np.asarray(variables['params']['v'])
  settings = explainers.Settings(integrated_gradients_steps=3)
  relevance = explainers.explain(
    'integrated_gradients', model, variables, inputs, 0, None, settings
  )
  # Midpoints integrate a gradient that is linear in the path parameter exactly.
  np.testing.assert_allclose(relevance, v * np.asarray(inputs) ** 2, rtol=1e-5, atol=1e-7)
  logits = model.apply(variables, inputs)
  np.testing.assert_allclose(relevance.sum(axis=(1, 2, 3)), logits[:, 0], rtol=1e-5)


def test_smoothgrad_averages_the_gradient_over_noise(inputs):
  model = Quadratic()
  variables = model.init(jax.random.key(2), inputs)
  v = np.asarray(variables['params']['v'])
  noise = 0.05
  settings = explainers.Settings(smoothgrad_samples=400, smoothgrad_noise=noise)
  smooth = np.asarray(
    explainers.explain('smoothgrad', model, variables, inputs, 0, jax.random.key(4), settings)
  )
  # E[2 v (x + e)] = 2 v x; the sample mean of the noise has std sigma / sqrt(400).
  sigma = noise * np.ptp(np.asarray(inputs).reshape(3, -1), axis=1)[:, None, None, None]
  error = np.abs(smooth - 2 * v * np.asarray(inputs))
  assert np.all(error <= 2 * np.abs(v) * 5 * sigma / np.sqrt(400) + 1e-6)
  assert np.any(error > 1e-6)  # the noise was really applied


def test_controls_ignore_the_model(inputs):
  a = explainers.explain('random', Linear(), None, inputs, 0, jax.random.key(0))
  b = explainers.explain('random', Quadratic(), {}, inputs, 1, jax.random.key(0))
  np.testing.assert_array_equal(a, b)
  assert a.shape == SHAPE and float(a.min()) >= 0 and float(a.max()) < 1
  edges = explainers.explain('edges', Linear(), None, inputs, 0, None)
  assert edges.shape == SHAPE
  with pytest.raises(ValueError, match='Unknown explainer'):
    explainers.explain('saliency', Linear(), None, inputs, 0, None)


@pytest.mark.parametrize('method', ['gradient', 'integrated_gradients', 'lrp_epsilon', 'edges'])
def test_stacked_models_give_what_each_model_gives_alone(inputs, method):
  model = SmallCNN()
  stacked = jax.vmap(lambda k: model.init(k, inputs, train=False))(
    jax.random.split(jax.random.key(5), 4)
  )
  targets = jnp.asarray(RNG.integers(0, 2, (4, SHAPE[0])), jnp.int32)
  settings = explainers.Settings(integrated_gradients_steps=3)
  key = jax.random.key(6)
  together = explainers.StackExplainer(model, settings, models_per_call=2)(
    method, stacked, inputs, targets, key
  )
  assert together.shape == (4,) + SHAPE
  for m in range(4):
    alone = explainers.explain(
      method,
      model,
      jax.tree.map(lambda leaf, m=m: leaf[m], stacked),
      inputs,
      targets[m],
      key,
      settings,
    )
    np.testing.assert_allclose(together[m], alone, rtol=1e-5, atol=1e-6)
