"""`benchmark.py gan`: inpainting-GAN training steps and inpainting throughput, per generator.

  python scripts/benchmark.py gan --resolution 64 --batch 8 --generators 16x2,16x3,12x3

Each generator (`features x depth`) gets a training stepper (one jitted discriminator + generator
update, `xaijax.training.gan_steps.jitted_train_step`, on overlay-shaped holes) and an inpainting
stepper (`Inpainter` on a batch of uint8 images). All run in their own worker process and take turns
(`timing.time_interleaved`), so the ratios (`vs_first`: seconds per step over the first
generator's) hold on a loaded machine.
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from xaijax.benchmarks.timing import emit, time_interleaved


def _data(args):
  """uint8 images with burnt-in overlays and their exact masks, the same in every worker."""
  from xaijax.data import overlays  # pylint: disable=import-outside-toplevel

  rng = np.random.default_rng(0)
  count = max(4 * args.batch, 32)
  rows = rng.integers(60, 200, (count, args.resolution, 1, 1))
  images = np.broadcast_to(rows, (count, args.resolution, args.resolution, 1)).astype(np.uint8)
  drawn = [
    overlays.draw_overlay(rng, args.resolution, int(rng.integers(0, 10))) for _ in range(count)
  ]
  values = np.stack([v for v, _ in drawn])[..., None]
  masks = np.stack([m for _, m in drawn])[..., None]
  return np.where(masks == 1, values, images).astype(np.uint8), masks, images


def _config(args, features: int, depth: int):
  from xaijax.training import gan  # pylint: disable=import-outside-toplevel

  config = gan.default_config()
  config.update(
    dict(
      mode=args.mode,
      batch_size=args.batch,
      generator_features=features,
      generator_depth=depth,
      inference_batch_size=args.batch,
    )
  )
  return config


def gan_train_stepper(args, features: int, depth: int):
  from xaijax.models import inpainting  # pylint: disable=import-outside-toplevel
  from xaijax.training import gan, gan_steps  # pylint: disable=import-outside-toplevel

  config = _config(args, features, depth)
  images, masks, clean = _data(args)
  models = gan_steps.Models.from_config(config)
  data = gan.training_data(config, images, masks, clean)
  holder = [gan_steps.init_state(inpainting.prng_key(0), models, args.resolution, args.resolution)]

  def step():
    holder[0], losses = gan_steps.jitted_train_step(
      models, holder[0], data, args.batch, args.mode == 'self_supervised'
    )
    losses.block_until_ready()

  return step


def gan_inpaint_stepper(args, features: int, depth: int):
  from xaijax.models import inpainting  # pylint: disable=import-outside-toplevel
  from xaijax.training import gan  # pylint: disable=import-outside-toplevel

  params = inpainting.init_generator(
    inpainting.prng_key(0),
    inpainting.UNetGenerator(features, depth),
    args.resolution,
    args.resolution,
  )
  inpainter = gan.Inpainter(params, features, depth, batch_size=args.batch)
  images, masks, _ = _data(args)
  images, masks = images[: args.batch], masks[: args.batch]
  return lambda: inpainter(images, masks)


def _generators(text: str) -> list[tuple[int, int]]:
  try:
    return [tuple(int(n) for n in item.split('x')) for item in text.split(',') if item]
  except ValueError as error:
    raise SystemExit(
      f'--generators takes FEATURESxDEPTH items, e.g. 16x2,16x3; got {text!r}'
    ) from error


def run_gan(args) -> None:
  generators = _generators(args.generators)
  factories = {}
  for kind, stepper in (('train', gan_train_stepper), ('inpaint', gan_inpaint_stepper)):
    for features, depth in generators:
      factories[f'gan_{kind}_f{features}_d{depth}'] = functools.partial(
        stepper, features=features, depth=depth
      )
  seconds = time_interleaved(factories, args, args.warmup, args.repeats, args.steps)
  for name, per_step in seconds.items():
    kind = name.split('_')[1]
    first = f'gan_{kind}_f{generators[0][0]}_d{generators[0][1]}'
    record = {
      'name': name,
      'items_per_s': round(args.batch / per_step['wall'], 3),
      'seconds_per_step': round(per_step['wall'], 5),
      'cpu_seconds_per_step': round(per_step['cpu'], 5),
      'vs_first': round(per_step['wall'] / seconds[first]['wall'], 3),
    }
    for key in ('resolution', 'batch', 'mode', 'repeats', 'steps', 'keep_freed_memory'):
      record[key] = getattr(args, key)
    record['device'] = jax.devices()[0].platform
    emit(record)


def add_gan(subparsers) -> None:
  parser = subparsers.add_parser(
    'gan', help='inpainting GAN: training steps/s and inpainted images/s per generator size.'
  )
  parser.add_argument('--resolution', type=int, default=64)
  parser.add_argument('--batch', type=int, default=8)
  parser.add_argument(
    '--generators',
    default='16x2,16x3,12x3',
    help='comma-separated FEATURESxDEPTH U-Nets (gan.generator_features x _depth)',
  )
  parser.add_argument(
    '--mode', choices=('self_supervised', 'paired', 'paper'), default='self_supervised'
  )
  parser.add_argument(
    '--keep-freed-memory',
    action='store_true',
    help='glibc malloc keeps freed memory in every worker (see benchmark.py)',
  )
  parser.add_argument('--warmup', type=int, default=2)
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--steps', type=int, default=5, help='steps per timed repeat')
  parser.set_defaults(run=run_gan)
