"""MobileNet v1 (Howard et al. 2017) in Flax Linen, layer for layer as Keras 3 builds it.

`keras.applications.MobileNet` is the reference: the same layer names (`conv1`, `conv1_bn`,
`conv_dw_1`, `conv_dw_1_bn`, `conv_pw_1`, `conv_pw_1_bn`, ..., `conv_preds`), the same padding
(a stride-2 depthwise convolution zero-pads one row and column at the bottom/right and then
convolves 'VALID'), BatchNorm epsilon 1e-3 and momentum 0.99, so Keras weights load one-to-one
(`xaijax.models.keras_import`) and give the same logits.

For LRP every convolution is a plain `nn.Conv` (the depthwise one with `feature_group_count`
equal to its channels), every BatchNorm an `nn.BatchNorm` and the head an `nn.Dense`. Keras'
head is a 1x1 convolution on the pooled features, which is the same map as a Dense layer.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
from jax import lax
import jax.numpy as jnp
import numpy as np

from xaijax.models.depthwise import shifted_conv_general_dilated
from xaijax.models.pointwise import dot_conv_general_dilated

# Keras refuses inputs smaller than this (imagenet_utils.obtain_input_shape(min_size=32)).
MIN_RESOLUTION = 32

# (pointwise filters at alpha=1, stride of the depthwise conv) for conv_dw_1 ... conv_dw_13.
BLOCKS = (
  (64, 1),
  (128, 2),
  (128, 1),
  (256, 2),
  (256, 1),
  (512, 2),
  (512, 1),
  (512, 1),
  (512, 1),
  (512, 1),
  (512, 1),
  (1024, 2),
  (1024, 1),
)

DEPTHWISE_IMPLS = {
  # Nine shifted multiply-adds: fast on XLA:CPU (see depthwise.py).
  'shifted': shifted_conv_general_dilated,
  # XLA's grouped convolution: what GPUs and TPUs are tuned for.
  'xla': lax.conv_general_dilated,
}

POINTWISE_IMPLS = {
  # A matrix product: several times faster than a 1x1 convolution on XLA:CPU (pointwise.py).
  'dot': dot_conv_general_dilated,
  'xla': lax.conv_general_dilated,
}

# Keras' defaults for layers.BatchNormalization.
_BN_MOMENTUM = 0.99
_BN_EPSILON = 1e-3


# min(max(x, 0), 6) with gradient 0 at both kinks, as TensorFlow/Keras' ReLU(6.0).
relu6 = nn.relu6


def check_resolution(height: int, width: int) -> None:
  """Raise a ValueError when an input is too small for MobileNet's five stride-2 stages."""
  if height < MIN_RESOLUTION or width < MIN_RESOLUTION:
    raise ValueError(
      f'MobileNet needs images of at least {MIN_RESOLUTION}x{MIN_RESOLUTION} pixels '
      f'(as Keras requires), got {height}x{width}; resize the images or raise '
      'config.data.resolution.'
    )


