"""Keras MobileNet weights -> xaijax MobileNet: same logits as Keras itself (built offline).

Keras runs with the JAX backend, so no TensorFlow is needed and nothing is downloaded: the
tests build `keras.applications.MobileNet(weights=None, ...)`, randomise it (BatchNorm moving
statistics included, so that inference-mode BatchNorm matters), save it and convert the file.
"""

import functools
import os

os.environ.setdefault('KERAS_BACKEND', 'jax')  # before keras is imported anywhere

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip('h5py')
keras = pytest.importorskip('keras')

from xaijax.models import keras_import  # noqa: E402
from xaijax.models.keras_import import load_keras_mobilenet  # noqa: E402
from xaijax.models.mobilenet import MobileNet  # noqa: E402

RESOLUTION = 64

if keras.backend.backend() != 'jax':
  pytest.skip('keras was imported with another backend', allow_module_level=True)


def _keras_mobilenet(alpha, classes, seed, channels=3):
  model = keras.applications.MobileNet(
    weights=None,
    input_shape=(RESOLUTION, RESOLUTION, channels),
    alpha=alpha,
    classes=classes,
    classifier_activation=None,
  )
  rng = np.random.default_rng(seed)
  for layer in model.layers:
    if isinstance(layer, keras.layers.BatchNormalization):
      gamma, beta, mean, variance = layer.get_weights()
      layer.set_weights(
        [
          rng.uniform(0.5, 1.5, gamma.shape),
          rng.normal(0, 0.2, beta.shape),
          rng.normal(0, 0.3, mean.shape),
          rng.uniform(0.5, 2.0, variance.shape),
        ]
      )
    elif layer.name == 'conv_preds':
      kernel, bias = layer.get_weights()
      layer.set_weights([kernel, rng.normal(0, 0.5, bias.shape)])
  return model


@functools.cache
def _template(alpha, classes, channels=3):
  """Our model and a variables template filled with recognisable random numbers (cheaper than
  compiling `model.init`, and the loader must overwrite all of it but a skipped head)."""
  model = MobileNet(num_classes=classes, alpha=alpha)
  shapes = _shapes_only(alpha, classes, channels)
  rng = np.random.default_rng(0)
  return model, jax.tree.map(
    lambda s: jnp.asarray(rng.normal(size=s.shape).astype(s.dtype)), shapes
  )


@functools.cache
def _compiled_logits(model):
  return jax.jit(lambda v, x: model.apply(v, x, train=False))


@pytest.fixture(scope='module')
def small_keras(tmp_path_factory):
  """A randomised alpha-0.25, 10-class Keras MobileNet and its saved weights, shared."""
  reference = _keras_mobilenet(0.25, classes=10, seed=2)
  path = tmp_path_factory.mktemp('keras') / 'small.weights.h5'
  reference.save_weights(path)
  return reference, path


def _shapes_only(alpha, classes, channels=3):
  """A template of shapes and dtypes only: enough where loading must fail before using it."""
  model = MobileNet(num_classes=classes, alpha=alpha)
  return jax.eval_shape(
    lambda: model.init(
      jax.random.key(0), jnp.zeros((1, RESOLUTION, RESOLUTION, channels)), train=False
    )
  )


# One batch size everywhere: Keras' predict and our jitted apply compile once per input shape.
BATCH = 4


def _images(count=BATCH, channels=3, seed=0):
  return (
    np.random.default_rng(seed)
    .uniform(-1, 1, (count, RESOLUTION, RESOLUTION, channels))
    .astype(np.float32)
  )


def _logits(model, variables, x):
  return _compiled_logits(model)(variables, x)


def _keras_logits(reference, x):
  # predict() is Keras' compiled inference (training=False); calling the model eagerly gives
  # the same numbers but compiles op by op, several times slower here.
  return np.asarray(reference.predict(x, verbose=0))


@pytest.mark.parametrize('alpha', [0.25, 1.0])
def test_logits_match_keras_from_weights_h5(tmp_path, small_keras, alpha):
  if alpha == 0.25:
    reference, path = small_keras
  else:
    reference = _keras_mobilenet(alpha, classes=10, seed=1)
    path = tmp_path / 'mobilenet.weights.h5'
    reference.save_weights(path)
  model, template = _template(alpha, classes=10)
  variables = load_keras_mobilenet(path, template)
  x = _images()
  expected = _keras_logits(reference, x)
  got = np.asarray(_logits(model, variables, x))
  assert np.abs(expected).max() > 0.1  # BatchNorm and the head bias make logits non-trivial
  np.testing.assert_array_less(np.abs(got - expected), 1e-4)


