"""`benchmark.py repack|processes`: whole seed sweeps of the real trainer, timed end to end.

  python scripts/benchmark.py repack --seeds 8 --epochs 12 --patience 2
  python scripts/benchmark.py processes --processes 1,2 --seeds-per-process 2 --pin
  python scripts/benchmark.py mesh --seeds 2 --data-parallel 1,0   # several devices

`repack`: a sweep whose seeds stop at different epochs (learning rates spread over the seeds),
trained with and without `train.repack_stopped_seeds`, interleaved; says the seed-epochs each
computed, the wall times, and whether every seed got the same numbers.

`mesh`: fewer seeds than devices, with the seeds alone on the mesh (`--data-parallel 1`: idle
devices) against each seed's batch split over the rest (0: automatic), interleaved.

`processes`: the same sweep on N local processes (jax.distributed over localhost, one CPU device
each, Gloo between them) with N times the seeds, so equal work per device: ideal scaling keeps
the wall time of one process. With `--pin` each process gets a core of its own (also the
one-process run), so they do not share one; other load on the machine still hits all of them.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

from xaijax.benchmarks.timing import emit, time_interleaved

SEED_STOP_KEYS = ('stopped_epoch', 'best_epoch', 'best_validation_f1', 'epochs_run')


def sweep_config(args, seeds: int, repack: bool):
  """The case config of the benchmark's sweep (CPU-sized MobileNet on the embedded data)."""
  from xaijax import case_config

  config = case_config.get_config(
    f'resolution={args.resolution},alpha={args.alpha},class_scale={args.class_scale},'
    f'seeds={seeds},epochs={args.epochs},batch_size={args.batch}'
  )
  config.model.depthwise_impl = args.depthwise
  config.train.update(
    patience=args.patience,
    progress_bar=False,
    tensorboard=False,
    repack_stopped_seeds=repack,
    learning_rate_per_seed=[float(r) for r in np.geomspace(args.lr_min, args.lr_max, seeds)],
  )
  if args.data_dir:
    config.data.data_dir = args.data_dir
  return config


def _train_splits(config):
  from xaijax import data

  splits = data.load_splits(config.data, splits=('train', 'validation'))
  return {name: {k: s[k] for k in ('image', 'label')} for name, s in splits.items()}


# ------------------------------------------------------------------------------------ repack


def _repack_sweeper(args, repack: bool):
  from xaijax.training import classifier

  config = sweep_config(args, args.seeds, repack)
  splits = _train_splits(config)
  runs = iter(range(10**6))
  folder = os.path.join(args.out, 'repack' if repack else 'no_repack')

  def sweep_once():
    workdir = os.path.join(folder, f'run_{next(runs)}')
    shutil.rmtree(workdir, ignore_errors=True)
    classifier.train_classifier(config, splits, workdir)

  return sweep_once


def run_repack(args) -> None:
  _train_splits(sweep_config(args, args.seeds, True))  # build the dataset once, before workers
  seconds = time_interleaved(
    {
      'repack': functools.partial(_repack_sweeper, repack=True),
      'no_repack': functools.partial(_repack_sweeper, repack=False),
    },
    args,
    warmup=1,  # compiles every slot count the sweep goes through
    repeats=args.repeats,
    steps=1,
  )
  results = {}
  for variant in seconds:
    folder = os.path.join(args.out, variant)
    last = max(os.listdir(folder), key=lambda name: int(name.split('_')[1]))
    with open(os.path.join(folder, last, 'train_result.json')) as f:
      results[variant] = json.load(f)
  packed, full = results['repack'], results['no_repack']
  curves = [np.asarray(r['validation_f1'], float) for r in (packed, full)]
  losses = [np.asarray(r['train_loss'], float) for r in (packed, full)]
  same_decisions = all(packed[key] == full[key] for key in SEED_STOP_KEYS)
  emit(
    {
      'name': 'sweep_repack_stopped_seeds',
      'seeds': args.seeds,
      'stopped_epoch': full['stopped_epoch'],
      'epochs_run': full['epochs_run'],
      'seed_epochs_trained': int(np.isfinite(curves[1]).sum()),
      'slot_epochs_computed': {v: results[v]['slot_epochs_computed'] for v in results},
      'computed_share_saved': round(
        1 - packed['slot_epochs_computed'] / full['slot_epochs_computed'], 3
      ),
      'seconds_per_sweep': {v: round(s['wall'], 2) for v, s in seconds.items()},
      'cpu_seconds_per_sweep': {v: round(s['cpu'], 2) for v, s in seconds.items()},
      'wall_time_saved': round(1 - seconds['repack']['wall'] / seconds['no_repack']['wall'], 3),
      'same_stops_and_best_epochs': same_decisions,
      'validation_f1_max_difference': float(np.nanmax(np.abs(curves[0] - curves[1]))),
      'train_loss_max_difference': float(np.nanmax(np.abs(losses[0] - losses[1]))),
      **_settings(args),
    }
  )


