import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xaijax import remedies
from xaijax.data import overlays
from xaijax.models import inpainting
from xaijax.training import gan, gan_steps

SIZE = 32


def overlay_masks(count: int, seed: int = 0) -> np.ndarray:
  rng = np.random.default_rng(seed)
  masks = [overlays.draw_overlay(rng, SIZE, logo=int(rng.integers(0, 10)))[1] for _ in range(count)]
  return np.stack(masks)[..., None]


def tiny_config(**changes):
  config = gan.default_config()
  config.update(
    dict(
      steps=4,
      batch_size=4,
      generator_features=4,
      generator_depth=2,
      discriminator_features=4,
      discriminator_layers=2,
      log_every=2,
      inference_batch_size=8,
      ema_decay=0.75,  # far from 1, so one step moves the average visibly
    )
  )
  config.update(changes)
  return config


def tiny_data(count: int = 6, seed: int = 0):
  """Horizontal streaks (like brushed metal) with bright overlays burnt into their exact masks."""
  rng = np.random.default_rng(seed)
  rows = rng.integers(80, 180, (count, SIZE, 1, 1))
  clean = np.broadcast_to(rows, (count, SIZE, SIZE, 1)).astype(np.uint8)
  mask = overlay_masks(count, seed)
  images = np.where(mask == 1, np.uint8(250), clean).astype(np.uint8)
  return images, mask, np.ascontiguousarray(clean)


def dilate(mask: np.ndarray) -> np.ndarray:
  padded = np.pad(mask, 1)
  return np.max(
    [
      padded[dy : dy + mask.shape[0], dx : dx + mask.shape[1]] for dy in range(3) for dx in range(3)
    ],
    axis=0,
  )


def test_self_supervised_examples_roll_the_image_and_keep_the_borrowed_hole_off_its_overlay():
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (8, SIZE, SIZE, 1), dtype=np.uint8)
  own, donors = overlay_masks(8, seed=1), overlay_masks(8, seed=2)
  rolled, regions, holes = map(
    np.asarray,
    gan_steps.self_supervised_example(
      inpainting.prng_key(0),
      inpainting.to_unit_range(images),
      jnp.asarray(own),
      jnp.asarray(donors),
    ),
  )
  assert (
    rolled.shape == regions.shape == holes.shape == own.shape
  )  # inside the image, by construction
  assert set(np.unique(holes)) <= {0.0, 1.0}
  assert (
    np.mean(holes.sum(axis=(1, 2, 3)) > 0) > 0.5
  )  # empty only where the moved overlay covers the donor's
  offsets = set()
  for image, out, region, out_region, hole, donor in zip(
    images, rolled, own, regions, holes, donors
  ):
    # Slow reference: the one vertical roll of the image that gives the output; the region moved
    # with it.
    rows = [
      r
      for r in range(SIZE)
      if np.array_equal(inpainting.to_unit_range(np.roll(image, r, axis=0)), out)
    ]
    assert len(rows) == 1
    offsets.add(rows[0])
    np.testing.assert_array_equal(out_region, np.roll(region, rows[0], axis=0))
    away = dilate(out_region[..., 0]) == 0
    assert not (hole[..., 0].astype(bool) & ~away).any()  # never on, nor next to, the moved overlay
    np.testing.assert_array_equal(
      hole[..., 0] == 1, (donor[..., 0] == 1) & away
    )  # the donor, in place
  assert len(offsets) > 1


def test_batches_per_mode():
  images, mask, clean = tiny_data()
  for mode in gan.MODES:
    config = tiny_config(mode=mode)
    data = gan.training_data(config, images, mask, clean)
    batch = gan_steps.sample_batch(inpainting.prng_key(0), data, 5, mode == 'self_supervised')
    assert batch['images'].shape == (5, SIZE, SIZE, 1)
    assert bool(
      jnp.all(batch['input_hole'] >= batch['loss_hole'])
    )  # the loss only sees holes G sees
    if mode == 'self_supervised':
      np.testing.assert_array_equal(batch['target'], batch['images'])
      assert not bool(
        jnp.any((batch['loss_hole'] > 0) & (batch['images'] > 0.95))
      )  # no overlay ink
  np.testing.assert_array_equal(
    gan.training_data(tiny_config(mode='paired'), images, mask, clean)['targets'], clean
  )
  np.testing.assert_array_equal(
    gan.training_data(tiny_config(mode='paper'), images, mask, None)['targets'],
    remedies.telea(images, mask),
  )


def test_a_few_generator_steps_reduce_the_hole_l1_on_a_fixed_batch():
  images, mask, clean = tiny_data()
  config = tiny_config(learning_rate=2e-3)
  models = gan_steps.Models.from_config(config)
  state = gan_steps.init_state(inpainting.prng_key(0), models, SIZE, SIZE)
  batch = dict(
    images=inpainting.to_unit_range(images),
    input_hole=jnp.asarray(mask, jnp.float32),
    loss_hole=jnp.asarray(mask, jnp.float32),
    target=inpainting.to_unit_range(clean),
  )
  condition = inpainting.generator_input(batch['images'], batch['input_hole'])

  def step(state):
    generated, pullback = gan_steps.forward_generator(models, state['generator'], condition)
    return gan_steps.generator_step(models, state, batch, condition, generated, pullback)

  step = jax.jit(step)
  state, (_, first_l1, _) = step(state)
  for _ in range(25):
    state, (_, l1, total) = step(state)
  assert float(l1) < 0.5 * float(first_l1)
  assert np.isfinite(float(total))


