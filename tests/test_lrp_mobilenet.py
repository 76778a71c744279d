"""LRP through the project's MobileNet: conservation, absorbed bias, canonized logits, finiteness.

Exact conservation needs every folded layer to be bias-free and no relevance to be lost:
BatchNorm mean 0 and offset 0 (so the folded bias (b - mean) * scale / sqrt(var + eps) + offset
is 0; the random var and scale only rescale the kernels), no conv bias (MobileNet has none), a
zero Dense bias, LRP-0 denominators (epsilon = stabilizer = 0), ReLU6 passing relevance through
(also where it saturates) and global average pooling as a linear layer. Relevance never sits on
a zero output, because every rule hands a neuron relevance in proportion to its activation.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from xaijax import lrp
from xaijax.models.mobilenet import MobileNet

CLASSES = 5
# Standard deviation of a unit normal truncated at +-2 (the constant in jax.nn.initializers).
TRUNCATED_NORMAL_STD = 0.87962566103423978


def mobilenet_variables(model, x, seed, with_bias):
  """Tiny-MobileNet variables with BatchNorm statistics drawn at random.

  Kernels are Lecun-normal as Flax's default initialiser draws them (a normal truncated at two
  standard deviations, variance 1 / fan-in), drawn with numpy: compiling `model.init` took 5-8 s
  per call on two cores, mostly for its threefry draws. BatchNorm scales around 2 keep
  activations of order one through 27 layers (Lecun-normal kernels alone shrink them) and push
  some ReLU6 units into saturation.
  """
  shapes = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0), x)
  rng = np.random.default_rng(seed)
  ranges = {
    'var': (0.5, 2.0),
    'scale': (1.5, 3.0),
    'mean': (-0.3, 0.3) if with_bias else (0.0, 0.0),
    'bias': (-0.3, 0.3) if with_bias else (0.0, 0.0),
  }

  def draw(path, leaf):
    name, field = jax.tree_util.keystr(path), path[-1].key
    if '_bn' in name or (with_bias and 'conv_preds' in name and field == 'bias'):
      low, high = ranges[field]
      values = rng.uniform(low, high, leaf.shape)
    elif field == 'kernel':
      fan_in = np.prod(leaf.shape[:-1])
      standard = scipy.stats.truncnorm.rvs(-2.0, 2.0, size=leaf.shape, random_state=rng)
      values = standard / TRUNCATED_NORMAL_STD / np.sqrt(fan_in)
    else:
      values = np.zeros(leaf.shape)  # the head's bias, zero as Flax initialises it
    return jnp.asarray(values, x.dtype)

  return jax.tree_util.tree_map_with_path(draw, shapes)


def saturated_fraction(model, variables, x):
  _, state = jax.jit(
    lambda v, inputs: model.apply(
      v, inputs, train=False, capture_intermediates=True, mutable=['intermediates']
    )
  )(variables, x)
  batchnorm_outputs = [
    leaf
    for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]
    if '_bn' in jax.tree_util.keystr(path)
  ]
  return float(np.mean(np.concatenate([np.ravel(a > 6.0) for a in batchnorm_outputs])))


@pytest.fixture(scope='module')
def float64_mobilenet():
  with jax.enable_x64(True):
    model = MobileNet(num_classes=CLASSES, alpha=0.25, dtype=jnp.float64)
    x = jax.random.uniform(jax.random.key(0), (2, 32, 32, 1), jnp.float64, -1.0, 1.0)
    yield model, x


def test_relevance_sums_to_the_target_logit_through_mobilenet(float64_mobilenet):
  model, x = float64_mobilenet
  with jax.enable_x64(True):
    variables = mobilenet_variables(model, x, seed=1, with_bias=False)
    assert saturated_fraction(model, variables, x) > 0.01, 'the test needs saturated ReLU6s'
    explanation = lrp.explain_with_details(
      model, variables, x, composite='epsilon', epsilon=0.0, stabilizer=0.0
    )
  target_logits = explanation.logits[jnp.arange(2), explanation.target]
  assert np.min(np.abs(target_logits)) > 0.1
  np.testing.assert_allclose(explanation.relevance.sum(axis=(1, 2, 3)), target_logits, rtol=1e-5)
  for layer, kept in explanation.absorbed.items():
    np.testing.assert_allclose(kept, 0.0, atol=1e-9 * np.max(np.abs(target_logits)), err_msg=layer)


def test_biases_absorb_what_the_input_does_not_get(float64_mobilenet):
  model, x = float64_mobilenet
  with jax.enable_x64(True):
    variables = mobilenet_variables(model, x, seed=2, with_bias=True)
    explanation = lrp.explain_with_details(
      model, variables, x, composite='epsilon', epsilon=0.0, stabilizer=0.0
    )
  target_logits = explanation.logits[jnp.arange(2), explanation.target]
  input_sum = explanation.relevance.sum(axis=(1, 2, 3))
  absorbed_sum = sum(explanation.absorbed.values())
  # The bookkeeping closes: whatever the input does not get stayed in some layer.
  np.testing.assert_allclose(input_sum + absorbed_sum, target_logits, rtol=1e-9)
  assert np.max(np.abs(input_sum - target_logits)) > 1e-3, 'biases should absorb relevance'
  # The head keeps b_t R_t / z_t = b_t of the target logit's relevance (R_t = z_t).
  head_bias = variables['params']['conv_preds']['bias'][explanation.target]
  np.testing.assert_allclose(explanation.absorbed['conv_preds'], head_bias, rtol=1e-9)
  # The 27 conv + BatchNorm pairs are each folded into one layer.
  folded = [name for name in explanation.absorbed if '+' in name]
  assert len(folded) == 27 and 'conv_dw_1+conv_dw_1_bn' in folded


COMPOSITES = ['epsilon', 'epsilon_plus', 'epsilon_gamma_box', 'epsilon_plus_flat']


@pytest.fixture(scope='module')
def float32_explanations():
  """Explanations of [random, constant, all-zero, huge] float32 images for each composite.

  XLA's grouped convolution for the depthwise layers compiles in half the time of the shifted
  one; the rules are checked on both in test_lrp_rules.py.
  """
  model = MobileNet(num_classes=CLASSES, alpha=0.25, depthwise_impl='xla')
  random_image = jax.random.uniform(jax.random.key(3), (1, 32, 32, 1), jnp.float32, -1, 1)
  x = jnp.concatenate(
    [
      random_image,
      jnp.full_like(random_image, 0.5),
      jnp.zeros_like(random_image),
      jnp.where(random_image > 0, 1e6, -1e6),
    ]
  )
  variables = mobilenet_variables(model, x, seed=4, with_bias=True)
  explanations = {
    name: lrp.explain_with_details(model, variables, x, composite=name) for name in COMPOSITES
  }
  return model, variables, x, explanations


@pytest.mark.parametrize('composite', COMPOSITES)
def test_relevance_is_finite_on_constant_zero_and_huge_images(float32_explanations, composite):
  _, _, _, explanations = float32_explanations
  relevance = np.asarray(explanations[composite].relevance)
  assert np.all(np.isfinite(relevance)), composite
  assert np.any(relevance[0] != 0)


def test_canonized_mobilenet_gives_the_original_logits(float32_explanations):
  model, variables, x, explanations = float32_explanations
  original = jax.jit(lambda v, inputs: model.apply(v, inputs, train=False))(variables, x)
  canonized = explanations['epsilon'].logits
  np.testing.assert_allclose(
    canonized, original, rtol=1e-5, atol=1e-5 * float(np.max(np.abs(original)))
  )


def test_mobilenet_layers_are_all_recognised():
  """Every Conv/Dense/BatchNorm of MobileNet becomes a layer; no other module holds weights."""
  model = MobileNet(num_classes=CLASSES, alpha=0.25)
  x = jnp.zeros((1, 32, 32, 1))
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
  from xaijax.lrp import program, tracing  # pylint: disable=import-outside-toplevel

  traced = program.canonical(tracing.trace(model, variables, x, {'train': False}))
  layers = [node for node in traced.nodes if isinstance(node, program.Layer)]
  assert [layer.name for layer in layers][:3] == [
    'conv1+conv1_bn',
    'conv_dw_1+conv_dw_1_bn',
    'conv_pw_1+conv_pw_1_bn',
  ]
  assert len(layers) == 28 and layers[-1].name == 'conv_preds'
  assert [layer.is_first for layer in layers] == [True] + [False] * 27
  # Every layer but the first reads a ReLU6 (clip) output, pooled for the head.
  assert [layer.input_nonnegative for layer in layers] == [False] + [True] * 27
  depthwise = [layer for layer in layers if 'conv_dw' in layer.name]
  assert all(
    isinstance(layer.calls[0].module, nn.Conv) and layer.calls[0].module.feature_group_count > 1
    for layer in depthwise
  )