def test_legacy_full_model_h5_and_keras_zip_load_the_same_weights(tmp_path, small_keras):
  reference, weights_path = small_keras
  reference.save(tmp_path / 'm.h5')
  reference.save(tmp_path / 'm.keras')
  _, template = _template(0.25, classes=10)
  loaded = [
    load_keras_mobilenet(path, template)
    for path in (weights_path, tmp_path / 'm.h5', tmp_path / 'm.keras')
  ]
  for other in loaded[1:]:
    jax.tree.map(np.testing.assert_array_equal, other, loaded[0])


def test_tf_keras2_legacy_weights_layout(tmp_path, small_keras):
  # keras.applications' pretrained files (tf.keras 2): weights at the root, names with ':0' and
  # the depthwise kernel called 'depthwise_kernel'. Written here with h5py from a Keras model.
  import h5py  # pylint: disable=import-outside-toplevel

  reference, _ = small_keras
  path = tmp_path / 'mobilenet_2_5_64_tf.h5'
  with h5py.File(path, 'w') as handle:
    names = [layer.name for layer in reference.layers]
    handle.attrs['layer_names'] = [n.encode() for n in names]
    for layer in reference.layers:
      group = handle.create_group(layer.name)
      weight_names = []
      for variable in layer.weights:
        role = variable.path.split('/')[-1]
        if isinstance(layer, keras.layers.DepthwiseConv2D):
          role = 'depthwise_kernel'
        weight_name = f'{layer.name}/{role}:0'
        group[weight_name] = np.asarray(variable.numpy())
        weight_names.append(weight_name.encode())
      group.attrs['weight_names'] = weight_names
  model, template = _template(0.25, classes=10)
  variables = load_keras_mobilenet(path, template)
  x = _images(seed=4)
  np.testing.assert_array_less(
    np.abs(np.asarray(_logits(model, variables, x)) - _keras_logits(reference, x)), 1e-4
  )


def test_head_is_kept_when_class_counts_differ(small_keras, caplog):
  reference, path = small_keras
  _, template = _template(0.25, classes=4)
  with caplog.at_level('INFO', logger=keras_import.__name__):
    variables = load_keras_mobilenet(path, template)
  assert 'keeping the template head' in caplog.text
  for leaf in ('kernel', 'bias'):
    np.testing.assert_array_equal(
      variables['params']['conv_preds'][leaf], template['params']['conv_preds'][leaf]
    )
  # Everything else came from the file.
  np.testing.assert_array_equal(
    variables['batch_stats']['conv_pw_13_bn']['var'],
    reference.get_layer('conv_pw_13_bn').get_weights()[3],
  )


def test_grayscale_model_from_rgb_weights_equals_keras_on_tiled_images(small_keras):
  reference, path = small_keras
  model, template = _template(0.25, classes=10, channels=1)
  variables = load_keras_mobilenet(path, template)
  gray = _images(channels=1, seed=7)
  expected = _keras_logits(reference, np.repeat(gray, 3, axis=-1))
  np.testing.assert_array_less(np.abs(np.asarray(_logits(model, variables, gray)) - expected), 1e-4)


def test_shape_mismatch_names_layer_and_both_shapes(small_keras):
  _, path = small_keras
  template = _shapes_only(0.5, classes=10)
  with pytest.raises(ValueError, match=r"'conv1' kernel.*\(3, 3, 3, 8\).*\(3, 3, 3, 16\)"):
    load_keras_mobilenet(path, template)


def test_missing_layer_is_named(tmp_path, small_keras):
  import h5py  # pylint: disable=import-outside-toplevel

  reference, _ = small_keras
  path = tmp_path / 'm.h5'
  reference.save(path)
  with h5py.File(path, 'a') as handle:
    root = handle['model_weights']
    names = [n for n in root.attrs['layer_names'] if n not in ('conv_dw_7_bn', b'conv_dw_7_bn')]
    root.attrs['layer_names'] = names
  template = _shapes_only(0.25, classes=10)
  with pytest.raises(ValueError, match="'conv_dw_7_bn' is missing"):
    load_keras_mobilenet(path, template)


def test_missing_or_wrong_file(tmp_path):
  template = _shapes_only(0.25, classes=10)
  missing = tmp_path / 'nowhere.h5'
  with pytest.raises(FileNotFoundError, match=r'nowhere\.h5'):
    load_keras_mobilenet(missing, template)
  not_hdf5 = tmp_path / 'notes.h5'
  not_hdf5.write_text('not weights')
  with pytest.raises(ValueError, match='not an HDF5 file'):
    load_keras_mobilenet(not_hdf5, template)
