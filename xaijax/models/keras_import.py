"""Load Keras MobileNet v1 weights (e.g. ImageNet-pretrained) into `xaijax.models.MobileNet`.

Reads the file with h5py alone (no Keras, no TensorFlow). Three layouts are understood:

* legacy HDF5 as `keras.applications` ships its pretrained files (`mobilenet_1_0_224_tf.h5`,
  weights only) or as `model.save('x.h5')` writes a full model (weights under `model_weights`):
  one group per layer name, with the attribute `weight_names` ('conv1/kernel:0', ...);
* Keras 3 `model.save_weights('x.weights.h5')`: groups `layers/<class name>_<n>/vars/<i>`, named
  after each layer's class and its rank among layers of that class, in model order;
* Keras 3 `model.save('x.keras')`, a zip holding such a `model.weights.h5`.

Mapping: conv kernels [kh, kw, in, out] are Flax's layout already; a Keras depthwise kernel
[kh, kw, C, 1] becomes Flax's grouped-conv kernel [kh, kw, 1, C]; BatchNorm gamma/beta go to
`params` scale/bias and moving mean/variance to `batch_stats`; the 1x1 conv head `conv_preds`
[1, 1, C, classes] becomes the Dense kernel [C, classes].
"""

from __future__ import annotations

import io
import logging
import os
import zipfile

import jax
import jax.numpy as jnp
import numpy as np

from xaijax.models.mobilenet import BLOCKS

logger = logging.getLogger(__name__)

HEAD = 'conv_preds'

# What each of our layers holds, in Keras' layer order.
_CONV, _DEPTHWISE, _BATCH_NORM, _HEAD = 'conv', 'depthwise', 'batch_norm', 'head'
_KERAS_CLASS = {
  _CONV: 'conv2d',
  _DEPTHWISE: 'depthwise_conv2d',
  _BATCH_NORM: 'batch_normalization',
  _HEAD: 'conv2d',
}
# Keras 3 stores a layer's variables by creation index; these are Keras' creation orders.
_VARIABLE_ORDER = {
  _CONV: ('kernel',),
  _DEPTHWISE: ('kernel',),
  _HEAD: ('kernel', 'bias'),
  _BATCH_NORM: ('gamma', 'beta', 'moving_mean', 'moving_variance'),
}


def mobilenet_layers() -> list[tuple[str, str]]:
  """(Keras layer name, kind) for every layer with weights, in the order Keras builds them."""
  layers = [('conv1', _CONV), ('conv1_bn', _BATCH_NORM)]
  for block_id in range(1, len(BLOCKS) + 1):
    layers += [
      (f'conv_dw_{block_id}', _DEPTHWISE),
      (f'conv_dw_{block_id}_bn', _BATCH_NORM),
      (f'conv_pw_{block_id}', _CONV),
      (f'conv_pw_{block_id}_bn', _BATCH_NORM),
    ]
  return layers + [(HEAD, _HEAD)]


