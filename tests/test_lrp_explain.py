"""explain() on small Linen models: composition of rules, pass-through, errors, jit and vmap."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xaijax import lrp
from xaijax.lrp import composites, rules
from xaijax.lrp.rules import AffineLayer


@pytest.fixture(autouse=True)
def float64():
  with jax.enable_x64(True):
    yield


def lrp_0_everywhere():
  zero = composites.rule(rules.lrp_0)
  return composites.Composite('lrp_0', conv=zero, dense=zero, batchnorm=zero, stabilizer=0.0)


class ReluNet(nn.Module):
  """Conv (bias) -> ReLU -> strided Conv -> ReLU -> max pool -> mean -> Dense, no BatchNorm."""

  activation: str = 'jax.nn.relu'

  @nn.compact
  def __call__(self, x):
    relu = {
      'jax.nn.relu': jax.nn.relu,
      'maximum': lambda v: jnp.maximum(v, 0.0),
      'where': lambda v: jnp.where(v > 0, v, 0.0),
    }[self.activation]
    x = relu(nn.Conv(6, (3, 3), padding='SAME', bias_init=nn.initializers.normal(0.3))(x))
    x = relu(nn.Conv(8, (3, 3), strides=(2, 2), bias_init=nn.initializers.normal(0.3))(x))
    x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(4, bias_init=nn.initializers.normal(0.3))(x)


def images(shape=(3, 8, 8, 2), seed=0):
  return jax.random.normal(jax.random.key(seed), shape, jnp.float64)


@pytest.mark.parametrize('activation', ['jax.nn.relu', 'maximum', 'where'])
def test_lrp_0_equals_gradient_times_input_on_a_relu_network(activation):
  model = ReluNet(activation)
  x = images()
  variables = model.init(jax.random.key(1), x)
  target = jnp.array([0, 2, 3])
  relevance = lrp.explain(model, variables, x, target=target, composite=lrp_0_everywhere())

  def target_logit(inputs):
    return jnp.sum(model.apply(variables, inputs)[jnp.arange(3), target])

  expected = x * jax.jit(jax.grad(target_logit))(x)
  np.testing.assert_allclose(relevance, expected, rtol=1e-6, atol=1e-10)


class SaturatingNet(nn.Module):
  """Dense -> BatchNorm -> ReLU6 -> Dense; the activation is one of three ways to write it."""

  activation: str

  @nn.compact
  def __call__(self, x, train: bool = False):
    relu6 = {
      'jax.nn.relu6': jax.nn.relu6,
      'clip': lambda v: jnp.clip(v, 0.0, 6.0),
      'min_max': lambda v: jnp.minimum(jnp.maximum(v, 0.0), 6.0),
    }[self.activation]
    x = nn.Dense(16, use_bias=False)(x)
    x = relu6(nn.BatchNorm(use_running_average=not train, use_bias=False)(x))
    return nn.Dense(3, use_bias=False)(x)


def saturating_variables(model, x):
  variables = model.init(jax.random.key(2), x)
  # BatchNorm with zero mean and zero offset: the folded layer has no bias. A large scale pushes
  # many units past 6, where ReLU6's gradient is 0.
  variables['params']['BatchNorm_0']['scale'] = jnp.full((16,), 8.0)
  variables['batch_stats']['BatchNorm_0']['var'] = jnp.linspace(0.5, 2.0, 16)
  return variables


@pytest.mark.parametrize('activation', ['jax.nn.relu6', 'clip', 'min_max'])
def test_saturated_relu6_passes_relevance_and_conserves(activation):
  model = SaturatingNet(activation)
  x = images((4, 10))
  variables = saturating_variables(model, x)
  hidden = (
    nn.Dense(16, use_bias=False).apply({'params': variables['params']['Dense_0']}, x)
    * 8.0
    / jnp.sqrt(jnp.linspace(0.5, 2.0, 16) + 1e-5)
  )
  assert jnp.mean(hidden > 6.0) > 0.1, 'the test needs saturated units'

  explanation = lrp.explain_with_details(model, variables, x, composite=lrp_0_everywhere())
  target_logits = explanation.logits[jnp.arange(4), explanation.target]
  np.testing.assert_allclose(explanation.relevance.sum(axis=1), target_logits, rtol=1e-9)

  # Gradient x input loses what the saturated units carried, so it is not conservative here.
  def target_logit(inputs):
    return jnp.sum(model.apply(variables, inputs)[jnp.arange(4), explanation.target])

  grad_times_input = (x * jax.grad(target_logit)(x)).sum(axis=1)
  assert np.max(np.abs(grad_times_input - target_logits)) > 1e-3


def test_relu6_written_three_ways_gives_the_same_relevance():
  x = images((4, 10))
  results = []
  for activation in ['jax.nn.relu6', 'clip', 'min_max']:
    model = SaturatingNet(activation)
    results.append(lrp.explain(model, saturating_variables(model, x), x, composite='epsilon'))
  np.testing.assert_allclose(results[0], results[1], rtol=1e-12)
  np.testing.assert_allclose(results[0], results[2], rtol=1e-12)


class SmallCnn(nn.Module):
  """Conv -> BN -> ReLU6 -> depthwise Conv -> BN -> ReLU6 -> mean -> Dense (MobileNet-like)."""

  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.Conv(4, (3, 3), strides=(2, 2), use_bias=False)(x)
    x = jax.nn.relu6(nn.BatchNorm(use_running_average=not train)(x))
    x = nn.Conv(4, (3, 3), feature_group_count=4, use_bias=False)(x)
    x = jax.nn.relu6(nn.BatchNorm(use_running_average=not train)(x))
    x = jnp.mean(x, axis=(1, 2))
    x = nn.Dropout(0.5, deterministic=not train)(x)
    return nn.Dense(3)(x)


def random_batch_stats(variables, seed):
  """BatchNorm statistics and affine parameters drawn at random (init has mean 0, var 1)."""
  keys = iter(jax.random.split(jax.random.key(seed), 100))

  def draw(path, leaf):
    name = jax.tree_util.keystr(path)
    if 'BatchNorm' not in name:
      return leaf
    low, high = {'mean': (-0.5, 0.5), 'var': (0.5, 2.0), 'scale': (0.5, 2.0), 'bias': (-0.3, 0.3)}[
      path[-1].key
    ]
    return jax.random.uniform(next(keys), leaf.shape, leaf.dtype, low, high)

  return jax.tree_util.tree_map_with_path(draw, variables)


def small_cnn_variables(seed, x):
  variables = SmallCnn().init(jax.random.key(seed), x, train=False)
  return random_batch_stats(jax.tree.map(lambda a: a.astype(jnp.float64), variables), seed)


@functools.partial(jax.jit, static_argnums=2)
def manual_small_cnn_relevance(variables, x, composite, target):
  """SmallCnn's relevance composed by hand from the rule functions (independent of explain)."""
  params, stats = variables['params'], variables['batch_stats']

  def conv_bn(conv_name, bn_name, groups):
    bn_p, bn_s = params[bn_name], stats[bn_name]
    factor = bn_p['scale'] / jnp.sqrt(bn_s['var'] + 1e-5)
    conv = nn.Conv(
      4,
      (3, 3),
      strides=(2, 2) if groups == 1 else (1, 1),
      feature_group_count=groups,
      use_bias=False,
    )
    return AffineLayer(
      linear=lambda k, v: conv.apply({'params': {'kernel': k}}, v),
      kernel=params[conv_name]['kernel'] * factor,
      bias=bn_p['bias'] - bn_s['mean'] * factor,
    )

  first, second = conv_bn('Conv_0', 'BatchNorm_0', 1), conv_bn('Conv_1', 'BatchNorm_1', 4)
  dense = AffineLayer(
    linear=lambda k, v: v @ k, kernel=params['Dense_0']['kernel'], bias=params['Dense_0']['bias']
  )
  a1 = jax.nn.relu6(first(x))
  a2 = jax.nn.relu6(second(a1))
  pooled = jnp.mean(a2, axis=(1, 2))
  logits = dense(pooled)
  relevance = jax.nn.one_hot(target, 3, dtype=x.dtype) * logits
  relevance = composite.dense(dense, pooled, relevance)
  # Global average pooling: LRP-epsilon with the composite's stabiliser.
  relevance = (
    a2
    * (
      rules.safe_divide(relevance, rules.stabilize(pooled, composite.stabilizer))
      / (a2.shape[1] * a2.shape[2])
    )[:, None, None, :]
  )
  relevance = composite.conv(second, a1, relevance)
  first_rule = composite.first if composite.first is not None else composite.conv
  return first_rule(first, x, relevance)


