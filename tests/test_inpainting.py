import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xaijax.models import inpainting
from xaijax.training import gan


def small_generator():
  return inpainting.UNetGenerator(features=4, depth=2)


@pytest.fixture(scope='module')
def generator_params():
  """Initialised once (compiling the init dominates these tests); a fully convolutional
  generator's parameters do not depend on the image size."""
  return inpainting.init_generator(inpainting.prng_key(1), small_generator(), 32, 24)


def test_generator_and_discriminator_shapes(generator_params):
  images = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (3, 32, 24, 1)), jnp.float32)
  hole = jnp.zeros_like(images).at[:, :4].set(1.0)
  condition = inpainting.generator_input(images, hole)
  assert condition.shape == (3, 32, 24, 2)
  generator = small_generator()
  # Jitted: op by op, every layer compiles on its own.
  generated = jax.jit(generator.apply)({'params': generator_params}, condition)
  assert generated.shape == (3, 32, 24, 1)
  assert float(jnp.abs(generated).max()) <= 1.0
  discriminator = inpainting.PatchDiscriminator(features=4, layers=3)
  d_params = inpainting.init_discriminator(inpainting.prng_key(2), discriminator, 32, 24)
  scores = jax.jit(discriminator.apply)({'params': d_params}, condition, generated)
  assert scores.shape == (3, 8, 6, 1)


def test_generator_input_blanks_the_hole_and_carries_it_as_a_channel():
  images = jnp.full((1, 8, 8, 1), 0.7)
  hole = jnp.zeros_like(images).at[0, 2:4, 1:5].set(1.0)
  condition = np.asarray(inpainting.generator_input(images, hole))
  expected = np.where(np.asarray(hole[..., 0]) > 0, 0.0, 0.7).astype(np.float32)
  np.testing.assert_array_equal(condition[..., 0], expected)
  np.testing.assert_array_equal(condition[..., 1], hole[..., 0])


def test_generator_refuses_sizes_its_depth_cannot_halve():
  with pytest.raises(ValueError, match='divisible by 4'):
    inpainting.init_generator(inpainting.prng_key(0), small_generator(), 30, 32)


def test_compositing_keeps_unmasked_pixels_bit_identical():
  rng = np.random.default_rng(3)
  images, generated = (
    jnp.asarray(rng.uniform(-1, 1, (2, 16, 16, 1)), jnp.float32) for _ in range(2)
  )
  hole = jnp.asarray(rng.uniform(size=images.shape) < 0.3, jnp.float32)
  out = np.asarray(inpainting.composite(generated, images, hole))
  outside = np.asarray(hole) == 0
  np.testing.assert_array_equal(out[outside], np.asarray(images)[outside])
  np.testing.assert_array_equal(out[~outside], np.asarray(generated)[~outside])


def test_fitted_inpainter_changes_only_region_pixels_of_uint8_images(generator_params):
  generator = small_generator()
  inpainter = gan.Inpainter(generator_params, generator.features, generator.depth, batch_size=4)
  rng = np.random.default_rng(0)
  images = rng.integers(
    0, 256, (6, 16, 16, 1), dtype=np.uint8
  )  # 6 = one full batch and a padded one
  region = np.zeros_like(images)
  region[:, 1:4, 2:14] = 1
  out = inpainter(images, region)
  assert out.dtype == np.uint8 and out.shape == images.shape
  np.testing.assert_array_equal(out[region == 0], images[region == 0])
  assert np.mean(out[region == 1] != images[region == 1]) > 0.5
  np.testing.assert_array_equal(
    inpainter(images[4:], region[4:]), out[4:]
  )  # batching does not matter
  with pytest.raises(ValueError, match='uint8'):
    inpainter(images.astype(np.float32), region)


def test_unit_range_round_trip_is_exact_for_every_gray_level():
  levels = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1)
  np.testing.assert_array_equal(inpainting.to_uint8(inpainting.to_unit_range(levels)), levels)
