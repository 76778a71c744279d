"""The inpainting GAN's training step as pure functions: batches, losses, one update of each net.

Everything here is a function of arrays and a frozen `Models`, so it jits (and vmaps): the host loop
that calls it, the fitted `Inpainter` and the checkpoints are in `xaijax.training.gan`.

A batch (`sample_batch`) is drawn on the device from the uint8 training arrays, in the way
`gan.mode` asks (see `xaijax.training.gan`): in self-supervised mode each image is rolled so that
overlay-free content lies under a borrowed overlay-shaped hole (`self_supervised_example`); in the
other modes the overlay region is the hole and the target image is given.

The discriminator compares, given the generator's input, the generator's composite (`fake`) with the
same composite whose loss hole holds the target (`real`): the two differ only where the target is
known, so in self-supervised mode it never sees an overlay as "real".

The whole training step (batch sampling on the device, one discriminator update, one generator
update, the exponential moving average of the generator's weights) is a pure jitted function of the
state (which holds the key): `jitted_train_step`. It returns the losses in `LOSS_NAMES` order.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import optax

from xaijax.models import inpainting

LOSS_NAMES = ('generator_adversarial', 'l1_hole', 'discriminator', 'generator_total')


# ----------------------------------------------------------------------------- batches


def _dilate(masks: jnp.ndarray) -> jnp.ndarray:
  """3x3 maximum of float masks [N, H, W, 1]: a one-pixel margin around every region."""
  return jax.lax.reduce_window(masks, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 1, 1, 1), 'SAME')


def self_supervised_example(
  key, images: jnp.ndarray, regions: jnp.ndarray, donor_regions: jnp.ndarray
):
  """Training examples whose hole is an overlay's shape at an overlay's place.

  The hole lies over overlay-free pixels. Each image and its region are rolled down by a random
  number of rows (wrapping), which moves other content - overlay-free where the rolled region is 0 -
  under the place where overlays sit. The hole is another training image's region, unmoved, cut to
  the pixels at least one pixel away from the rolled region. So the hole has the shape, the place
  and the image-border context of a real overlay, and its truth is the rolled image itself. Returns
  (rolled images, rolled regions, hole), all [N, H, W, 1].
  """
  rows = jax.random.randint(key, (images.shape[0],), 0, images.shape[1])
  roll = jax.vmap(lambda image, row: jnp.roll(image, row, axis=0))
  images, regions = roll(images, rows), roll(regions.astype(jnp.float32), rows)
  return images, regions, donor_regions.astype(jnp.float32) * (1.0 - _dilate(regions))


def sample_batch(key, data: dict, batch_size: int, self_supervised: bool) -> dict:
  """A batch: float images and target in [-1, 1], and two holes.

  The holes are the one the generator sees and the one the loss sees.
  """
  key_images, key_donors, key_rows = jax.random.split(key, 3)
  count = data['images'].shape[0]
  chosen = jax.random.randint(key_images, (batch_size,), 0, count)
  images = inpainting.to_unit_range(data['images'][chosen])
  regions = data['regions'][chosen].astype(jnp.float32)
  if self_supervised:
    donors = data['regions'][jax.random.randint(key_donors, (batch_size,), 0, count)]
    images, regions, loss_hole = self_supervised_example(key_rows, images, regions, donors)
    return dict(
      images=images, input_hole=jnp.maximum(regions, loss_hole), loss_hole=loss_hole, target=images
    )
  return dict(
    images=images,
    input_hole=regions,
    loss_hole=regions,
    target=inpainting.to_unit_range(data['targets'][chosen]),
  )


# ----------------------------------------------------------------------------- losses and the step


def _bce(logits, is_real: bool):
  labels = jnp.ones_like(logits) if is_real else jnp.zeros_like(logits)
  return optax.sigmoid_binary_cross_entropy(logits, labels).mean()


def hole_l1(generated, target, hole):
  """Mean absolute error over hole pixels (in [-1, 1] units); 0 for an empty hole."""
  return jnp.sum(jnp.abs(generated - target) * hole) / jnp.maximum(jnp.sum(hole), 1.0)


@dataclasses.dataclass(frozen=True)
class Models:
  generator: inpainting.UNetGenerator
  discriminator: inpainting.PatchDiscriminator
  optimizer: (
    optax.GradientTransformation
  )  # Adam, one instance for both networks (it holds no state)
  l1_weight: float
  ema_decay: float

  @classmethod
  def from_config(cls, gan_config) -> Models:
    optimizer = _adam(gan_config.learning_rate, gan_config.b1, gan_config.b2)
    return cls(
      inpainting.UNetGenerator(gan_config.generator_features, gan_config.generator_depth),
      inpainting.PatchDiscriminator(
        gan_config.discriminator_features, gan_config.discriminator_layers
      ),
      optimizer,
      float(gan_config.l1_weight),
      float(gan_config.ema_decay),
    )


@functools.cache
def _adam(learning_rate, b1: float, b2: float) -> optax.GradientTransformation:
  # optax.adam builds new functions on every call; one instance per setting makes equal configs
  # give equal Models, so a second fit with the same settings reuses jitted_train_step's program.
  return optax.adam(learning_rate, b1=b1, b2=b2)


def init_state(key, models: Models, height: int, width: int) -> dict:
  key_generator, key_discriminator, key_run = jax.random.split(key, 3)
  generator = inpainting.init_generator(key_generator, models.generator, height, width)
  discriminator = inpainting.init_discriminator(
    key_discriminator, models.discriminator, height, width
  )
  return dict(
    generator=generator,
    generator_average=jax.tree.map(jnp.copy, generator),  # own buffers: donated
    discriminator=discriminator,
    generator_opt=models.optimizer.init(generator),
    discriminator_opt=models.optimizer.init(discriminator),
    rng=key_run,
    step=jnp.zeros((), jnp.int32),
  )


def discriminator_step(
  models: Models, state: dict, condition, real, fake
) -> tuple[dict, jnp.ndarray]:
  def loss_fn(params):
    apply = functools.partial(models.discriminator.apply, {'params': params}, condition)
    return 0.5 * (_bce(apply(real), True) + _bce(apply(fake), False))

  loss, grads = jax.value_and_grad(loss_fn)(state['discriminator'])
  updates, opt = models.optimizer.update(grads, state['discriminator_opt'], state['discriminator'])
  return dict(
    state, discriminator=optax.apply_updates(state['discriminator'], updates), discriminator_opt=opt
  ), loss


def forward_generator(models: Models, params, condition) -> tuple[jnp.ndarray, object]:
  """The generated image and the pullback of its forward pass (jax.vjp).

  Both updates of a step share them.
  """
  return jax.vjp(lambda params: models.generator.apply({'params': params}, condition), params)


def generator_step(
  models: Models, state: dict, batch: dict, condition, generated, pullback
) -> tuple[dict, tuple]:
  """Update G from the gradient of its loss with respect to its output.

  The gradient is pulled back through `pullback`: the discriminator step's forward pass is reused
  instead of run a second time.
  """

  def loss_fn(generated):
    fake = inpainting.composite(generated, batch['images'], batch['input_hole'])
    adversarial = _bce(
      models.discriminator.apply({'params': state['discriminator']}, condition, fake), True
    )
    l1 = hole_l1(generated, batch['target'], batch['loss_hole'])
    return adversarial + models.l1_weight * l1, (adversarial, l1)

  (total, (adversarial, l1)), output_grads = jax.value_and_grad(loss_fn, has_aux=True)(generated)
  (grads,) = pullback(output_grads)
  updates, opt = models.optimizer.update(grads, state['generator_opt'], state['generator'])
  return dict(
    state, generator=optax.apply_updates(state['generator'], updates), generator_opt=opt
  ), (adversarial, l1, total)


def train_step(models: Models, state: dict, data: dict, batch_size: int, self_supervised: bool):
  """One discriminator update then one generator update on a fresh batch.

  Returns the losses [4] in LOSS_NAMES order.
  """
  rng, key = jax.random.split(state['rng'])
  batch = sample_batch(key, data, batch_size, self_supervised)
  condition = inpainting.generator_input(batch['images'], batch['input_hole'])
  generated, pullback = forward_generator(models, state['generator'], condition)
  fake = jax.lax.stop_gradient(
    inpainting.composite(generated, batch['images'], batch['input_hole'])
  )
  real = jnp.where(batch['loss_hole'] > 0, batch['target'], fake)
  state, discriminator_loss = discriminator_step(models, state, condition, real, fake)
  state, (adversarial, l1, total) = generator_step(
    models, state, batch, condition, generated, pullback
  )
  average = optax.incremental_update(
    state['generator'], state['generator_average'], 1.0 - models.ema_decay
  )
  state = dict(state, generator_average=average)
  losses = jnp.stack([adversarial, l1, discriminator_loss, total])
  return dict(state, rng=rng, step=state['step'] + 1), losses


# One jitted call per step, not a `lax.scan` over steps: XLA:CPU runs these convolutions ~30x slower
# inside a while loop (0.38 s against 13.7 s per step, measured on the 2-core CPU).
@functools.partial(
  jax.jit, static_argnames=('models', 'batch_size', 'self_supervised'), donate_argnums=(1,)
)
def jitted_train_step(
  models: Models, state: dict, data: dict, batch_size: int, self_supervised: bool
):
  return train_step(models, state, data, batch_size, self_supervised)