class MobileNet(nn.Module):
  """MobileNet v1 classifier returning logits [B, num_classes].

  Attributes:
    num_classes: size of the Dense head `conv_preds`.
    alpha: width multiplier; layer widths are `int(filters * alpha)` as in Keras.
    dropout_rate: dropout before the head (Keras' default 1e-3); needs rng 'dropout' in training.
    depthwise_impl: 'shifted' (fast on CPU) or 'xla' (lax grouped convolution); same numbers.
    pointwise_impl: 'dot' (1x1 convs as a matrix product, fast on CPU) or 'xla'; same numbers.
      The fast ones have hand-written reverse-mode gradients (`jax.custom_vjp`): `jax.grad`,
      `jax.vjp` and `jax.vmap` work, forward mode (`jax.jvp`, `jax.jacfwd`) does not; choose
      'xla' for both where forward mode is needed.
    batch_norm_momentum: decay of BatchNorm's running statistics (Keras: 0.99). With few steps per
      epoch, as on small CPU datasets, 0.9 lets inference statistics catch up within an epoch.
    dtype: computation dtype (parameters stay float32).
  """

  num_classes: int
  alpha: float = 1.0
  dropout_rate: float = 1e-3
  depthwise_impl: str = 'shifted'
  pointwise_impl: str = 'dot'
  batch_norm_momentum: float = _BN_MOMENTUM
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    if x.ndim != 4:
      raise ValueError(f'MobileNet expects images [B, H, W, C], got shape {x.shape}.')
    check_resolution(x.shape[1], x.shape[2])
    if self.depthwise_impl not in DEPTHWISE_IMPLS:
      raise ValueError(
        f'depthwise_impl must be one of {sorted(DEPTHWISE_IMPLS)}, got {self.depthwise_impl!r}.'
      )
    if self.pointwise_impl not in POINTWISE_IMPLS:
      raise ValueError(
        f'pointwise_impl must be one of {sorted(POINTWISE_IMPLS)}, got {self.pointwise_impl!r}.'
      )
    depthwise_conv = DEPTHWISE_IMPLS[self.depthwise_impl]
    pointwise_conv = POINTWISE_IMPLS[self.pointwise_impl]

    def batch_norm(name):
      return nn.BatchNorm(
        use_running_average=not train,
        momentum=self.batch_norm_momentum,
        epsilon=_BN_EPSILON,
        dtype=self.dtype,
        name=name,
      )

    x = x.astype(self.dtype)
    x = nn.Conv(
      int(32 * self.alpha),
      (3, 3),
      strides=(2, 2),
      padding='SAME',
      use_bias=False,
      dtype=self.dtype,
      name='conv1',
    )(x)
    x = relu6(batch_norm('conv1_bn')(x))

    for block_id, (filters, stride) in enumerate(BLOCKS, start=1):
      channels = x.shape[-1]
      # Keras pads stride-2 depthwise convs at the bottom/right only, then convolves 'VALID'.
      padding = 'SAME' if stride == 1 else ((0, 1), (0, 1))
      x = nn.Conv(
        channels,
        (3, 3),
        strides=(stride, stride),
        padding=padding,
        feature_group_count=channels,
        use_bias=False,
        dtype=self.dtype,
        conv_general_dilated=depthwise_conv,
        name=f'conv_dw_{block_id}',
      )(x)
      x = relu6(batch_norm(f'conv_dw_{block_id}_bn')(x))
      x = nn.Conv(
        int(filters * self.alpha),
        (1, 1),
        use_bias=False,
        dtype=self.dtype,
        conv_general_dilated=pointwise_conv,
        name=f'conv_pw_{block_id}',
      )(x)
      x = relu6(batch_norm(f'conv_pw_{block_id}_bn')(x))

    x = jnp.mean(x, axis=(1, 2))
    x = nn.Dropout(self.dropout_rate, deterministic=not train, name='dropout')(x)
    return nn.Dense(self.num_classes, dtype=self.dtype, name='conv_preds')(x)


def preprocess(images_uint8, channels: int):
  """uint8 images [N, H, W, c] -> float32 in [-1, 1] (x / 127.5 - 1), tiled to `channels`.

  MobileNet's (Keras 'tf' mode) normalisation; a grayscale image is repeated over the channels
  when the model takes 3 (e.g. one initialised from ImageNet weights).
  """
  images = jnp.asarray(images_uint8)
  if images.dtype != jnp.uint8:
    raise ValueError(f'preprocess expects uint8 images, got dtype {images.dtype}.')
  if images.ndim != 4:
    raise ValueError(f'preprocess expects images [N, H, W, C], got shape {images.shape}.')
  have = images.shape[-1]
  if have != channels:
    if have != 1:
      raise ValueError(
        f'Cannot turn {have}-channel images into {channels} channels; only 1-channel '
        '(grayscale) images are tiled.'
      )
    images = jnp.tile(images, (1, 1, 1, channels))
  return images.astype(jnp.float32) / np.float32(127.5) - np.float32(1.0)
