"""Speed measurements for xaijax, printed as one JSON object per line.

Each subcommand measures one workload; every line carries `name`, `items_per_s` and the
settings, so runs can be compared side by side. Measurements that belong together (ours and a
reference, or several settings of ours) run in one invocation, each in its own worker process,
taking turns repeat by repeat, so that load from other processes on a shared machine hits all
alike. Besides wall time per step each line has the process CPU time per step, which on a busy
machine says more about the work done than wall time.

  python scripts/benchmark.py train --resolution 224 --alpha 1.0 --batch 16 --seeds 1 \
      --mode vmapped --depthwise shifted --reference torch
  python scripts/benchmark.py train --seeds 4 --mode vmapped,looped   # lists: all interleaved

Subcommands are registered in `SUBCOMMANDS`; add one with a function that fills an argparse
subparser and sets `run`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
import functools
import json
import multiprocessing
import os
import resource
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmark_gan import add_gan
from benchmark_lrp import add_lrp

from xaijax.cpu_memory import keep_freed_memory
from xaijax.models.mobilenet import BLOCKS, MobileNet

NUM_CLASSES = 10
LEARNING_RATE = 1e-3
ADAM_B1 = 0.9


def emit(record: dict) -> None:
  print(json.dumps(record), flush=True)


def time_interleaved(
  factories: dict[str, Callable], args, warmup: int, repeats: int, steps: int
) -> dict[str, dict[str, float]]:
  """Median wall and CPU seconds per step of each stepper; they take turns within each repeat.

  Each stepper lives in its own process (built by `factory(args)`), so one framework's worker
  threads (XLA's pool, PyTorch's OpenMP team, which spin after work) never compete with the
  other's inside a process, while the turn-taking exposes both to the same outside load.
  """
  context = multiprocessing.get_context('spawn')
  workers = {}
  for name, factory in factories.items():
    parent_end, child_end = context.Pipe()
    process = context.Process(target=_worker, args=(factory, args, warmup, steps, child_end))
    process.start()
    workers[name] = (process, parent_end)
  try:
    for name, (process, pipe) in workers.items():
      _expect(pipe.recv(), name)
    samples = {name: [] for name in workers}
    for _ in range(repeats):
      for name, (process, pipe) in workers.items():
        pipe.send('step')
        samples[name].append(_expect(pipe.recv(), name))
  finally:
    for process, pipe in workers.values():
      if process.is_alive():
        pipe.send('stop')
      process.join()
  return {
    name: {
      'wall': statistics.median(wall for wall, _ in values),
      'cpu': statistics.median(cpu for _, cpu in values),
    }
    for name, values in samples.items()
  }


def _expect(message, name):
  if isinstance(message, BaseException):
    raise RuntimeError(f'benchmark worker {name!r} failed') from message
  return message


def _worker(factory, args, warmup, steps, pipe) -> None:
  try:
    if getattr(args, 'keep_freed_memory', False):
      keep_freed_memory()
    step = factory(args)
    for _ in range(warmup):
      step()
    pipe.send('ready')
    while pipe.recv() == 'step':
      usage_before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
      for _ in range(steps):
        step()
      wall = time.perf_counter() - start
      usage_after = resource.getrusage(resource.RUSAGE_SELF)
      cpu = (
        usage_after.ru_utime + usage_after.ru_stime - usage_before.ru_utime - usage_before.ru_stime
      )
      pipe.send((wall / steps, cpu / steps))
  except Exception as error:  # pylint: disable=broad-except
    pipe.send(error)


# ----------------------------------------------------------------------------- train (Flax)


def flax_train_stepper(args) -> Callable[[], None]:
  """The trainer's own jitted step (`classifier.train_step`: preprocessing, MobileNet, cross-entropy,
  Adam, BatchNorm statistics, dropout) on random uint8 images; returns a function running one step."""
  from xaijax.training import classifier  # pylint: disable=import-outside-toplevel

  model = MobileNet(
    num_classes=NUM_CLASSES,
    alpha=args.alpha,
    depthwise_impl=args.depthwise,
    pointwise_impl=args.pointwise,
  )
  train_config = classifier.default_train_config()
  train_config.batch_size, train_config.b1 = args.batch, ADAM_B1
  settings = classifier.make_settings(
    train_config, model, classifier.default_preprocess(args.channels), NUM_CLASSES
  )
  shape = (args.batch, args.resolution, args.resolution, 1)
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.integers(0, 256, (args.seeds,) + shape, dtype=np.uint8))
  labels = jnp.asarray(rng.integers(0, NUM_CLASSES, (args.seeds, args.batch)).astype(np.int32))
  states = classifier.init_seed_states(
    list(range(args.seeds)),
    [LEARNING_RATE] * args.seeds,
    images[0, :1],
    settings=settings,
    max_epochs=1,
  )
  one_step = functools.partial(classifier.train_step, settings=settings)

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


def import_torch():
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError as error:
    raise SystemExit(
      '--reference torch needs PyTorch, an optional benchmark-only dependency: '
      'pip install torch==2.13.0'
    ) from error
  return torch


def torch_mobilenet(torch, num_classes: int, alpha: float, channels: int, dropout: float):
  """MobileNet v1 as Keras builds it (bottom/right padding before stride-2 depthwise convs)."""
  nn = torch.nn

  class SamePad(nn.Module):
    """TensorFlow/Keras 'SAME' padding for a 3x3 window: the extra pixel goes bottom/right."""

    def __init__(self, stride):
      super().__init__()
      self.stride = stride

    def forward(self, x):
      pads = []
      for size in (x.shape[-1], x.shape[-2]):  # F.pad wants the last axis first
        total = max((-(-size // self.stride) - 1) * self.stride + 3 - size, 0)
        pads += [total // 2, total - total // 2]
      return nn.functional.pad(x, pads)

  class PadBottomRight(nn.Module):
    def forward(self, x):
      return nn.functional.pad(x, (0, 1, 0, 1))

  def bn(features):
    return nn.BatchNorm2d(features, eps=1e-3, momentum=0.01)

  layers = [
    SamePad(2),
    nn.Conv2d(channels, int(32 * alpha), 3, stride=2, bias=False),
    bn(int(32 * alpha)),
    nn.ReLU6(),
  ]
  width = int(32 * alpha)
  for filters, stride in BLOCKS:
    if stride == 2:
      layers += [PadBottomRight(), nn.Conv2d(width, width, 3, stride=2, groups=width, bias=False)]
    else:
      layers += [nn.Conv2d(width, width, 3, padding=1, groups=width, bias=False)]
    layers += [bn(width), nn.ReLU6()]
    out = int(filters * alpha)
    layers += [nn.Conv2d(width, out, 1, bias=False), bn(out), nn.ReLU6()]
    width = out
  layers += [
    nn.AdaptiveAvgPool2d(1),
    nn.Flatten(),
    nn.Dropout(dropout),
    nn.Linear(width, num_classes),
  ]
  return nn.Sequential(*layers)


def torch_train_stepper(args) -> Callable[[], None]:
  torch = import_torch()
  if args.torch_threads:
    torch.set_num_threads(args.torch_threads)
  torch.manual_seed(0)
  models = [
    torch_mobilenet(torch, NUM_CLASSES, args.alpha, args.channels, 1e-3) for _ in range(args.seeds)
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
    import_torch()  # fail early, before any worker starts
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


def _choices(*allowed):
  """argparse type: a comma-separated list of allowed values."""

  def parse(text):
    values = [v.strip() for v in text.split(',') if v.strip()]
    bad = [v for v in values if v not in allowed]
    if bad or not values:
      raise argparse.ArgumentTypeError(
        f'{text!r}: choose from {", ".join(allowed)} (comma-separated to compare several)'
      )
    return values

  return parse


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
    type=_choices('vmapped', 'looped'),
    default=['vmapped'],
    help='several seeds: one vmapped step, or the one-seed step in a loop',
  )
  parser.add_argument(
    '--depthwise',
    type=_choices('shifted', 'xla'),
    default=['shifted'],
    help="depthwise convs: shifted multiply-adds or XLA's grouped conv",
  )
  parser.add_argument(
    '--pointwise',
    type=_choices('dot', 'xla'),
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


# Each entry fills one subparser; `lrp` and `gan` measurements go here too.
SUBCOMMANDS = (add_train, add_lrp, add_gan)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  subparsers = parser.add_subparsers(dest='command', required=True)
  for add in SUBCOMMANDS:
    add(subparsers)
  args = parser.parse_args(argv)
  args.run(args)


if __name__ == '__main__':
  main()
