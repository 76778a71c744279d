"""Generative inpainting: a U-Net generator and a PatchGAN discriminator.

The pix2pix pair of Isola et al. 2017, in pure Flax Linen; images are float32 in [-1, 1],
[N, H, W, 1]; holes are float32 {0, 1}, [N, H, W, 1]. The generator sees the image with the hole
blanked plus the hole as a second channel (`generator_input`) and paints a whole image; only the
hole is kept (`composite`). The discriminator scores patches of a candidate image given the
generator's input, so it judges whether the fill fits its surroundings.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def to_unit_range(images_uint8) -> jnp.ndarray:
  """uint8 [0, 255] -> float32 [-1, 1]."""
  return jnp.asarray(images_uint8, jnp.float32) / 127.5 - 1.0


def to_uint8(images) -> jnp.ndarray:
  """float [-1, 1] -> uint8, rounded and clipped."""
  return jnp.clip(jnp.round((images + 1.0) * 127.5), 0, 255).astype(jnp.uint8)


def generator_input(images: jnp.ndarray, hole: jnp.ndarray) -> jnp.ndarray:
  """[N, H, W, 2]: the image with the hole set to mid-gray (0), and the hole itself."""
  return jnp.concatenate([jnp.where(hole > 0, 0.0, images), hole.astype(images.dtype)], axis=-1)


def composite(generated: jnp.ndarray, images: jnp.ndarray, hole: jnp.ndarray) -> jnp.ndarray:
  """mask * G + (1 - mask) * x.

  Written as a select so pixels outside the hole stay bit-identical.
  """
  return jnp.where(hole > 0, generated, images)


class _ConvBlock(nn.Module):
  features: int

  @nn.compact
  def __call__(self, x):
    for _ in range(2):
      x = nn.leaky_relu(nn.Conv(self.features, (3, 3))(x), 0.2)
    return x


class UNetGenerator(nn.Module):
  """U-Net with skips by concatenation and a tanh output.

  `depth` halvings, `features * 2**level` channels (at most 8x). Inputs [N, H, W, 2] from
  `generator_input`; H and W must be divisible by 2**depth.
  """

  features: int = 32
  depth: int = 3

  @nn.compact
  def __call__(self, x):
    height, width = x.shape[1:3]
    if height % 2**self.depth or width % 2**self.depth:
      raise ValueError(
        f'U-Net of depth {self.depth} needs H and W divisible by {2**self.depth}, got '
        f'{height}x{width}; change gan.generator_depth or the resolution'
      )
    width = lambda level: self.features * 2 ** min(level, 3)
    skips = []
    for level in range(self.depth):
      x = _ConvBlock(width(level))(x)
      skips.append(x)
      x = nn.leaky_relu(nn.Conv(width(level + 1), (3, 3), strides=2)(x), 0.2)
    x = _ConvBlock(width(self.depth))(x)
    for level in reversed(range(self.depth)):
      x = nn.ConvTranspose(width(level), (2, 2), strides=(2, 2))(x)
      x = _ConvBlock(width(level))(jnp.concatenate([x, skips[level]], axis=-1))
    return jnp.tanh(nn.Conv(1, (1, 1))(x))


class PatchDiscriminator(nn.Module):
  """PatchGAN: one real/fake logit per patch of the candidate image.

  Conditioned on the generator input. `layers` 4x4 convolutions, the first `layers - 1` of stride 2,
  then a 4x4 convolution to one logit.
  """

  features: int = 32
  layers: int = 3

  @nn.compact
  def __call__(self, condition, candidate):
    x = jnp.concatenate([condition, candidate], axis=-1)
    for layer in range(self.layers):
      strides = 2 if layer < self.layers - 1 else 1
      x = nn.leaky_relu(nn.Conv(self.features * 2**layer, (4, 4), strides=strides)(x), 0.2)
    return nn.Conv(1, (4, 4))(x)


def prng_key(seed: int):
  """The key the GAN is initialised and trained with: XLA's RngBitGenerator ('rbg').

  It compiles in seconds where threefry's unrolled rounds took ~30 s for the generator's init on the
  loaded 2-core CPU. Its bits are reproducible on one backend, not across CPU and GPU.
  """
  return jax.random.key(seed, impl='rbg')


# Jitted: run op by op, Flax's init compiles every layer on its own (tens of seconds on a loaded
# CPU).
@functools.partial(jax.jit, static_argnames=('model', 'height', 'width'))
def init_generator(key, model: UNetGenerator, height: int, width: int):
  return model.init(key, jnp.zeros((1, height, width, 2), jnp.float32))['params']


@functools.partial(jax.jit, static_argnames=('model', 'height', 'width'))
def init_discriminator(key, model: PatchDiscriminator, height: int, width: int):
  return model.init(
    key,
    jnp.zeros((1, height, width, 2), jnp.float32),
    jnp.zeros((1, height, width, 1), jnp.float32),
  )['params']


def inpaint(model: UNetGenerator, params, images: jnp.ndarray, hole: jnp.ndarray) -> jnp.ndarray:
  """Fill the hole of float images in [-1, 1]; everything outside the hole is returned unchanged."""
  generated = model.apply({'params': params}, generator_input(images, hole))
  return composite(generated, images, hole)


def num_params(params) -> int:
  return int(sum(np.prod(p.shape) for p in jax.tree.leaves(params)))
