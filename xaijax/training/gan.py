"""Train the inpainting GAN and use it as a remedy.

The GAN is pix2pix: adversarial loss + l1_weight * L1 on the hole.

Three ways to get a target for the hole (`gan.mode`):

* 'self_supervised' (default; needs no clean images, so it works on real GC10-DET): every training
  image is rolled down by a random number of rows, with its overlay region, so that other,
  overlay-free content comes to lie where overlays sit; the hole is another training image's overlay
  region, in place, cut to the pixels away from the rolled image's own overlay (outside its region
  dilated by one pixel). The rolled image itself is the target there. The generator sees both holes
  blanked, its own (moved) overlay and the borrowed one, as it will when it is used; only the
  borrowed hole, whose truth is known, enters the losses. Holes keep the shape, the place and the
  image-border context of real overlays.
* 'paired' (synthetic data, clean images known): the overlay region is the hole, the clean image the
  target.
* 'paper' (Bento et al. 2021): the discriminator takes the classically cleaned image
  (`gan.paper_target`, Telea by default) as the real one; the hole is the overlay region, the L1
  target that same image.

The discriminator compares, given the generator's input, the generator's composite (`fake`) with the
same composite whose loss hole holds the target (`real`): the two differ only where the target is
known, so in self-supervised mode it never sees an overlay as "real".

The whole training step (batch sampling on the device, one discriminator update, one generator
update) is a pure jitted function of the state (which holds the key); every `log_every` steps the
host writes the progress bar and `gan_metrics.jsonl` and stops on a non-finite loss, naming the
step.

The fitted generator is the exponential moving average of the generator's weights (`gan.ema_decay`).

Entry points: `default_config` (the `config.gan` section), `fit`, `fit_or_load` (orbax checkpoint of
the generator in a folder, reused when present), `fit_or_load_for_case` (the same from a whole
config and the training split), and `Inpainter` (uint8 images + region -> uint8 images; only region
pixels change).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm

from xaijax import checkpoints
from xaijax.models import inpainting

MODES = ('self_supervised', 'paired', 'paper')
METRICS_FILE = 'gan_metrics.jsonl'
GENERATOR_SETTINGS_FILE = 'generator.json'
LOSS_NAMES = ('generator_adversarial', 'l1_hole', 'discriminator', 'generator_total')


def default_config(paper: bool = False) -> ml_collections.ConfigDict:
  """`config.gan`: CPU-sized or the paper-sized one.

  CPU-sized is 64 px, minutes on two cores; the paper-sized one is 224 px, for an accelerator.
  """
  return ml_collections.ConfigDict(
    dict(
      mode='self_supervised',  # 'self_supervised' | 'paired' | 'paper' (see the module docstring)
      steps=20000 if paper else 800,
      batch_size=32 if paper else 8,
      learning_rate=2e-4,
      b1=0.5,
      b2=0.999,
      l1_weight=100.0,  # pix2pix's lambda
      ema_decay=0.999
      if paper
      else 0.99,  # the fitted generator is this moving average of its weights
      generator_features=64 if paper else 16,  # channels at full resolution, doubled per level
      generator_depth=5 if paper else 2,  # halvings; H and W must be divisible by 2**depth
      discriminator_features=64 if paper else 16,
      discriminator_layers=3,
      paper_target='telea',  # mode 'paper': the classical remedy whose output is "real"
      log_every=50,  # steps between progress-bar updates, metrics lines and finiteness checks
      seed=0,
      checkpoint_dir='',  # '' -> <workdir>/gan_generator
      inference_batch_size=64,
      grid_examples=6,  # rows of the quality figure
    )
  )


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


def check_finite(losses: np.ndarray, first_step: int) -> None:
  """Raise on the first non-finite loss; row i of `losses` is step `first_step + i`."""
  bad_rows, bad_columns = np.nonzero(~np.isfinite(losses))
  if bad_rows.size:
    step, name = first_step + int(bad_rows[0]), LOSS_NAMES[int(bad_columns[0])]
    raise FloatingPointError(
      f'GAN training diverged: the {name} loss is {losses[bad_rows[0], bad_columns[0]]} at step '
      f'{step}; lower gan.learning_rate or gan.l1_weight, or check the images for corrupt values'
    )


# ----------------------------------------------------------------------------- fitting


def _check_inputs(
  images: np.ndarray, region: np.ndarray, clean: np.ndarray | None, mode: str
) -> None:
  if mode not in MODES:
    raise ValueError(f'gan.mode must be one of {MODES}, got {mode!r}')
  if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 1:
    raise ValueError(f'images must be uint8 [N, H, W, 1], got {images.dtype} {images.shape}')
  if region.shape != images.shape:
    raise ValueError(
      f"the region mask must have the images' shape {images.shape}, got {region.shape}"
    )
  if mode == 'paired' and (clean is None or clean.shape != images.shape):
    raise ValueError(
      "gan.mode='paired' needs the clean images (same shape as the images); on data without "
      "clean images use gan.mode='self_supervised'"
    )
  if mode == 'self_supervised' and not region.any():
    raise ValueError(
      "gan.mode='self_supervised' takes its hole shapes from the overlay regions, and every "
      "region is empty; use region='strips' or hand in non-empty masks"
    )


def training_data(
  gan_config, images: np.ndarray, region: np.ndarray, clean: np.ndarray | None
) -> dict:
  """The uint8 arrays the step samples from.

  Images, regions and (paired, paper) the target images.
  """
  data = dict(images=images, regions=region.astype(np.uint8))
  if gan_config.mode == 'paired':
    data['targets'] = clean
  elif gan_config.mode == 'paper':
    from xaijax import (
      remedies,
    )  # the classical remedies are numpy/OpenCV; only this mode needs them

    data['targets'] = remedies.apply(gan_config.paper_target, images, region, region='mask')
  return jax.device_put(data)


def fit(
  gan_config,
  images: np.ndarray,
  region: np.ndarray,
  *,
  clean: np.ndarray | None = None,
  workdir: str | None = None,
  show_progress: bool = True,
) -> tuple[Inpainter, list[dict]]:
  """Train the GAN; returns the fitted inpainter and the metrics (one dict per `log_every` steps).

  The inpainter holds the exponential moving average of the generator's weights (`gan.ema_decay`; 0
  keeps the last weights): adversarial training makes the weights jitter from step to step, the
  average less so.

  images: uint8 [N, H, W, 1] training images (with their overlays); region: uint8 {0,1} of the same
  shape, the overlay region of each image (exact masks, the paper's strips, or masks from LRP);
  clean: the overlay-free images, needed by mode 'paired' only. With a workdir, metrics go to
  `gan_metrics.jsonl` there.
  """
  _check_inputs(images, region, clean, gan_config.mode)
  height, width = images.shape[1:3]
  models = Models.from_config(gan_config)
  state = init_state(inpainting.prng_key(gan_config.seed), models, height, width)
  data = training_data(gan_config, images, region, clean)
  metrics_path = os.path.join(workdir, METRICS_FILE) if workdir else None
  if metrics_path:
    os.makedirs(workdir, exist_ok=True)
    open(metrics_path, 'w').close()  # a refit starts its curve afresh
  history, done, start = [], 0, time.perf_counter()
  with tqdm.tqdm(
    total=gan_config.steps, desc=f'gan ({gan_config.mode})', disable=not show_progress
  ) as bar:
    while done < gan_config.steps:
      chunk = min(gan_config.log_every, gan_config.steps - done)
      chunk_losses = []
      for _ in range(chunk):  # dispatched asynchronously; the host waits only for the losses below
        state, losses = jitted_train_step(
          models, state, data, gan_config.batch_size, gan_config.mode == 'self_supervised'
        )
        chunk_losses.append(losses)
      losses = np.asarray(jnp.stack(chunk_losses))
      check_finite(losses, first_step=done + 1)
      done += chunk
      record = dict(
        step=done,
        seconds=round(time.perf_counter() - start, 2),
        **{name: float(value) for name, value in zip(LOSS_NAMES, losses.mean(axis=0))},
      )
      history.append(record)
      if metrics_path:
        with open(metrics_path, 'a') as f:
          f.write(json.dumps(record) + '\n')
      bar.set_postfix(
        l1=f'{record["l1_hole"]:.4f}',
        adv=f'{record["generator_adversarial"]:.3f}',
        d=f'{record["discriminator"]:.3f}',
        refresh=False,
      )
      bar.update(chunk)
  return Inpainter.from_config(gan_config, jax.device_get(state['generator_average'])), history


# ----------------------------------------------------------------------------- the fitted inpainter


@functools.partial(jax.jit, static_argnames=('features', 'depth'))
def _inpaint_batch(params, images_uint8, hole_uint8, features: int, depth: int):
  condition = inpainting.generator_input(
    inpainting.to_unit_range(images_uint8), hole_uint8.astype(jnp.float32)
  )
  return inpainting.to_uint8(
    inpainting.UNetGenerator(features, depth).apply({'params': params}, condition)
  )


@dataclasses.dataclass(frozen=True)
class Inpainter:
  """A fitted generator as an image -> image remedy.

  Called as `inpainter(images, region)`, uint8 in and out.
  """

  params: dict
  features: int
  depth: int
  batch_size: int = 64

  @classmethod
  def from_config(cls, gan_config, params) -> Inpainter:
    return cls(
      params,
      int(gan_config.generator_features),
      int(gan_config.generator_depth),
      int(gan_config.inference_batch_size),
    )

  def __call__(self, images: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Fill `region` (uint8 {0,1}, images' shape); pixels outside it are returned bit-identical."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 1:
      raise ValueError(f'images must be uint8 [N, H, W, 1], got {images.dtype} {images.shape}')
    if region.shape != images.shape:
      raise ValueError(
        f"region mask must have the images' shape {images.shape}, got {region.shape}"
      )
    hole = (region > 0).astype(np.uint8)
    generated = np.empty_like(images)
    for start in range(0, len(images), self.batch_size):
      stop = min(start + self.batch_size, len(images))
      pad = self.batch_size - (stop - start)  # one static shape, one compilation
      chunk = [np.pad(a[start:stop], ((0, pad), (0, 0), (0, 0), (0, 0))) for a in (images, hole)]
      generated[start:stop] = np.asarray(
        _inpaint_batch(self.params, *chunk, self.features, self.depth)
      )[: stop - start]
    return np.where(hole.astype(bool), generated, images)

  def settings(self) -> dict:
    return dict(features=self.features, depth=self.depth)


def checkpoint_dir(gan_config, workdir: str) -> str:
  return gan_config.checkpoint_dir or os.path.join(workdir, 'gan_generator')


# Keys of config.gan that change how a run is watched or used, not the generator it trains.
NOT_TRAINING_KEYS = ('log_every', 'checkpoint_dir', 'inference_batch_size', 'grid_examples')


def _fit_settings(gan_config, images: np.ndarray) -> dict:
  """What a stored generator must agree on to be reused.

  Every training setting and the image size.
  """
  settings = {
    key: value for key, value in gan_config.to_dict().items() if key not in NOT_TRAINING_KEYS
  }
  return json.loads(json.dumps(dict(settings, resolution=list(images.shape[1:3]))))  # as read back


def fit_or_load(
  gan_config,
  images: np.ndarray,
  region: np.ndarray,
  directory: str,
  *,
  clean: np.ndarray | None = None,
  workdir: str | None = None,
  show_progress: bool = True,
) -> Inpainter:
  """The generator stored (orbax) in `directory`, or a fresh `fit` saved there first.

  A stored generator trained with other settings (any key of `config.gan` but NOT_TRAINING_KEYS, or
  another image size) is an error rather than silently reused.
  """
  directory = os.path.abspath(directory)
  settings_path = os.path.join(directory, GENERATOR_SETTINGS_FILE)
  params_path = os.path.join(directory, 'params')
  wanted = _fit_settings(gan_config, images)
  if checkpoints.pytree_exists(params_path) and os.path.exists(settings_path):
    with open(settings_path) as f:
      stored = json.load(f)
    if stored != wanted:
      differences = {
        key: (stored.get(key), wanted.get(key))
        for key in sorted(set(stored) | set(wanted))
        if stored.get(key) != wanted.get(key)
      }
      raise ValueError(
        f'the generator in {directory} was trained with other settings (stored, asked): '
        f'{differences}; delete that folder or set gan.checkpoint_dir to another one'
      )
    like = jax.eval_shape(
      functools.partial(
        inpainting.init_generator,
        model=inpainting.UNetGenerator(gan_config.generator_features, gan_config.generator_depth),
        height=images.shape[1],
        width=images.shape[2],
      ),
      inpainting.prng_key(0),
    )
    return Inpainter.from_config(gan_config, checkpoints.load_pytree(params_path, like))
  inpainter, _ = fit(
    gan_config, images, region, clean=clean, workdir=workdir, show_progress=show_progress
  )
  os.makedirs(directory, exist_ok=True)
  checkpoints.save_pytree(
    params_path, inpainter.params
  )  # replaces an unfinished save of a killed run
  with open(settings_path, 'w') as f:  # written last: its presence marks a complete checkpoint
    json.dump(wanted, f, indent=2)
  return inpainter


def region_masks(split: dict, region: str) -> np.ndarray:
  """The masks a remedy with `region` acts on.

  The split's overlay masks ('mask'), the masks the reveal found ('found', xaijax/reveal) or the
  paper's strips.
  """
  from xaijax import remedies

  if region not in ('mask', 'strips', 'found'):
    raise ValueError(f"remedy region must be 'strips', 'mask' or 'found', got {region!r}")
  if region == 'found':
    return split['found_mask']
  return split['mask'] if region == 'mask' else remedies.strip_region(split['image'])


def fit_or_load_for_case(
  config, train_split: dict, workdir: str, show_progress: bool = True
) -> Inpainter:
  """The workflow's entry point.

  `config.gan` settings, trained on the training split's `config.remedy.region` masks, stored under
  `checkpoint_dir(config.gan, workdir)`, metrics in the workdir. With found masks it trains on the
  images where the reveal found something, so that every hole it learns from has a found shape.
  """
  images, clean = train_split['image'], train_split.get('clean')
  region = region_masks(train_split, config.remedy.region)
  if config.remedy.region == 'found':
    shows = region.any(axis=(1, 2, 3))
    images, region = images[shows], region[shows]
    clean = None if clean is None else clean[shows]
  return fit_or_load(
    config.gan,
    images,
    region,
    checkpoint_dir(config.gan, workdir),
    clean=clean,
    workdir=workdir,
    show_progress=show_progress,
  )
