"""Classifiers by name: `config.model.name` picks the Linen module and its input preprocessing.

`'mobilenet'` is the paper's MobileNet v1 (`mobilenet.py`). Any other name is your own Linen
classifier, as `'package.module:ClassName'` (importable from where you run) or
`'path/to/file.py:ClassName'`. What such a class must do:

* `ClassName(num_classes=..., **config.model.kwargs)` builds it;
* `__call__(x)` maps float images `[N, H, W, C]` to logits `[N, num_classes]`; it may take
  `train: bool` (dropout, BatchNorm statistics), which training sets and evaluation clears;
* optionally a method `preprocess(images_uint8) -> inputs`; without one, images are scaled to
  [-1, 1] and tiled to `config.model.channels` (MobileNet's preprocessing);
* for LRP, it is built of layers `xaijax.lrp` knows (Conv, Dense, BatchNorm, pooling, pointwise
  activations); anything else is named in the error.

Everything downstream (training, evaluation, LRP, remedies, the report) sees a `Classifier`.
"""

from __future__ import annotations

from collections.abc import Callable
import dataclasses
import functools
import importlib
import importlib.util
import inspect
import os
import sys

import flax.linen as nn
import jax
import numpy as np

from xaijax.models import mobilenet


@dataclasses.dataclass(frozen=True)
class Classifier:
  """A Linen classifier whose `__call__(x, train=...)` gives logits, and its preprocessing."""

  module: nn.Module
  preprocess: Callable[[jax.Array], jax.Array]  # uint8 images [N, H, W, c] -> model input


class _WithTrainFlag(nn.Module):
  """Gives a classifier without a `train` argument one, so every caller can pass it."""

  classifier: nn.Module

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train  # the wrapped classifier behaves the same in training and evaluation
    return self.classifier(x)


def takes_train_flag(module: nn.Module) -> bool:
  return 'train' in inspect.signature(type(module).__call__).parameters


@functools.cache
def scale_and_tile(channels: int) -> Callable[[jax.Array], jax.Array]:
  """MobileNet's preprocessing for `channels` input channels (one cached function per count)."""
  return functools.partial(mobilenet.preprocess, channels=channels)


def build(model_config) -> Classifier:
  """The classifier `model_config.name` names, built from the rest of `model_config`."""
  channels = int(model_config.channels)
  if model_config.name == 'mobilenet':
    module = mobilenet.MobileNet(
      num_classes=int(model_config.num_classes),
      alpha=float(model_config.alpha),
      dropout_rate=float(model_config.dropout_rate),
      depthwise_impl=model_config.depthwise_impl,
      batch_norm_momentum=float(model_config.batch_norm_momentum),
    )
    return Classifier(module, scale_and_tile(channels))
  cls = load_class(model_config.name)
  kwargs = dict(model_config.kwargs or {})
  try:
    module = cls(num_classes=int(model_config.num_classes), **kwargs)
  except TypeError as error:
    raise ValueError(
      f'model.name={model_config.name!r}: could not build {cls.__name__}(num_classes=..., '
      f'**model.kwargs={kwargs}): {error}. A classifier takes num_classes and the keys of '
      'model.kwargs as constructor arguments.'
    ) from error
  if not isinstance(module, nn.Module):
    raise ValueError(f'model.name={model_config.name!r} is not a flax.linen.Module subclass.')
  preprocess = getattr(module, 'preprocess', None)
  if not callable(preprocess):
    preprocess = scale_and_tile(channels)
  if not takes_train_flag(module):
    module = _WithTrainFlag(module)
  return Classifier(module, preprocess)


def load_class(name: str) -> type:
  """The class of `'package.module:ClassName'` or `'path/to/file.py:ClassName'`."""
  location, colon, class_name = name.rpartition(':')
  if not colon or not location or not class_name:
    raise ValueError(
      f"model.name={name!r}: use 'mobilenet', 'package.module:ClassName' or "
      "'path/to/file.py:ClassName'."
    )
  if location.endswith('.py'):
    path = os.path.abspath(os.path.expanduser(location))
    if not os.path.isfile(path):
      raise ValueError(f'model.name={name!r}: no such file {path}')
    module_name = '_xaijax_user_model_' + os.path.splitext(os.path.basename(path))[0]
    if module_name not in sys.modules:
      spec = importlib.util.spec_from_file_location(module_name, path)
      loaded = importlib.util.module_from_spec(spec)
      sys.modules[module_name] = loaded  # dataclass-style modules look themselves up by name
      spec.loader.exec_module(loaded)
    module = sys.modules[module_name]
  else:
    try:
      module = importlib.import_module(location)
    except ImportError as error:
      raise ValueError(
        f'model.name={name!r}: cannot import {location!r} ({error}). Install it, put it on '
        "PYTHONPATH, or give the file: 'path/to/file.py:ClassName'."
      ) from error
  if not hasattr(module, class_name):
    raise ValueError(f'model.name={name!r}: {location} defines no {class_name!r}.')
  return getattr(module, class_name)


def initial_variables(config, classifier: Classifier):
  """Pretrained weights from `model.init_from` (a Keras MobileNet file), or None."""
  if not config.model.init_from:
    return None
  from xaijax.models import keras_import

  resolution, channels = config.data.resolution, int(config.model.channels)
  template = classifier.module.init(
    jax.random.PRNGKey(0), np.zeros((1, resolution, resolution, channels), np.float32), train=False
  )
  return keras_import.load_keras_mobilenet(os.path.expanduser(config.model.init_from), template)