def load_keras_mobilenet(path, variables_template):
  """Variables shaped like `variables_template`, filled from the Keras MobileNet file at `path`.

  Args:
    path: a Keras `.h5` (legacy weights or full model), `.weights.h5` (Keras 3) or `.keras` file.
    variables_template: `MobileNet(...).init(...)` output ({'params', 'batch_stats'}); it fixes
      the shapes and dtypes, and supplies the head when the file's class count differs.

  Returns:
    A new {'params', 'batch_stats'} dict. Template leaves are never modified.

  Raises:
    FileNotFoundError: no file at `path`.
    ValueError: the file is not a Keras MobileNet, misses a layer, or a shape does not match
      (the message names the layer and both shapes).
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f'No Keras weights file at {path!r}.')
  weights = _read_keras_weights(path)
  params = _copy_tree(variables_template['params'])
  batch_stats = _copy_tree(variables_template['batch_stats'])

  for name, kind in mobilenet_layers():
    if name not in params:
      raise ValueError(f'The model has no layer {name!r}; is it an xaijax MobileNet?')
    if name not in weights:
      if kind == _HEAD:
        logger.info('%s has no %s layer (a no-top file): keeping the template head.', path, HEAD)
        continue
      raise ValueError(
        f'Layer {name!r} is missing from {path!r} (found {len(weights)} layers with weights).'
      )
    found = weights[name]
    if kind == _BATCH_NORM:
      for ours, theirs, tree in (
        ('scale', 'gamma', params),
        ('bias', 'beta', params),
        ('mean', 'moving_mean', batch_stats),
        ('var', 'moving_variance', batch_stats),
      ):
        tree[name][ours] = _fit(name, theirs, found, tree[name][ours])
    elif kind == _HEAD:
      kernel = _get(name, 'kernel', found)
      kernel = kernel.reshape(kernel.shape[-2:]) if kernel.ndim == 4 else kernel
      expected = params[name]['kernel'].shape
      if kernel.shape[-1] != expected[-1]:
        logger.info(
          '%s: the file has %d classes, the model %d: keeping the template head.',
          name,
          kernel.shape[-1],
          expected[-1],
        )
        continue
      params[name]['kernel'] = _fit(name, 'kernel', {'kernel': kernel}, params[name]['kernel'])
      params[name]['bias'] = _fit(name, 'bias', found, params[name]['bias'])
    else:
      kernel = _get(name, 'kernel', found)
      if kind == _DEPTHWISE:
        kernel = kernel.transpose(0, 1, 3, 2)  # [kh, kw, C, 1] -> [kh, kw, 1, C]
      target = params[name]['kernel']
      if name == 'conv1' and target.shape[2] == 1 and kernel.shape[2] == 3:
        # A grayscale model from RGB weights: on a gray image tiled to three channels,
        # conv(tile(x), W) = conv(x, W summed over its input channels), exactly.
        logger.info('conv1: summing the RGB kernel over its input channels for 1-channel input.')
        kernel = kernel.sum(axis=2, keepdims=True)
      params[name]['kernel'] = _fit(name, 'kernel', {'kernel': kernel}, target)
  return jax.tree.map(jnp.asarray, {'params': params, 'batch_stats': batch_stats})


def _copy_tree(tree):
  return {k: _copy_tree(v) if hasattr(v, 'items') else v for k, v in tree.items()}


def _get(layer, role, found):
  if role not in found:
    raise ValueError(f'Layer {layer!r} in the file has no {role!r} (it has {sorted(found)}).')
  return found[role]


def _fit(layer, role, found, target):
  value = _get(layer, role, found)
  if tuple(value.shape) != tuple(target.shape):
    raise ValueError(
      f'Shape mismatch for {layer!r} {role}: the file has {tuple(value.shape)}, '
      f'the model expects {tuple(target.shape)} (different alpha, input '
      'channels or class count?).'
    )
  return np.asarray(value, dtype=target.dtype)


# ----------------------------------------------------------------------------- file formats


def _read_keras_weights(path) -> dict[str, dict[str, np.ndarray]]:
  """{Keras layer name: {'kernel' | 'bias' | 'gamma' | ...: array}} from any supported file."""
  import h5py  # pylint: disable=import-outside-toplevel

  if zipfile.is_zipfile(path):
    with zipfile.ZipFile(path) as archive:
      if 'model.weights.h5' not in archive.namelist():
        raise ValueError(f'{path!r} is a zip archive without model.weights.h5; not a .keras file.')
      data = io.BytesIO(archive.read('model.weights.h5'))
    with h5py.File(data, 'r') as handle:
      return _read_keras3(handle, path)
  try:
    handle = h5py.File(path, 'r')
  except OSError as error:
    raise ValueError(f'{path!r} is not an HDF5 file (Keras .h5 / .weights.h5): {error}') from error
  with handle:
    if 'layers' in handle and 'layer_names' not in handle.attrs:
      return _read_keras3(handle, path)
    root = handle.get('model_weights', handle)
    if 'layer_names' not in root.attrs:
      raise ValueError(f'{path!r} holds no Keras weights (no layer_names, no layers group).')
    return _read_legacy(root)


def _read_legacy(root) -> dict[str, dict[str, np.ndarray]]:
  weights = {}
  for name in _strings(root.attrs['layer_names']):
    group = root[name]
    names = _strings(group.attrs.get('weight_names', []))
    if not names:
      continue
    layer = {}
    for weight_name in names:
      # 'conv_dw_1/depthwise_kernel:0' (tf.keras 2) or 'conv_dw_1/kernel' (Keras 3).
      role = weight_name.split('/')[-1].split(':')[0]
      role = 'kernel' if role == 'depthwise_kernel' else role
      layer[role] = np.asarray(group[weight_name])
    weights[name] = layer
  return weights


def _read_keras3(handle, path) -> dict[str, dict[str, np.ndarray]]:
  stored = handle['layers']
  weights, counts = {}, {}
  for name, kind in mobilenet_layers():
    keras_class = _KERAS_CLASS[kind]
    rank = counts.get(keras_class, 0)
    counts[keras_class] = rank + 1
    key = keras_class if rank == 0 else f'{keras_class}_{rank}'
    if key not in stored or 'vars' not in stored[key]:
      continue
    variables = stored[key]['vars']
    order = _VARIABLE_ORDER[kind]
    if len(variables) > len(order):
      raise ValueError(
        f'{path!r}: {key} (our {name!r}) has {len(variables)} variables, '
        f'a Keras MobileNet layer of this kind has at most {len(order)}.'
      )
    weights[name] = {
      role: np.asarray(variables[str(i)]) for i, role in enumerate(order) if str(i) in variables
    }
  if not weights:
    raise ValueError(f'{path!r} holds no MobileNet layers (groups found: {sorted(stored)[:8]}).')
  return weights


def _strings(values) -> list[str]:
  return [v.decode('utf8') if isinstance(v, bytes) else str(v) for v in values]