@pytest.mark.parametrize('name', sorted(composites.COMPOSITES))
def test_composites_put_each_rule_on_its_layer(name):
  x = jax.random.uniform(jax.random.key(3), (2, 9, 9, 1), jnp.float64, -1.0, 1.0)
  variables = small_cnn_variables(4, x)
  composite = composites.get(name, epsilon=0.01, stabilizer=1e-4)
  target = jnp.array([1, 2])
  ours = lrp.explain(SmallCnn(), variables, x, target=target, composite=composite)
  expected = manual_small_cnn_relevance(variables, x, composite, target)
  np.testing.assert_allclose(ours, expected, rtol=1e-6, atol=1e-12 * np.abs(expected).max())


def test_composite_by_name_uses_the_given_epsilon():
  x = jax.random.uniform(jax.random.key(3), (2, 9, 9, 1), jnp.float64, -1.0, 1.0)
  variables = small_cnn_variables(4, x)
  by_name = lrp.explain(SmallCnn(), variables, x, composite='epsilon', epsilon=0.3, stabilizer=0.01)
  explicit = lrp.explain(
    SmallCnn(), variables, x, composite=composites.epsilon(epsilon=0.3, stabilizer=0.01)
  )
  default = lrp.explain(SmallCnn(), variables, x, composite='epsilon')
  np.testing.assert_array_equal(by_name, explicit)
  assert np.max(np.abs(by_name - default)) > 1e-6