# -------------------------------------------------------------------------------------- mesh


def _mesh_sweeper(args, data_parallel: int):
  from xaijax.training import classifier

  config = sweep_config(args, args.seeds, True)
  config.train.data_parallel = data_parallel
  splits = _train_splits(config)
  folder = tempfile.mkdtemp(prefix=f'xaijax_mesh_{data_parallel}_')
  runs = iter(range(10**6))

  def sweep_once():
    workdir = os.path.join(folder, f'run_{next(runs)}')
    classifier.train_classifier(config, splits, workdir)
    shutil.rmtree(workdir)

  return sweep_once


def run_mesh(args) -> None:
  import jax

  from xaijax.training import seed_runners

  _train_splits(sweep_config(args, args.seeds, True))
  factories = {
    f'data_parallel_{value}': functools.partial(_mesh_sweeper, data_parallel=value)
    for value in args.data_parallel
  }
  seconds = time_interleaved(factories, args, warmup=1, repeats=args.repeats, steps=1)
  for name, timing in seconds.items():
    asked = int(name.rsplit('_', 1)[1])
    seed_devices, data_devices = seed_runners.mesh_shape(
      jax.device_count(), args.seeds, args.batch, asked
    )
    emit(
      {
        'name': 'sweep_mesh',
        'data_parallel_asked': asked,
        'mesh': {'seeds': seed_devices, 'data': data_devices},
        'devices': jax.device_count(),
        'seeds': args.seeds,
        'seconds_per_sweep': round(timing['wall'], 2),
        'cpu_seconds_per_sweep': round(timing['cpu'], 2),
        'vs_first': round(timing['wall'] / seconds[next(iter(seconds))]['wall'], 3),
        'platform': jax.devices()[0].platform,
        **_settings(args),
      }
    )


# --------------------------------------------------------------------------------- processes


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def process_worker() -> None:
  """One process of a `processes` run; its settings come as JSON in XAIJAX_SWEEP_WORKER."""
  job = json.loads(os.environ['XAIJAX_SWEEP_WORKER'])
  if job['core'] is not None:
    os.sched_setaffinity(0, {job['core']})  # before XLA sizes its thread pool
  import argparse

  import jax

  from xaijax import distributed
  from xaijax.training import classifier

  args = argparse.Namespace(**job['args'])
  config = sweep_config(args, job['seeds'], True)
  if job['processes'] > 1:
    config.distributed.update(
      initialize=True,
      coordinator_address=job['coordinator'],
      num_processes=job['processes'],
      process_id=job['process_id'],
    )
  distributed.initialize(config.distributed)
  splits = _train_splits(config)
  seconds = []
  for run in range(2):  # the first compiles, the second runs compiled programs
    start, cpu_start = time.perf_counter(), time.process_time()
    classifier.train_classifier(config, splits, os.path.join(job['workdir'], f'run_{run}'))
    seconds.append(time.perf_counter() - start)
  cpu_seconds = time.process_time() - cpu_start  # this process's CPU time in the second sweep
  if distributed.is_writer():
    record = {
      'seconds': seconds,
      'cpu_seconds': cpu_seconds,
      'devices': jax.device_count(),
      'images_per_epoch': len(splits['train']['label']) // args.batch * args.batch,
    }
    print('SWEEP ' + json.dumps(record), flush=True)


def _run_processes(args, processes: int, workdir: str) -> dict:
  coordinator = f'localhost:{_free_port()}'
  cores = sorted(os.sched_getaffinity(0))
  launched = []
  for index in range(processes):
    job = {
      'args': {k: v for k, v in vars(args).items() if k not in ('run', 'processes')},
      'seeds': processes * args.seeds_per_process,
      'processes': processes,
      'process_id': index,
      'coordinator': coordinator,
      'workdir': workdir,
      'core': cores[index % len(cores)] if args.pin else None,
    }
    env = dict(os.environ, XAIJAX_SWEEP_WORKER=json.dumps(job))
    if args.platform == 'gpu':
      env['CUDA_VISIBLE_DEVICES'] = str(index)  # one GPU per process, also for one process
    else:
      env.update(JAX_PLATFORMS='cpu')
      env.pop('XLA_FLAGS', None)  # one CPU device per process
    launched.append(
      subprocess.Popen(
        [sys.executable, '-c', 'from xaijax.benchmarks import sweep; sweep.process_worker()'],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
      )
    )
  outputs = [process.communicate()[0] for process in launched]
  if any(process.returncode for process in launched):
    raise RuntimeError('a sweep process failed:\n' + '\n---\n'.join(o[-3000:] for o in outputs))
  line = next(line for line in outputs[0].splitlines() if line.startswith('SWEEP '))
  return json.loads(line[len('SWEEP ') :])


