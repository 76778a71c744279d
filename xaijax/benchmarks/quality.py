"""`benchmark.py quality`: each explanation-quality measure, ours against a loop-based reference
on the same model, images, maps and masks, side by side.

  python scripts/benchmark.py quality                                  # all measures, CPU-sized
  python scripts/benchmark.py quality --measures MPRT,RegionPerturbation --reference quantus

The reference is Quantus 0.6.0 on the same MobileNet in PyTorch with the same weights
(`xaijax.testing.torch_reference`) where quantus and torch are installed
(requirements-reference.txt), else plain per-image loops (`xaijax.testing.quality_reference`,
the model called one image at a time through a compiled JAX function). Ours is what the quality
stage runs (`xaijax.quality.table.QualityTable`), on one seed. The heatmaps are the gradient
maps of the model; MPRT randomises every layer on both sides (Quantus' default), EfficientMPRT
only the whole model. Both sides compute the randomised models' and the other class's
explanations; the trained model's are given (Quantus' `a_batch`), except in MPRT, where Quantus
computes them again and so do we. For each
measure the two sides run in their own worker processes, taking turns (`time_interleaved`); a
`<measure>_ratio` line gives the reference's seconds over ours.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from xaijax.benchmarks.timing import emit, time_interleaved

NUM_CLASSES = 10
# Benchmark name -> the table's measures it times.
MEASURES = {
  'RegionPerturbation': ('RegionPerturbation_MoRF',),
  'FaithfulnessCorrelation': ('FaithfulnessCorrelation',),
  'MPRT': ('MPRT',),
  'EfficientMPRT': ('EfficientMPRT',),
  'RandomLogit': ('RandomLogit',),
  'RelevanceMassAccuracy': ('RelevanceMassAccuracy',),
  'RelevanceRankAccuracy': ('RelevanceRankAccuracy',),
  'PointingGame': ('PointingGame',),
  'AUC': ('AUC',),
  'Sparseness': ('Sparseness',),
  'Complexity': ('Complexity',),
}
_RANDOMISATION = ('MPRT', 'EfficientMPRT', 'RandomLogit')
_FAITHFULNESS = ('RegionPerturbation', 'FaithfulnessCorrelation')


@functools.cache
def _case(resolution: int, alpha: float, images: int):
  """Model, variables, images [N, H, W, 1], targets, gradient maps [N, H, W], masks: the same
  in every worker (fixed seeds)."""
  from xaijax.models.mobilenet import MobileNet  # pylint: disable=import-outside-toplevel
  from xaijax.quality import explainers  # pylint: disable=import-outside-toplevel

  model = MobileNet(num_classes=NUM_CLASSES, alpha=alpha)
  rng = np.random.default_rng(0)
  x = rng.uniform(-1, 1, (images, resolution, resolution, 1)).astype(np.float32)
  variables = jax.jit(functools.partial(model.init, train=False))(jax.random.key(0), x[:1])
  # BatchNorm statistics away from the identity, as a trained model has them.
  keys = iter(jax.random.split(jax.random.key(1), 200))
  variables['batch_stats'] = jax.tree_util.tree_map_with_path(
    lambda path, leaf: jax.random.uniform(
      next(keys), leaf.shape, leaf.dtype, *((-0.3, 0.3) if path[-1].key == 'mean' else (0.5, 2.0))
    ),
    variables['batch_stats'],
  )
  targets = np.asarray(jnp.argmax(model.apply(variables, x, train=False), axis=-1))
  maps = np.asarray(explainers.explain('gradient', model, variables, x, targets, None))[..., 0]
  if not np.any(maps):
    raise RuntimeError('the benchmark model gives all-zero gradient maps; change its seeds')
  masks = np.zeros(maps.shape, np.uint8)
  masks[:, : resolution // 6] = 1
  return model, variables, x, targets, maps, masks


def _settings(args, measure):
  from xaijax import case_config  # pylint: disable=import-outside-toplevel
  from xaijax.quality import table  # pylint: disable=import-outside-toplevel

  quality = case_config.get_config().quality
  quality.update(
    explainers=('gradient',),
    measures=MEASURES[measure],
    images=args.images,
    region_patch=args.patch,
    regions=args.regions,
    faithfulness_runs=args.runs,
    faithfulness_subset=args.subset,
    mprt_cuts=1 if measure == 'EfficientMPRT' else 10_000,  # 10_000: every layer
  )
  return table.Settings.from_config(quality, lrp_epsilon=0.1)


def ours_stepper(args, measure):
  from xaijax.quality import table  # pylint: disable=import-outside-toplevel

  model, variables, x, targets, maps, masks = _case(args.resolution, args.alpha, args.images)
  quality = table.QualityTable(model, _settings(args, measure))
  one_seed = jax.tree.map(lambda leaf: jnp.asarray(leaf)[None], variables)
  x, targets, maps = jnp.asarray(x), jnp.asarray(targets)[None], jnp.asarray(maps)[None]
  if measure in _RANDOMISATION:
    cascade = quality.cascade(one_seed, x, NUM_CLASSES)
    # Quantus' MPRT explains the trained model again even when given a_batch; its RandomLogit and
    # EfficientMPRT use a_batch. So do ours.
    original = None if measure == 'MPRT' else maps
    return lambda: jax.block_until_ready(
      quality.randomisation_scores('gradient', one_seed, x, targets, cascade, original)
    )
  if measure in _FAITHFULNESS:
    return lambda: jax.block_until_ready(quality.faithfulness_scores(one_seed, x, maps, targets))
  return lambda: jax.block_until_ready(quality.map_scores(maps, masks))


def quantus_stepper(args, measure):
  from xaijax.testing import torch_reference  # pylint: disable=import-outside-toplevel

  torch, _ = torch_reference.import_zennit()  # Quantus imports Zennit, which needs the stub
  import quantus  # pylint: disable=import-outside-toplevel

  if args.torch_threads:
    torch.set_num_threads(args.torch_threads)
  _, variables, x, targets, maps, masks = _case(args.resolution, args.alpha, args.images)
  model = torch_reference.torch_mobilenet(torch, NUM_CLASSES, args.alpha, 1, args.resolution)
  torch_reference.load_flax_weights(torch, model, variables)
  model.eval()

  def gradient(model, inputs, targets, **kwargs):
    inputs = torch.tensor(np.asarray(inputs), requires_grad=True)
    logits = model(inputs)
    logits[torch.arange(len(inputs)), torch.as_tensor(np.asarray(targets))].sum().backward()
    return inputs.grad.numpy().sum(axis=1, keepdims=True)

  metric = {
    'RegionPerturbation': lambda: quantus.RegionPerturbation(
      patch_size=args.patch, regions_evaluation=args.regions, disable_warnings=True
    ),
    'FaithfulnessCorrelation': lambda: quantus.FaithfulnessCorrelation(
      nr_runs=args.runs, subset_size=args.subset, return_aggregate=False, disable_warnings=True
    ),
    'MPRT': lambda: quantus.MPRT(return_last_correlation=True, disable_warnings=True),
    'EfficientMPRT': lambda: quantus.EfficientMPRT(disable_warnings=True),
    'RandomLogit': lambda: quantus.RandomLogit(num_classes=NUM_CLASSES, disable_warnings=True),
  }.get(measure, lambda: getattr(quantus, measure)(disable_warnings=True))()
  call = dict(
    model=model,
    x_batch=np.transpose(x, (0, 3, 1, 2)),
    y_batch=targets,
    a_batch=maps[:, None],
    s_batch=masks[:, None].astype(np.float32),
    explain_func=gradient,
    device='cpu',
    batch_size=args.images,
  )
  return lambda: metric(**call)


def loop_stepper(args, measure):
  from xaijax.quality import randomisation  # pylint: disable=import-outside-toplevel
  from xaijax.testing import quality_reference  # pylint: disable=import-outside-toplevel

  model, variables, x, targets, maps, masks = _case(args.resolution, args.alpha, args.images)
  logits = jax.jit(lambda v, image: model.apply(v, image[None], train=False)[0])
  gradient = jax.jit(
    jax.grad(lambda image, v, target: model.apply(v, image[None], train=False)[0, target])
  )

  def predict(image):
    return logits(variables, jnp.asarray(image))

  def explain(v, image, target):
    return np.asarray(gradient(jnp.asarray(image), v, target))[..., 0]

  if measure == 'RegionPerturbation':
    return lambda: quality_reference.region_perturbation(
      predict, x, maps, targets, args.patch, args.regions, 'morf', 'black', True
    )
  if measure == 'FaithfulnessCorrelation':
    rng = np.random.default_rng(0)
    return lambda: quality_reference.faithfulness_correlation(
      predict, x, maps, targets, args.runs, args.subset, 'black', rng
    )
  if measure in ('MPRT', 'EfficientMPRT'):
    fresh = jax.jit(functools.partial(model.init, train=False))(jax.random.key(2), x[:1])
    layers = randomisation.layer_paths(model, variables, x[:1], {'train': False})[::-1]
    cuts = [len(layers)] if measure == 'EfficientMPRT' else range(1, len(layers) + 1)
    return lambda: quality_reference.mprt(
      explain, variables, fresh, layers, cuts, x, targets, _replace_layers
    )
  if measure == 'RandomLogit':
    others = (targets + 1) % NUM_CLASSES
    return lambda: quality_reference.random_logit(explain, variables, x, targets, others)
  if measure in ('Sparseness', 'Complexity'):
    return lambda: quality_reference.complexity(maps)
  return lambda: quality_reference.localisation(maps, masks)


def _replace_layers(variables, fresh, layers):
  """`variables` with the variables of the modules at `layers` (paths) taken from `fresh`."""
  out = jax.tree.map(lambda leaf: leaf, variables)
  for collection in out:
    for path in layers:
      target, source = out[collection], fresh[collection]
      for name in path[:-1]:
        target, source = target.get(name, {}), source.get(name, {})
      if path and path[-1] in target:
        target[path[-1]] = source[path[-1]]
  return out


def _reference(args) -> str:
  if args.reference != 'auto':
    return args.reference
  try:
    from xaijax.testing import torch_reference  # pylint: disable=import-outside-toplevel

    torch_reference.import_zennit()
    import quantus  # pylint: disable=import-outside-toplevel,unused-import # noqa: F401
  except ImportError:
    return 'loop'
  return 'quantus'


def run_quality(args) -> None:
  reference = _reference(args)
  measures = [m for m in args.measures.split(',') if m] if args.measures else list(MEASURES)
  unknown = [m for m in measures if m not in MEASURES]
  if unknown:
    raise SystemExit(f'unknown measures {unknown}; choose from {list(MEASURES)}')
  reference_stepper = quantus_stepper if reference == 'quantus' else loop_stepper
  settings = {
    key: getattr(args, key)
    for key in ('resolution', 'alpha', 'images', 'patch', 'regions', 'runs', 'subset', 'repeats')
  }
  for measure in measures:
    factories = {
      f'xaijax_{measure}': functools.partial(ours_stepper, measure=measure),
      f'{reference}_{measure}': functools.partial(reference_stepper, measure=measure),
    }
    seconds = time_interleaved(factories, args, args.warmup, args.repeats, steps=1)
    for name, per_step in seconds.items():
      emit(
        {
          'name': name,
          'items_per_s': round(args.images / per_step['wall'], 3),
          'seconds_per_step': round(per_step['wall'], 4),
          'cpu_seconds_per_step': round(per_step['cpu'], 4),
          'device': jax.devices()[0].platform if name.startswith('xaijax') else 'cpu',
          **settings,
        }
      )
    ours, theirs = seconds[f'xaijax_{measure}'], seconds[f'{reference}_{measure}']
    emit(
      {
        'name': f'{measure}_ratio',
        'reference': reference,
        'reference_over_ours_wall': round(theirs['wall'] / ours['wall'], 2),
        'reference_over_ours_cpu': round(theirs['cpu'] / max(ours['cpu'], 1e-9), 2),
      }
    )


def add_quality(subparsers) -> None:
  parser = subparsers.add_parser(
    'quality', help='explanation-quality measures against Quantus or a per-image loop'
  )
  parser.add_argument('--measures', default='', help=f'comma-separated from {list(MEASURES)}')
  parser.add_argument(
    '--reference',
    choices=('auto', 'quantus', 'loop'),
    default='auto',
    help='auto: Quantus where quantus and torch are installed, else the per-image loop',
  )
  parser.add_argument('--resolution', type=int, default=64)
  parser.add_argument('--alpha', type=float, default=0.5)
  parser.add_argument('--images', type=int, default=16)
  parser.add_argument('--patch', type=int, default=8)
  parser.add_argument('--regions', type=int, default=16)
  parser.add_argument('--runs', type=int, default=32)
  parser.add_argument('--subset', type=int, default=64)
  parser.add_argument('--torch-threads', type=int, default=0)
  parser.add_argument('--warmup', type=int, default=1)
  parser.add_argument('--repeats', type=int, default=3)
  parser.set_defaults(run=run_quality)
