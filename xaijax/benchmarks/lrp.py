"""`benchmark.py lrp`: LRP heatmaps per second for MobileNet, against a forward pass and Zennit.

  python scripts/benchmark.py lrp --resolution 224 --alpha 1.0 --batch 16 \
      --composites epsilon,epsilon_plus --reference zennit

Every stepper runs in its own worker process and they take turns (`timing.time_interleaved`),
so the ratios (`vs_forward`: seconds per batch over the same framework's forward pass) hold on a
loaded machine. The Zennit side is the same network in PyTorch with the same weights
(`xaijax.testing.torch_reference`); `--check-agreement` also reports how far its heatmaps are from
ours on the benchmark batch.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata

import jax
import jax.numpy as jnp
import numpy as np

from xaijax.benchmarks.timing import emit, time_interleaved

NUM_CLASSES = 10


def _model(args):
  from xaijax.models.mobilenet import MobileNet  # pylint: disable=import-outside-toplevel

  return MobileNet(
    num_classes=NUM_CLASSES,
    alpha=args.alpha,
    depthwise_impl=args.depthwise,
    pointwise_impl=args.pointwise,
  )


def _batch(args):
  """Images in [-1, 1] (NHWC), targets, and Flax variables; the same in every worker."""
  rng = np.random.default_rng(0)
  shape = (args.batch, args.resolution, args.resolution, args.channels)
  images = rng.uniform(-1.0, 1.0, shape).astype(np.float32)
  targets = rng.integers(0, NUM_CLASSES, args.batch).astype(np.int32)
  model = _model(args)
  variables = jax.jit(functools.partial(model.init, train=False))(
    jax.random.key(0), jnp.asarray(images)
  )
  return images, targets, model, variables


def flax_forward_stepper(args):
  images, _, model, variables = _batch(args)
  forward = jax.jit(lambda v, x: model.apply(v, x, train=False))
  images = jnp.asarray(images)
  return lambda: forward(variables, images).block_until_ready()


def flax_lrp_stepper(args, composite):
  from xaijax import lrp  # pylint: disable=import-outside-toplevel

  images, targets, model, variables = _batch(args)
  images, targets = jnp.asarray(images), jnp.asarray(targets)
  return lambda: lrp.explain(
    model, variables, images, targets, composite=composite
  ).block_until_ready()


def _torch_side(args):
  from xaijax.testing import torch_reference  # pylint: disable=import-outside-toplevel

  torch, zennit = torch_reference.import_zennit()
  if args.torch_threads:
    torch.set_num_threads(args.torch_threads)
  images, targets, _, variables = _batch(args)
  model = torch_reference.torch_mobilenet(
    torch, NUM_CLASSES, args.alpha, args.channels, args.resolution
  ).eval()
  torch_reference.load_flax_weights(torch, model, variables)
  return torch, zennit, torch_reference, model, images, targets


def torch_forward_stepper(args):
  torch, _, _, model, images, _ = _torch_side(args)
  x = torch.tensor(np.transpose(images, (0, 3, 1, 2)))

  def step():
    with torch.no_grad():
      model(x)

  return step


def zennit_lrp_stepper(args, composite):
  torch, zennit, torch_reference, model, images, targets = _torch_side(args)
  zennit_composite = torch_reference.zennit_composite(zennit, composite)
  return lambda: torch_reference.zennit_relevance(
    torch, zennit, model, zennit_composite, images, targets
  )


def _versions(names):
  versions = {}
  for name in names:
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
      versions[name] = importlib.metadata.version(name)
  return versions


def _agreement(args, composite):
  """Max |ours - Zennit| / max |Zennit| over the benchmark batch (float32 on both sides)."""
  from xaijax import lrp  # pylint: disable=import-outside-toplevel

  torch, zennit, torch_reference, torch_model, images, targets = _torch_side(args)
  _, _, model, variables = _batch(args)
  ours = np.asarray(
    lrp.explain(model, variables, jnp.asarray(images), jnp.asarray(targets), composite=composite)
  )
  theirs = torch_reference.zennit_relevance(
    torch, zennit, torch_model, torch_reference.zennit_composite(zennit, composite), images, targets
  )
  return float(np.max(np.abs(ours - theirs)) / np.max(np.abs(theirs)))


def run_lrp(args) -> None:
  composites = [c for c in args.composites.split(',') if c]
  factories = {'flax_mobilenet_forward': flax_forward_stepper}
  for composite in composites:
    factories[f'flax_lrp_{composite}'] = functools.partial(flax_lrp_stepper, composite=composite)
  if args.reference == 'zennit':
    from xaijax.testing import torch_reference  # pylint: disable=import-outside-toplevel

    torch_reference.import_zennit()  # fail early, before any worker starts
    factories['torch_mobilenet_forward'] = torch_forward_stepper
    for composite in composites:
      factories[f'zennit_lrp_{composite}'] = functools.partial(
        zennit_lrp_stepper, composite=composite
      )
  seconds = time_interleaved(factories, args, args.warmup, args.repeats, args.steps)
  versions = _versions(['jax', 'jaxlib', 'flax', 'torch', 'zennit'])
  for name, per_step in seconds.items():
    forward = 'flax_mobilenet_forward' if name.startswith('flax') else 'torch_mobilenet_forward'
    record = {
      'name': name,
      'items_per_s': round(args.batch / per_step['wall'], 3),
      'seconds_per_step': round(per_step['wall'], 5),
      'cpu_seconds_per_step': round(per_step['cpu'], 5),
      'vs_forward': round(per_step['wall'] / seconds[forward]['wall'], 3),
    }
    for key in (
      'resolution',
      'alpha',
      'batch',
      'channels',
      'repeats',
      'steps',
      'keep_freed_memory',
    ):
      record[key] = getattr(args, key)
    if name.startswith('flax'):
      record.update(
        depthwise=args.depthwise, pointwise=args.pointwise, device=jax.devices()[0].platform
      )
    else:
      record.update(device='cpu', threads=args.torch_threads or 'default')
    record['versions'] = versions
    emit(record)
  if args.check_agreement and args.reference == 'zennit':
    for composite in composites:
      emit(
        {
          'name': f'agreement_{composite}',
          'max_abs_difference_over_max_abs': _agreement(args, composite),
          'resolution': args.resolution,
          'alpha': args.alpha,
          'batch': args.batch,
        }
      )


def add_lrp(subparsers) -> None:
  parser = subparsers.add_parser(
    'lrp', help='LRP heatmaps/s for MobileNet against its forward pass (and Zennit).'
  )
  parser.add_argument('--resolution', type=int, default=224)
  parser.add_argument('--alpha', type=float, default=1.0)
  parser.add_argument('--batch', type=int, default=16)
  parser.add_argument('--channels', type=int, default=1, choices=(1, 3))
  parser.add_argument(
    '--composites', default='epsilon', help='comma-separated names from xaijax.lrp.COMPOSITES'
  )
  parser.add_argument('--depthwise', choices=('shifted', 'xla'), default='shifted')
  parser.add_argument('--pointwise', choices=('dot', 'xla'), default='dot')
  parser.add_argument(
    '--reference',
    choices=('none', 'zennit'),
    default='none',
    help='also time PyTorch + Zennit on the same network and weights',
  )
  parser.add_argument(
    '--check-agreement',
    action='store_true',
    help='report max |ours - Zennit| / max |Zennit| on the benchmark batch',
  )
  parser.add_argument('--torch-threads', type=int, default=0)
  parser.add_argument(
    '--keep-freed-memory',
    action='store_true',
    help='glibc malloc keeps freed memory in every worker (see benchmark.py)',
  )
  parser.add_argument('--warmup', type=int, default=2)
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--steps', type=int, default=2, help='batches per timed repeat')
  parser.set_defaults(run=run_lrp)