def run_processes(args) -> None:
  _train_splits(sweep_config(args, 1, True))  # build the dataset once, before the workers
  samples = {n: [] for n in args.processes}
  root = tempfile.mkdtemp(prefix='xaijax_processes_', dir=args.out or None)
  for repeat in range(args.repeats):  # the process counts take turns
    for processes in args.processes:
      workdir = os.path.join(root, f'{processes}_{repeat}')
      samples[processes].append(_run_processes(args, processes, workdir))
      shutil.rmtree(workdir, ignore_errors=True)
  one = min(args.processes)
  baseline = float(np.median([s['seconds'][1] for s in samples[one]]))
  for processes, runs in samples.items():
    compiled = float(np.median([s['seconds'][1] for s in runs]))
    emit(
      {
        'name': 'sweep_processes',
        'processes': processes,
        'devices': runs[0]['devices'],
        'seeds': processes * args.seeds_per_process,
        'seconds_per_sweep': round(compiled, 2),
        # Process 0's CPU time in that sweep: the work one process does, whatever else runs.
        'cpu_seconds_per_sweep_per_process': round(
          float(np.median([s['cpu_seconds'] for s in runs])), 2
        ),
        'seconds_per_sweep_with_compilation': round(
          float(np.median([s['seconds'][0] for s in runs])), 2
        ),
        # Equal work per device: 1.0 is perfect scaling; the target is at most 1.3.
        f'time_vs_{one}_process': round(compiled / baseline, 3),
        'images_per_s': round(
          processes * args.seeds_per_process * args.epochs * runs[0]['images_per_epoch'] / compiled,
          1,
        ),
        'pinned_to_own_core': args.pin,
        'load_average_1min': round(os.getloadavg()[0], 2),
        **_settings(args),
      }
    )


# ------------------------------------------------------------------------------------ parsers


def _settings(args) -> dict:
  keys = ('resolution', 'alpha', 'class_scale', 'batch', 'epochs', 'patience', 'repeats')
  return {key: getattr(args, key) for key in keys}


def _add_sweep_arguments(parser) -> None:
  parser.add_argument('--resolution', type=int, default=32)
  parser.add_argument('--alpha', type=float, default=0.25)
  parser.add_argument('--class-scale', type=float, default=0.15, help='times GC10-DET per class')
  parser.add_argument('--batch', type=int, default=16)
  parser.add_argument('--epochs', type=int, default=12)
  parser.add_argument('--patience', type=int, default=2)
  parser.add_argument('--lr-min', type=float, default=1e-4, help='learning rates spread over')
  parser.add_argument('--lr-max', type=float, default=1e-2, help='the seeds (geometric)')
  parser.add_argument('--depthwise', choices=('shifted', 'xla'), default='shifted')
  parser.add_argument('--data-dir', default='', help="TFDS data; '' is the default cache")
  parser.add_argument('--repeats', type=int, default=3)


def add_repack(subparsers) -> None:
  parser = subparsers.add_parser(
    'repack', help='a sweep whose seeds stop apart, with and without repacking stopped seeds'
  )
  _add_sweep_arguments(parser)
  parser.add_argument('--seeds', type=int, default=8)
  parser.add_argument('--out', default=os.path.join('runs', 'benchmark_repack'))
  parser.set_defaults(run=run_repack)


def add_mesh(subparsers) -> None:
  parser = subparsers.add_parser(
    'mesh', help='fewer seeds than devices: seeds alone against a seeds x data mesh'
  )
  _add_sweep_arguments(parser)
  parser.add_argument('--seeds', type=int, default=2)
  parser.add_argument(
    '--data-parallel',
    type=lambda t: [int(v) for v in t.split(',')],
    default=[1, 0],
    help='train.data_parallel values to compare (1: seeds only; 0: automatic)',
  )
  parser.set_defaults(run=run_mesh, patience=1000)


def add_processes(subparsers) -> None:
  parser = subparsers.add_parser(
    'processes', help='one sweep on N local processes (jax.distributed), equal work per device'
  )
  _add_sweep_arguments(parser)
  parser.add_argument('--processes', type=lambda t: [int(v) for v in t.split(',')], default=[1, 2])
  parser.add_argument('--seeds-per-process', type=int, default=2)
  parser.add_argument('--pin', action='store_true', help='each process on a core of its own')
  parser.add_argument(
    '--platform', choices=('cpu', 'gpu'), default='cpu', help='one CPU device or one GPU each'
  )
  parser.add_argument('--out', default='', help='folder for the temporary workdirs')
  parser.set_defaults(run=run_processes, patience=1000)  # nobody stops: equal work throughout
