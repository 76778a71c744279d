"""MobileNet v1: shapes, Keras-compatible layout, train/eval behaviour, fast vs plain convs."""

import functools
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xaijax.models.mobilenet import BLOCKS, MobileNet, preprocess


def _init(model, shape, seed=0):
  # XLA's RngBitGenerator compiles in about half the time of threefry's unrolled rounds.
  key = jax.random.key(seed, impl='rbg')
  return jax.jit(lambda key: model.init(key, jnp.zeros(shape), train=False))(key)


def _apply(model, variables, x, train, **kwargs):
  # One compiled program instead of op-by-op dispatch (much faster for a whole network).
  return jax.jit(lambda v, x: model.apply(v, x, train=train, **kwargs))(variables, x)


def _count(tree):
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


@pytest.mark.parametrize(
  'alpha,resolution,channels', [(0.25, 32, 1), (0.5, 75, 3), (1.0, 224, 3), (0.75, 33, 1)]
)
def test_logit_shapes(alpha, resolution, channels):
  model = MobileNet(num_classes=7, alpha=alpha)
  x = jax.ShapeDtypeStruct((2, resolution, resolution, channels), jnp.float32)
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(x.shape), False))
  logits = jax.eval_shape(lambda v: model.apply(v, jnp.zeros(x.shape), train=False), variables)
  assert logits.shape == (2, 7)
  # Layer widths are int(filters * alpha), as in Keras.
  assert variables['params']['conv1']['kernel'].shape == (3, 3, channels, int(32 * alpha))
  assert variables['params']['conv_pw_13']['kernel'].shape[-1] == int(1024 * alpha)
  assert variables['params']['conv_preds']['kernel'].shape == (int(1024 * alpha), 7)


def test_layer_names_and_kernel_shapes_mirror_keras():
  model = MobileNet(num_classes=10, alpha=0.5)
  params = jax.eval_shape(lambda: _init(model, (1, 32, 32, 3)))['params']
  expected = {'conv1', 'conv1_bn', 'conv_preds'}
  for block_id in range(1, len(BLOCKS) + 1):
    expected |= {
      f'conv_dw_{block_id}',
      f'conv_dw_{block_id}_bn',
      f'conv_pw_{block_id}',
      f'conv_pw_{block_id}_bn',
    }
  assert set(params) == expected
  width = 16
  for block_id, (filters, _) in enumerate(BLOCKS, start=1):
    # Depthwise: a grouped Flax conv kernel [3, 3, 1, C].
    assert params[f'conv_dw_{block_id}']['kernel'].shape == (3, 3, 1, width)
    assert params[f'conv_pw_{block_id}']['kernel'].shape == (1, 1, width, int(filters * 0.5))
    width = int(filters * 0.5)


def test_every_layer_with_parameters_is_a_plain_conv_batchnorm_or_dense():
  # LRP intercepts these three module types; nothing else may hold parameters.
  model = MobileNet(num_classes=4, alpha=0.25)
  variables = jax.eval_shape(lambda: _init(model, (1, 32, 32, 1)))
  seen = {}

  def record(next_fun, args, kwargs, context):
    if context.method_name == '__call__':
      seen[context.module.name] = type(context.module)
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(record):
    jax.eval_shape(lambda v: model.apply(v, jnp.zeros((1, 32, 32, 1)), train=False), variables)
  for name in variables['params']:
    assert seen[name] in (nn.Conv, nn.BatchNorm, nn.Dense), (name, seen[name])
  for block_id in range(1, len(BLOCKS) + 1):
    assert seen[f'conv_dw_{block_id}'] is nn.Conv


def test_parameter_count_equals_keras():
  pytest.importorskip('h5py')
  os.environ.setdefault('KERAS_BACKEND', 'jax')
  keras = pytest.importorskip('keras')
  if keras.backend.backend() != 'jax':
    pytest.skip('keras was imported with another backend')
  # alpha 0.25 and 1.0 are covered shape by shape by tests/test_keras_import.py.
  for alpha in (0.75,):
    reference = keras.applications.MobileNet(
      weights=None, input_shape=(64, 64, 3), alpha=alpha, classes=10, classifier_activation=None
    )
    variables = jax.eval_shape(
      functools.partial(_init, MobileNet(num_classes=10, alpha=alpha), (1, 64, 64, 3))
    )
    trainable = sum(int(np.prod(w.shape)) for w in reference.trainable_weights)
    assert _count(variables['params']) == trainable
    assert _count(variables) == reference.count_params()


# One small model and its compiled functions, shared by the behaviour tests below (compiling a
# whole network dominates these tests' time).
SMALL = MobileNet(num_classes=3, alpha=0.25)
SMALL_SHAPE = (4, 32, 32, 1)
_eval = jax.jit(lambda v, x: SMALL.apply(v, x, train=False, mutable=['batch_stats']))
_train = jax.jit(
  lambda v, x, key: SMALL.apply(v, x, train=True, rngs={'dropout': key}, mutable=['batch_stats'])
)


@pytest.fixture(scope='module')
def small_variables():
  return _init(SMALL, SMALL_SHAPE)


def test_batch_stats_change_only_in_training(small_variables):
  x = jax.random.normal(jax.random.key(2), SMALL_SHAPE) * 3 + 1
  before = small_variables['batch_stats']
  _, updates = _train(small_variables, x, jax.random.key(3))
  changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), before, updates['batch_stats'])
  assert all(jax.tree.leaves(changed))
  _, eval_updates = _eval(small_variables, x)
  unchanged = jax.tree.map(lambda a, b: bool(jnp.all(a == b)), before, eval_updates['batch_stats'])
  assert all(jax.tree.leaves(unchanged))


