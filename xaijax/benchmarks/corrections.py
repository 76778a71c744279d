"""`benchmark.py corrections`: training steps with each correction's penalty, against plain ones.

  python scripts/benchmark.py corrections                       # every variant
  python scripts/benchmark.py corrections --variants plain,rrr --seeds 3 --resolution 64

Every variant is the trainer's own `per_seed.train_step` (vmapped over seeds, MobileNet, Adam,
BatchNorm, dropout) with `Settings.penalty` set as the case sets it, on random uint8 images with an
overlay-like mask in the top and bottom strips; all run interleaved (`timing.time_interleaved`).
Each line has `ratio_to_plain`: seconds per step over the plain step's.

`--unit epoch` times what the issue's target (input-gradient RRR at most 3x plain training per
epoch) is about: the trainer's whole compiled epoch (`seed_runners.epoch_program`: a shuffled pass
over `--train-images` images, then validation macro-F1 on `--validation-images` and the early-
stopping bookkeeping), every seed active. The validation pass costs every variant the same, so
the ratio per epoch is below the ratio per step.

Defaults are the CPU-sized case (64 px, alpha 0.25, batch 16, 5 seeds; the embedded set's 993
train and 284 validation images).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from xaijax import case_config
from xaijax.benchmarks.timing import choices, emit, time_interleaved
from xaijax.corrections import clarc, counterexamples, masks, rrr
from xaijax.data.overlays import strip_mask
from xaijax.models import registry
from xaijax.models.mobilenet import MobileNet
from xaijax.training import per_seed, seed_runners

NUM_CLASSES = 10
VARIANTS = ('plain', 'rrr', 'rrr_lrp', 'counterexamples', 'counterexamples_inpainted', 'rrclarc')
EPOCH_LIMIT = 100  # the epochs a benchmark state has room for; the epoch counter wraps


def _model_and_penalty(args, variant):
  model = MobileNet(num_classes=NUM_CLASSES, alpha=args.alpha, depthwise_impl=args.depthwise)
  if variant == 'plain':
    return model, None
  if variant == 'rrr':
    return model, rrr.InputGradientPenalty(1.0)
  if variant == 'rrr_lrp':
    return model, _lrp_penalty(args, model, 1.0)
  if variant == 'counterexamples':
    return model, counterexamples.CounterexamplePenalty(1.0)
  if variant == 'counterexamples_inpainted':
    return model, counterexamples.CounterexamplePenalty(
      1.0,
      _lrp_penalty(args, model, args.lrp_weight) if args.lrp_weight else None,
      partners=args.partners,
      inpainted_weight=args.inpainted_weight,
      preprocess=registry.scale_and_tile(1),
    )
  feature_size = int(1024 * args.alpha)  # the head's input: MobileNet's pooled features
  concept_model = clarc.ConceptModel(model, 'conv_preds', feature_size, 1)
  return concept_model, clarc.ConceptGradientPenalty(1.0, feature_size, 'all', 'conv_preds')


def _lrp_penalty(args, model, weight: float) -> rrr.LrpPenalty:
  return rrr.LrpPenalty(weight, model, args.lrp_composite, 0.1)


def _settings(args, variant) -> per_seed.Settings:
  model, penalty = _model_and_penalty(args, variant)
  train_config = case_config.get_config().train
  # Every seed stays active for as many epochs as the benchmark runs.
  train_config.update(batch_size=args.batch, patience=10**6, epochs=EPOCH_LIMIT)
  classifier = registry.Classifier(model, registry.scale_and_tile(1))
  return dataclasses.replace(
    per_seed.make_settings(train_config, classifier, NUM_CLASSES), penalty=penalty
  )


def _images(rng, args, leading: tuple[int, ...]) -> dict:
  """Random uint8 images, labels, the overlay-like strip mask and random stand-ins for the
  inpainted images, shaped `leading + [H, W, 1]`."""
  shape = (*leading, args.resolution, args.resolution, 1)
  return {
    'image': rng.integers(0, 256, shape, dtype=np.uint8),
    'label': rng.integers(0, NUM_CLASSES, leading).astype(np.int32),
    masks.CORRECTION_MASK_KEY: np.broadcast_to(strip_mask(args.resolution), shape),
    masks.INPAINTED_KEY: rng.integers(0, 256, shape, dtype=np.uint8),
  }


def _initial_states(args, settings, sample_images):
  return seed_runners.init_seed_states(
    list(range(args.seeds)),
    [1e-3] * args.seeds,
    sample_images,
    settings=settings,
    max_epochs=EPOCH_LIMIT,
  )


def stepper(args, variant):
  """One vmapped training step of `variant` over `args.seeds` seeds, as a function that runs it."""
  settings = _settings(args, variant)
  batch = jax.tree.map(
    jnp.asarray, _images(np.random.default_rng(0), args, (args.seeds, args.batch))
  )
  step = jax.jit(
    jax.vmap(functools.partial(per_seed.train_step, settings=settings)), donate_argnums=0
  )
  holder = {'state': _initial_states(args, settings, batch['image'][0, :1])}

  def run_once():
    holder['state'], metrics = step(holder['state'], batch)
    metrics['loss'].block_until_ready()

  return run_once


def epoch_stepper(args, variant):
  """One whole compiled epoch of `variant` (train, validate, early-stopping bookkeeping) over
  `args.seeds` seeds, as a function that runs it."""
  settings = _settings(args, variant)
  rng = np.random.default_rng(0)
  train_data = jax.tree.map(jnp.asarray, _images(rng, args, (args.train_images,)))
  validation = _images(rng, args, (args.validation_images,))
  eval_batch_size = int(case_config.get_config().train.eval_batch_size)
  validation_data = jax.tree.map(
    jnp.asarray, per_seed.prepare_eval_data(validation, eval_batch_size)
  )
  run = seed_runners.epoch_program(settings, None)
  holder = {'state': _initial_states(args, settings, train_data['image'][:1]), 'epoch': 0}

  def run_once():
    holder['epoch'] = holder['epoch'] % EPOCH_LIMIT + 1
    holder['state'], metrics = run(holder['state'], train_data, validation_data, holder['epoch'])
    metrics['validation_f1'].block_until_ready()

  return run_once


def run_corrections(args) -> None:
  by_epoch = args.unit == 'epoch'
  factory = epoch_stepper if by_epoch else stepper
  factories = {variant: functools.partial(factory, variant=variant) for variant in args.variants}
  seconds = time_interleaved(factories, args, args.warmup, args.repeats, args.steps)
  plain = seconds.get('plain', {}).get('wall')
  images = args.train_images if by_epoch else args.batch
  for variant, per_step in seconds.items():
    emit(
      {
        'name': f'train_{args.unit}/{variant}',
        'items_per_s': round(args.seeds * images / per_step['wall'], 3),
        f'seconds_per_{args.unit}': round(per_step['wall'], 5),
        f'cpu_seconds_per_{args.unit}': round(per_step['cpu'], 5),
        'ratio_to_plain': round(per_step['wall'] / plain, 3) if plain else None,
        **{
          key: getattr(args, key)
          for key in (
            'resolution',
            'alpha',
            'batch',
            'seeds',
            'depthwise',
            'lrp_composite',
            'partners',
            'inpainted_weight',
            'lrp_weight',
            'repeats',
            'steps',
          )
        },
        **(
          {'train_images': args.train_images, 'validation_images': args.validation_images}
          if by_epoch
          else {}
        ),
        'device': jax.devices()[0].platform,
      }
    )


def add_corrections(subparsers) -> None:
  parser = subparsers.add_parser(
    'corrections', help='Training steps with a correction penalty against plain training.'
  )
  parser.add_argument('--variants', type=choices(*VARIANTS), default=list(VARIANTS))
  parser.add_argument('--resolution', type=int, default=64)
  parser.add_argument('--alpha', type=float, default=0.25)
  parser.add_argument('--batch', type=int, default=16)
  parser.add_argument('--seeds', type=int, default=5)
  parser.add_argument(
    '--unit', choices=('step', 'epoch'), default='step', help='time one step or one whole epoch'
  )
  parser.add_argument(
    '--lrp-composite',
    default=case_config.get_config().correction.lrp_composite,
    help="rrr_lrp's composite (default: the config's)",
  )
  parser.add_argument(
    '--partners', type=int, default=3, help="counterexamples_inpainted's counterexamples per image"
  )
  parser.add_argument(
    '--inpainted-weight', type=float, default=1.0, help="counterexamples_inpainted's inpainted λ"
  )
  parser.add_argument(
    '--lrp-weight',
    type=float,
    default=0.0,
    help="counterexamples_inpainted's RRR-LRP λ (--lrp-composite); 0: no LRP term",
  )
  parser.add_argument('--train-images', type=int, default=993)
  parser.add_argument('--validation-images', type=int, default=284)
  parser.add_argument('--depthwise', choices=('shifted', 'xla'), default='shifted')
  parser.add_argument('--warmup', type=int, default=2)
  parser.add_argument('--repeats', type=int, default=7)
  parser.add_argument('--steps', type=int, default=3, help='steps (or epochs) per timed repeat')
  parser.set_defaults(run=run_corrections)