def test_a_training_step_moves_every_network_and_averages_the_generator():
  images, mask, clean = tiny_data()
  # The settings and data of the fit test below: equal configs give equal Models, so the two
  # tests share one compiled step.
  config = tiny_config()
  models = gan_steps.Models.from_config(config)
  assert models == gan_steps.Models.from_config(tiny_config())
  state = gan_steps.init_state(inpainting.prng_key(0), models, SIZE, SIZE)
  before = jax.device_get(state)
  after, losses = gan_steps.jitted_train_step(
    models, state, gan.training_data(config, images, mask, clean), config.batch_size, True
  )
  after = jax.device_get(after)
  assert losses.shape == (len(gan_steps.LOSS_NAMES),) and int(after['step']) == 1
  for network in ('generator', 'discriminator'):
    changed = jax.tree.map(lambda a, b: bool(np.any(a != b)), before[network], after[network])
    assert all(jax.tree.leaves(changed))
  expected = jax.tree.map(
    lambda old, new: 0.75 * old + 0.25 * new, before['generator_average'], after['generator']
  )
  jax.tree.map(
    functools.partial(np.testing.assert_allclose, rtol=1e-6, atol=1e-7),
    after['generator_average'],
    expected,
  )


def test_fit_writes_metrics_and_a_checkpoint_that_a_rerun_reuses(tmp_path, monkeypatch):
  images, mask, _ = tiny_data()
  config = tiny_config()
  directory = tmp_path / 'generator'
  inpainter = gan.fit_or_load(
    config, images, mask, str(directory), workdir=str(tmp_path), show_progress=False
  )
  with open(tmp_path / gan.METRICS_FILE) as f:
    lines = [json.loads(line) for line in f]
  assert [line['step'] for line in lines] == [2, 4]
  assert all(np.isfinite(line[name]) for line in lines for name in gan_steps.LOSS_NAMES)
  out = inpainter(images, mask)

  def refit(*args, **kwargs):
    raise AssertionError('fit ran although the checkpoint was there')

  monkeypatch.setattr(gan, 'fit', refit)
  reloaded = gan.fit_or_load(config, images, mask, str(directory), show_progress=False)
  jax.tree.map(np.testing.assert_array_equal, reloaded.params, inpainter.params)
  np.testing.assert_array_equal(reloaded(images, mask), out)
  gan.fit_or_load(
    tiny_config(log_every=1, inference_batch_size=3), images, mask, str(directory)
  )  # reused
  with pytest.raises(ValueError, match='delete that folder'):
    gan.fit_or_load(tiny_config(steps=6), images, mask, str(directory), show_progress=False)


def test_non_finite_loss_stops_training_naming_the_step():
  images, mask, clean = tiny_data()
  with pytest.raises(FloatingPointError, match='generator_total loss is inf at step 1;'):
    gan.fit(
      tiny_config(mode='paired', l1_weight=float('inf')),
      images,
      mask,
      clean=clean,
      show_progress=False,
    )
  losses = np.ones((5, len(gan_steps.LOSS_NAMES)))
  losses[3, 2] = np.nan
  with pytest.raises(FloatingPointError, match='discriminator loss is nan at step 14;'):
    gan.check_finite(losses, first_step=11)


def test_bad_inputs_are_explained():
  images, mask, _ = tiny_data()
  with pytest.raises(ValueError, match='needs the clean images'):
    gan.fit(tiny_config(mode='paired'), images, mask, show_progress=False)
  with pytest.raises(ValueError, match=r'gan\.mode must be one of'):
    gan.fit(tiny_config(mode='pix2pix'), images, mask, show_progress=False)
  with pytest.raises(ValueError, match='every region is empty'):
    gan.fit(tiny_config(), images, np.zeros_like(mask), show_progress=False)


def test_generative_remedy_runs_the_inpainter_on_the_region():
  images, mask, _ = tiny_data()
  generator = inpainting.UNetGenerator(4, 2)
  params = inpainting.init_generator(inpainting.prng_key(0), generator, SIZE, SIZE)
  inpainter = gan.Inpainter(params, 4, 2, batch_size=8)
  out = remedies.apply('generative', images, mask, region='mask', inpainter=inpainter)
  np.testing.assert_array_equal(out, inpainter(images, mask))
  strips = remedies.apply('generative', images, mask, region='strips', inpainter=inpainter)
  np.testing.assert_array_equal(strips, inpainter(images, remedies.strip_region(images)))
  with pytest.raises(ValueError, match='fitted inpainter'):
    remedies.apply('generative', images, mask, region='mask')
