"""`benchmark.py corrections`: training steps with each correction's penalty, against plain ones.

  python scripts/benchmark.py corrections                       # plain, rrr, rrr_lrp, rrclarc
  python scripts/benchmark.py corrections --variants plain,rrr --seeds 3 --resolution 64

Every variant is the trainer's own `per_seed.train_step` (vmapped over seeds, MobileNet, Adam,
BatchNorm, dropout) with `Settings.penalty` set as the case sets it, on random uint8 images with an
overlay-like mask in the top and bottom strips; all run interleaved (`timing.time_interleaved`).
Each line has `ratio_to_plain`: seconds per step over the plain step's, the number the issue's
target (input-gradient RRR at most 3x plain) is about. An epoch is steps of one shape, so the
ratio per step is the ratio per epoch.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from xaijax import case_config
from xaijax.benchmarks.timing import choices, emit, time_interleaved
from xaijax.corrections import clarc, masks, rrr
from xaijax.data.overlays import strip_mask
from xaijax.models import registry
from xaijax.models.mobilenet import MobileNet
from xaijax.training import per_seed, seed_runners

NUM_CLASSES = 10
VARIANTS = ('plain', 'rrr', 'rrr_lrp', 'rrclarc')


def _model_and_penalty(args, variant):
  model = MobileNet(num_classes=NUM_CLASSES, alpha=args.alpha, depthwise_impl=args.depthwise)
  if variant == 'plain':
    return model, None
  if variant == 'rrr':
    return model, rrr.InputGradientPenalty(1.0)
  if variant == 'rrr_lrp':
    return model, rrr.LrpPenalty(1.0, model, 'epsilon', 0.1)
  feature_size = int(1024 * args.alpha)  # the head's input: MobileNet's pooled features
  concept_model = clarc.ConceptModel(model, 'conv_preds', feature_size, 1)
  return concept_model, clarc.ConceptGradientPenalty(1.0, feature_size, 'all', 'conv_preds')


def stepper(args, variant):
  """One vmapped training step of `variant` over `args.seeds` seeds, as a function that runs it."""
  model, penalty = _model_and_penalty(args, variant)
  train_config = case_config.get_config().train
  train_config.batch_size = args.batch
  classifier = registry.Classifier(model, registry.scale_and_tile(1))
  settings = dataclasses.replace(
    per_seed.make_settings(train_config, classifier, NUM_CLASSES), penalty=penalty
  )
  rng = np.random.default_rng(0)
  shape = (args.seeds, args.batch, args.resolution, args.resolution, 1)
  batch = {
    'image': jnp.asarray(rng.integers(0, 256, shape, dtype=np.uint8)),
    'label': jnp.asarray(rng.integers(0, NUM_CLASSES, shape[:2]).astype(np.int32)),
    masks.CORRECTION_MASK_KEY: jnp.broadcast_to(strip_mask(args.resolution), shape),
  }
  states = seed_runners.init_seed_states(
    list(range(args.seeds)),
    [1e-3] * args.seeds,
    batch['image'][0, :1],
    settings=settings,
    max_epochs=1,
  )
  step = jax.jit(
    jax.vmap(functools.partial(per_seed.train_step, settings=settings)), donate_argnums=0
  )
  holder = {'state': states}

  def run_once():
    holder['state'], metrics = step(holder['state'], batch)
    metrics['loss'].block_until_ready()

  return run_once


def run_corrections(args) -> None:
  factories = {variant: functools.partial(stepper, variant=variant) for variant in args.variants}
  seconds = time_interleaved(factories, args, args.warmup, args.repeats, args.steps)
  plain = seconds.get('plain', {}).get('wall')
  for variant, per_step in seconds.items():
    emit(
      {
        'name': f'train_step/{variant}',
        'items_per_s': round(args.seeds * args.batch / per_step['wall'], 3),
        'seconds_per_step': round(per_step['wall'], 5),
        'cpu_seconds_per_step': round(per_step['cpu'], 5),
        'ratio_to_plain': round(per_step['wall'] / plain, 3) if plain else None,
        **{
          key: getattr(args, key)
          for key in ('resolution', 'alpha', 'batch', 'seeds', 'depthwise', 'repeats', 'steps')
        },
        'device': jax.devices()[0].platform,
      }
    )


def add_corrections(subparsers) -> None:
  parser = subparsers.add_parser(
    'corrections', help='Training steps with a correction penalty against plain training.'
  )
  parser.add_argument('--variants', type=choices(*VARIANTS), default=list(VARIANTS))
  parser.add_argument('--resolution', type=int, default=64)
  parser.add_argument('--alpha', type=float, default=0.5)
  parser.add_argument('--batch', type=int, default=16)
  parser.add_argument('--seeds', type=int, default=3)
  parser.add_argument('--depthwise', choices=('shifted', 'xla'), default='shifted')
  parser.add_argument('--warmup', type=int, default=2)
  parser.add_argument('--repeats', type=int, default=7)
  parser.add_argument('--steps', type=int, default=3, help='steps per timed repeat')
  parser.set_defaults(run=run_corrections)
