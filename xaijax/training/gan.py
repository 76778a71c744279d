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

The training step itself (batches drawn on the device, the losses, one discriminator and one
generator update) is pure and jitted, in `xaijax.training.gan_steps`. This module is the host side:
every `log_every` steps the host writes the progress bar and `gan_metrics.jsonl` and stops on a
non-finite loss, naming the step.

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
import tqdm

from xaijax import checkpoints
from xaijax.models import inpainting
from xaijax.training import gan_steps

MODES = ('self_supervised', 'paired', 'paper')
METRICS_FILE = 'gan_metrics.jsonl'
GENERATOR_SETTINGS_FILE = 'generator.json'


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


# ----------------------------------------------------------------------------- fitting


def check_finite(losses: np.ndarray, first_step: int) -> None:
  """Raise on the first non-finite loss; row i of `losses` is step `first_step + i`."""
  bad_rows, bad_columns = np.nonzero(~np.isfinite(losses))
  if bad_rows.size:
    step, name = first_step + int(bad_rows[0]), gan_steps.LOSS_NAMES[int(bad_columns[0])]
    raise FloatingPointError(
      f'GAN training diverged: the {name} loss is {losses[bad_rows[0], bad_columns[0]]} at step '
      f'{step}; lower gan.learning_rate or gan.l1_weight, or check the images for corrupt values'
    )


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
  models = gan_steps.Models.from_config(gan_config)
  state = gan_steps.init_state(inpainting.prng_key(gan_config.seed), models, height, width)
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
        state, losses = gan_steps.jitted_train_step(
          models, state, data, gan_config.batch_size, gan_config.mode == 'self_supervised'
        )
        chunk_losses.append(losses)
      losses = np.asarray(jnp.stack(chunk_losses))
      check_finite(losses, first_step=done + 1)
      done += chunk
      record = dict(
        step=done,
        seconds=round(time.perf_counter() - start, 2),
        **{name: float(value) for name, value in zip(gan_steps.LOSS_NAMES, losses.mean(axis=0))},
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
