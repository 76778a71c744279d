"""`benchmark.py train`: MobileNet training throughput (images/s), ours against PyTorch.

  python scripts/benchmark.py train --resolution 224 --alpha 1.0 --batch 16 --seeds 1 \\
      --mode vmapped --depthwise shifted --reference torch
  python scripts/benchmark.py train --seeds 4 --mode vmapped,looped   # lists: all interleaved
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
import functools

import jax
import jax.numpy as jnp
import numpy as np

from xaijax import case_config
from xaijax.benchmarks.timing import choices, emit, time_interleaved
from xaijax.models import registry
from xaijax.models.mobilenet import MobileNet
from xaijax.testing import torch_reference
from xaijax.training import per_seed, seed_runners

NUM_CLASSES = 10
LEARNING_RATE = 1e-3
ADAM_B1 = 0.9


# ----------------------------------------------------------------------------- train (Flax)


def flax_train_stepper(args) -> Callable[[], None]:
  """The trainer's own jitted step (`per_seed.train_step`: preprocessing, MobileNet, cross-entropy,
  Adam, BatchNorm statistics, dropout) on random uint8 images; returns a function running one step.
  """
  model = MobileNet(
    num_classes=NUM_CLASSES,
    alpha=args.alpha,
    depthwise_impl=args.depthwise,
    pointwise_impl=args.pointwise,
  )
  train_config = case_config.get_config('paper').train
  train_config.batch_size, train_config.b1 = args.batch, ADAM_B1
  classifier = registry.Classifier(model, registry.scale_and_tile(args.channels))
  settings = per_seed.make_settings(train_config, classifier, NUM_CLASSES)
  shape = (args.batch, args.resolution, args.resolution, 1)
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.integers(0, 256, (args.seeds,) + shape, dtype=np.uint8))
  labels = jnp.asarray(rng.integers(0, NUM_CLASSES, (args.seeds, args.batch)).astype(np.int32))
  states = seed_runners.init_seed_states(
    list(range(args.seeds)),
    [LEARNING_RATE] * args.seeds,
    images[0, :1],
    settings=settings,
    max_epochs=1,
  )
  one_step = functools.partial(per_seed.train_step, settings=settings)

  if args.mode == 'vmapped':
    step = jax.jit(
      jax.vmap(lambda state, image, label: one_step(state, {'image': image, 'label': label})),
      donate_argnums=0,
    )
    holder = {'state': states}

    def run_once():
      holder['state'], metrics = step(holder['state'], images, labels)
      metrics['loss'].block_until_ready()
  else:
    step = jax.jit(
      lambda state, image, label: one_step(state, {'image': image, 'label': label}),
      donate_argnums=0,
    )
    seeds = [jax.tree.map(lambda x, k=k: x[k], states) for k in range(args.seeds)]

    def run_once():
      for seed in range(args.seeds):
        seeds[seed], _ = step(seeds[seed], images[seed], labels[seed])
      jax.block_until_ready(seeds)

  return run_once


# ----------------------------------------------------------------------------- train (torch)


def torch_train_stepper(args) -> Callable[[], None]:
  torch = torch_reference.import_torch()
  if args.torch_threads:
    torch.set_num_threads(args.torch_threads)
  torch.manual_seed(0)
  models = [
    torch_reference.torch_mobilenet(torch, NUM_CLASSES, args.alpha, args.channels, args.resolution)
    for _ in range(args.seeds)
  ]
  optimizers = [
    torch.optim.Adam(m.parameters(), lr=LEARNING_RATE, betas=(ADAM_B1, 0.999)) for m in models
  ]
  images = torch.rand(args.batch, args.channels, args.resolution, args.resolution) * 2 - 1
  labels = torch.randint(0, NUM_CLASSES, (args.batch,))
  loss_fn = torch.nn.CrossEntropyLoss()
  for m in models:
    m.train()

  def run_once():
    for m, opt in zip(models, optimizers):
      opt.zero_grad(set_to_none=True)
      loss = loss_fn(m(images), labels)
      loss.backward()
      opt.step()

  return run_once


def _flax_variant(args, mode, depthwise, pointwise):
  return flax_train_stepper(
    argparse.Namespace(
      **{**vars(args), 'mode': mode, 'depthwise': depthwise, 'pointwise': pointwise}
    )
  )


def run_train(args) -> None:
  # Every combination of the listed Flax settings, then the reference: all interleaved.
  variants = {}
  for mode in args.mode:
    for depthwise in args.depthwise:
      for pointwise in args.pointwise:
        label = f'flax_mobilenet_train/{mode}/{depthwise}/{pointwise}'
        variants[label] = dict(mode=mode, depthwise=depthwise, pointwise=pointwise)
  factories = {
    label: functools.partial(_flax_variant, **settings) for label, settings in variants.items()
  }
  if args.reference == 'torch':
    torch_reference.import_torch()  # fail early, before any worker starts
    factories['torch_mobilenet_train'] = torch_train_stepper
  seconds = time_interleaved(factories, args, args.warmup, args.repeats, args.steps)
  for label, per_step in seconds.items():
    record = {
      'name': label.split('/')[0],
      'items_per_s': round(args.seeds * args.batch / per_step['wall'], 3),
      'seconds_per_step': round(per_step['wall'], 5),
      'cpu_seconds_per_step': round(per_step['cpu'], 5),
    }
    for key in (
      'resolution',
      'alpha',
      'batch',
      'seeds',
      'channels',
      'repeats',
      'steps',
      'keep_freed_memory',
    ):
      record[key] = getattr(args, key)
    if label in variants:
      record.update(variants[label], device=jax.devices()[0].platform)
    else:
      record.update(mode='looped', device='cpu', threads=args.torch_threads or 'default')
    emit(record)


def add_train(subparsers) -> None:
  parser = subparsers.add_parser(
    'train', help='MobileNet training throughput (images/s, seeds x images).'
  )
  parser.add_argument('--resolution', type=int, default=64)
  parser.add_argument('--alpha', type=float, default=0.5)
  parser.add_argument('--batch', type=int, default=32)
  parser.add_argument('--channels', type=int, default=1, choices=(1, 3))
  parser.add_argument('--seeds', type=int, default=1)
  parser.add_argument(
    '--mode',
    type=choices('vmapped', 'looped'),
    default=['vmapped'],
    help='several seeds: one vmapped step, or the one-seed step in a loop',
  )
  parser.add_argument(
    '--depthwise',
    type=choices('shifted', 'xla'),
    default=['shifted'],
    help="depthwise convs: shifted multiply-adds or XLA's grouped conv",
  )
  parser.add_argument(
    '--pointwise',
    type=choices('dot', 'xla'),
    default=['dot'],
    help="1x1 convs: a matrix product or XLA's convolution",
  )
  parser.add_argument(
    '--reference',
    choices=('none', 'torch'),
    default='none',
    help='also measure the same network and step in PyTorch, interleaved',
  )
  parser.add_argument(
    '--torch-threads',
    type=int,
    default=0,
    help='torch.set_num_threads for the reference (0: PyTorch default)',
  )
  parser.add_argument(
    '--keep-freed-memory',
    action='store_true',
    help='glibc malloc keeps freed memory (no mmap/trim) in every worker; see xaijax/cpu_memory.py',
  )
  parser.add_argument('--warmup', type=int, default=2)
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--steps', type=int, default=3, help='steps per timed repeat')
  parser.set_defaults(run=run_train)