def test_moving_statistics_follow_keras_momentum(small_variables):
  x = jax.random.normal(jax.random.key(2), SMALL_SHAPE)
  _, updates = _train(small_variables, x, jax.random.key(3))
  # Keras' BatchNormalization: moving = 0.99 * moving + 0.01 * biased batch statistic.
  # conv1_bn sees conv1's output: recompute its batch mean/variance independently.
  conv1 = nn.Conv(8, (3, 3), strides=2, padding='SAME', use_bias=False)
  features = conv1.apply({'params': small_variables['params']['conv1']}, x)
  batch_mean = features.mean(axis=(0, 1, 2))
  batch_var = features.var(axis=(0, 1, 2))
  stats = updates['batch_stats']['conv1_bn']
  np.testing.assert_allclose(stats['mean'], 0.01 * batch_mean, rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(stats['var'], 0.99 + 0.01 * batch_var, rtol=1e-5)


def test_eval_mode_is_per_image_and_train_mode_is_per_batch(small_variables):
  x = jax.random.normal(jax.random.key(4), SMALL_SHAPE)
  # Same first two images, different companions.
  y = x.at[2:].set(jax.random.normal(jax.random.key(5), (2,) + SMALL_SHAPE[1:]) * 2)
  (eval_x, _), (eval_y, _) = _eval(small_variables, x), _eval(small_variables, y)
  scale = float(np.abs(eval_x).max())
  np.testing.assert_allclose(eval_x[:2], eval_y[:2], rtol=1e-4, atol=1e-4 * scale)
  assert not np.allclose(eval_x[2:], eval_y[2:], rtol=1e-2, atol=0)
  key = jax.random.key(6)
  (train_x, _), (train_y, _) = _train(small_variables, x, key), _train(small_variables, y, key)
  assert not np.allclose(train_x[:2], train_y[:2], rtol=1e-2, atol=0)


def test_training_needs_a_dropout_rng(small_variables):
  with pytest.raises(Exception, match='dropout'):
    jax.eval_shape(
      lambda v: SMALL.apply(v, jnp.ones(SMALL_SHAPE), train=True, mutable=['batch_stats']),
      small_variables,
    )


def test_fast_and_plain_convolutions_give_the_same_logits_and_gradients(small_variables):
  with jax.enable_x64(True):
    # SMALL's architecture, so its variables serve (their shapes do not depend on the image size).
    kwargs = dict(num_classes=3, alpha=0.25, dropout_rate=0.0, dtype=jnp.float64)
    fast = MobileNet(depthwise_impl='shifted', pointwise_impl='dot', **kwargs)
    plain = MobileNet(depthwise_impl='xla', pointwise_impl='xla', **kwargs)
    x = jax.random.normal(jax.random.key(5), (3, 33, 33, 1), jnp.float64)
    variables = jax.tree.map(lambda v: v.astype(jnp.float64), small_variables)
    labels = jnp.array([0, 2, 1])

    def loss(model):
      def f(params, x):
        logits, _ = model.apply(
          {'params': params, 'batch_stats': variables['batch_stats']},
          x,
          train=True,
          mutable=['batch_stats'],
        )
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1))

      return f

    np.testing.assert_allclose(
      _apply(fast, variables, x, train=False),
      _apply(plain, variables, x, train=False),
      rtol=1e-10,
      atol=1e-12,
    )
    got = jax.jit(jax.grad(loss(fast), (0, 1)))(variables['params'], x)
    expected = jax.jit(jax.grad(loss(plain), (0, 1)))(variables['params'], x)
    for g, e in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
      # float64 rounding only: differences of ~1e-11 on gradients of size ~1e-2.
      np.testing.assert_allclose(g, e, rtol=1e-8, atol=1e-10)


def test_too_small_images_raise_a_clear_error():
  model = MobileNet(num_classes=3, alpha=0.25)
  with pytest.raises(ValueError, match='at least 32x32'):
    model.init(jax.random.key(0), jnp.zeros((1, 31, 64, 1)), train=False)


def test_unknown_impl_names_raise():
  with pytest.raises(ValueError, match='depthwise_impl'):
    MobileNet(num_classes=3, depthwise_impl='fast').init(
      jax.random.key(0), jnp.zeros((1, 32, 32, 1)), train=False
    )


def test_preprocess_scales_to_minus_one_one_and_tiles_gray():
  images = np.array([0, 1, 127, 128, 255], np.uint8).reshape(1, 1, 5, 1)
  out = preprocess(images, channels=3)
  assert out.dtype == jnp.float32 and out.shape == (1, 1, 5, 3)
  expected = images.astype(np.float64) / 127.5 - 1.0
  np.testing.assert_allclose(out, np.repeat(expected, 3, axis=-1), rtol=0, atol=1e-6)
  assert float(out.min()) == -1.0 and float(out.max()) == 1.0
  np.testing.assert_array_equal(preprocess(images, channels=1), out[..., :1])


def test_preprocess_rejects_bad_input():
  with pytest.raises(ValueError, match='uint8'):
    preprocess(np.zeros((1, 4, 4, 1), np.float32), channels=1)
  with pytest.raises(ValueError, match='channels'):
    preprocess(np.zeros((1, 4, 4, 3), np.uint8), channels=1)