def test_target_none_explains_the_predicted_class_and_int_target_broadcasts():
  x = jax.random.uniform(jax.random.key(5), (3, 9, 9, 1), jnp.float64, -1.0, 1.0)
  variables = small_cnn_variables(6, x)
  model = SmallCnn()
  details = lrp.explain_with_details(model, variables, x)
  predicted = jnp.argmax(model.apply(variables, x, train=False), axis=-1)
  np.testing.assert_array_equal(details.target, predicted)
  np.testing.assert_array_equal(
    details.relevance, lrp.explain(model, variables, x, target=predicted)
  )
  all_one = lrp.explain(model, variables, x, target=1)
  np.testing.assert_array_equal(all_one, lrp.explain(model, variables, x, target=[1, 1, 1]))
  with pytest.raises(ValueError, match='target'):
    lrp.explain(model, variables, x, target=jnp.array([0.5, 1.0, 2.0]))


def test_vmap_over_stacked_seeds_matches_one_seed_at_a_time():
  x = jax.random.uniform(jax.random.key(7), (2, 9, 9, 1), jnp.float64, -1.0, 1.0)
  seeds = [small_cnn_variables(seed, x) for seed in (10, 11, 12)]
  stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *seeds)
  model = SmallCnn()
  for composite in ('epsilon', 'epsilon_gamma_box'):
    together = jax.vmap(lambda v, c=composite: lrp.explain(model, v, x, composite=c))(stacked)
    assert together.shape == (3,) + x.shape
    for index, variables in enumerate(seeds):
      np.testing.assert_allclose(
        together[index],
        lrp.explain(model, variables, x, composite=composite),
        rtol=1e-10,
        atol=1e-14,
      )


def test_explain_is_compiled_once_per_model_composite_and_shape():
  x = jax.random.uniform(jax.random.key(8), (2, 9, 9, 1), jnp.float64, -1.0, 1.0)
  model = SmallCnn()
  explain_module = lrp.attribution
  traces = []
  original = explain_module.propagate

  def counting(*args):
    traces.append(1)
    return original(*args)

  explain_module.propagate = counting
  try:
    explain_module._explainer.cache_clear()
    for seed in (20, 21, 22):
      lrp.explain(model, small_cnn_variables(seed, x), x, composite='epsilon_plus')
  finally:
    explain_module.propagate = original
  assert len(traces) == 1


class WithLayerNorm(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = nn.Dense(4)(x)
    x = nn.LayerNorm()(x)
    return nn.Dense(2)(x)


class Squaring(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = nn.Dense(4)(x)
    return nn.Dense(2)(x * x)


def test_unsupported_layer_raises_an_error_naming_it():
  x = images((2, 5))
  model = WithLayerNorm()
  with pytest.raises(lrp.UnsupportedModelError, match=r"'LayerNorm_0' \(LayerNorm"):
    lrp.explain(model, model.init(jax.random.key(0), x), x)


def test_unsupported_operation_raises_an_error_naming_it_and_where():
  x = images((2, 5))
  model = Squaring()
  with pytest.raises(lrp.UnsupportedModelError, match=r'`mul` of two activations.*Squaring'):
    lrp.explain(model, model.init(jax.random.key(0), x), x)


def test_training_mode_is_refused_with_a_clear_message():
  x = jax.random.uniform(jax.random.key(8), (2, 9, 9, 1), jnp.float64, -1.0, 1.0)
  with pytest.raises(lrp.UnsupportedModelError, match='batch statistics'):
    lrp.explain(SmallCnn(), small_cnn_variables(1, x), x, call_kwargs={'train': True})


class BranchyNet(nn.Module):
  """Residual addition, average pooling, flatten and concatenation between ReLU convolutions."""

  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Conv(4, (3, 3), bias_init=nn.initializers.normal(0.3))(x))
    branch = nn.relu(nn.Conv(4, (3, 3), bias_init=nn.initializers.normal(0.3))(x))
    x = x + branch
    x = nn.avg_pool(x, (2, 2), strides=(2, 2))
    flat = x.reshape(x.shape[0], -1)
    x = jnp.concatenate([flat, flat[:, :5] * 0.5], axis=1)
    return nn.Dense(3, bias_init=nn.initializers.normal(0.3))(x)


def test_lrp_0_equals_gradient_times_input_through_residuals_pooling_and_reshapes():
  model = BranchyNet()
  x = images((2, 6, 6, 2), seed=3)
  variables = model.init(jax.random.key(4), x)
  explanation = lrp.explain_with_details(model, variables, x, composite=lrp_0_everywhere())

  def target_logit(inputs):
    return jnp.sum(model.apply(variables, inputs)[jnp.arange(2), explanation.target])

  expected = x * jax.jit(jax.grad(target_logit))(x)
  np.testing.assert_allclose(explanation.relevance, expected, rtol=1e-6, atol=1e-10)
  # The biases keep what the input does not get; the residual sum and pooling keep nothing.
  kept = sum(explanation.absorbed.values())
  target_logits = explanation.logits[jnp.arange(2), explanation.target]
  np.testing.assert_allclose(
    explanation.relevance.sum(axis=(1, 2, 3)) + kept, target_logits, rtol=1e-9
  )
  sums = [v for name, v in explanation.absorbed.items() if name.startswith(('add', 'reduce'))]
  assert sums and all(np.allclose(v, 0.0, atol=1e-12) for v in sums)
