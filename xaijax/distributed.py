"""One run over several processes: `jax.distributed` set up from the config or the cluster, and who
writes what.

JAX's multi-process runtime (the one TPU pods and multi-node GPU jobs use) makes every process's
devices part of one global device list, so a mesh over `jax.devices()` spans every machine and one
jitted program runs on all of them (each process feeds and reads its own devices' shards). Every
process runs the same Python program; here is what differs between them:

* `initialize(config.distributed)` starts the runtime before anything touches a device;
* `is_writer()`: process 0 alone writes results, reports, figures and metrics files;
* `writer_first(name)`: a stage whose output is a file runs on process 0 first; the others wait,
  then run it too and find its output there (so they read it, not recompute it). This needs the
  workdir on a filesystem every process sees (NFS, Lustre, a GCS mount), as Orbax's multi-process
  checkpoints do anyway;
* `fetch(tree)`: arrays sharded over every process's devices, gathered to NumPy on every process.
"""

from __future__ import annotations

import contextlib
import itertools
import os

from absl import logging
import jax
from jax.experimental import multihost_utils
import numpy as np

# How long processes wait for process 0 at a `writer_first` stage (it may be fitting the GAN
# inpainter): a day. A process that dies is noticed sooner, by the runtime's heartbeat.
DEFAULT_BARRIER_TIMEOUT_S = 24 * 3600
_barrier_timeout_s = DEFAULT_BARRIER_TIMEOUT_S
_barrier_count = itertools.count()

# Environment variables naming the processes of a run (JAX reads the first itself).
COORDINATOR_ENV = 'JAX_COORDINATOR_ADDRESS'
NUM_PROCESSES_ENV = 'JAX_NUM_PROCESSES'
PROCESS_ID_ENV = 'JAX_PROCESS_ID'


def _setting(config_value, env_name: str, unset, kind=str):
  """The config's value, else the environment's, else None."""
  if config_value != unset:
    return config_value
  if env_name in os.environ:
    try:
      return kind(os.environ[env_name])
    except ValueError as error:
      raise ValueError(
        f'environment variable {env_name}={os.environ[env_name]!r} is not a valid {kind.__name__}'
      ) from error
  return None


def wanted(distributed_config) -> bool:
  """Whether this run is one of several processes: the config says so, or the environment names
  a coordinator."""
  return bool(distributed_config.initialize) or COORDINATOR_ENV in os.environ


def initialize(distributed_config) -> None:
  """Starts JAX's multi-process runtime when `wanted`; a second call with it running does nothing.

  Each of `coordinator_address`, `num_processes`, `process_id` comes from the config, else from
  JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID, else from JAX's detection of the
  cluster it runs in (a Cloud TPU pod slice, a SLURM job, an Open MPI launch). Must run before
  anything touches a device.
  """
  global _barrier_timeout_s
  _barrier_timeout_s = int(distributed_config.barrier_timeout_s)
  if not wanted(distributed_config) or jax.distributed.is_initialized():
    return
  coordinator = _setting(distributed_config.coordinator_address, COORDINATOR_ENV, '')
  num_processes = _setting(distributed_config.num_processes, NUM_PROCESSES_ENV, 0, int)
  process_id = _setting(distributed_config.process_id, PROCESS_ID_ENV, -1, int)
  if jax.config.jax_cpu_collectives_implementation in (None, 'none'):
    # CPU devices of different processes talk through Gloo (TCP); without it a program over
    # them cannot run. Only the CPU backend reads this.
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  try:
    jax.distributed.initialize(
      coordinator_address=coordinator,
      num_processes=num_processes,
      process_id=process_id,
      initialization_timeout=int(distributed_config.initialization_timeout_s),
    )
  except (ValueError, RuntimeError) as error:
    raise RuntimeError(
      f'jax.distributed.initialize failed: {error}. Outside a TPU pod slice, SLURM job or Open '
      'MPI launch, give every process config.distributed.coordinator_address (host:port of '
      'process 0), num_processes and its own process_id (or JAX_COORDINATOR_ADDRESS, '
      'JAX_NUM_PROCESSES, JAX_PROCESS_ID); and start it before anything uses a device.'
    ) from error
  logging.info(
    'process %d of %d; devices: %d here, %d in all',
    jax.process_index(),
    jax.process_count(),
    jax.local_device_count(),
    jax.device_count(),
  )


def is_writer() -> bool:
  """True on the one process (0) that writes results, reports, figures and metrics files."""
  return jax.process_index() == 0


def barrier(name: str) -> None:
  """Waits until every process has come here (nothing to wait for with one process)."""
  if jax.process_count() == 1:
    return
  from orbax.checkpoint import multihost  # the barrier of JAX's coordination service

  key = f'xaijax_{name}_{next(_barrier_count)}'.replace(' ', '_')
  multihost.sync_global_processes(
    key, timeout=_barrier_timeout_s, processes=set(range(jax.process_count()))
  )


@contextlib.contextmanager
def writer_first(name: str):
  """Runs the block on process 0, then (after a barrier) on the others.

  For a stage that skips itself when its output file exists: process 0 computes and writes it,
  the others then read it.
  """
  if jax.process_count() == 1:
    yield
    return
  if not is_writer():
    barrier(name)
  yield
  if is_writer():
    barrier(name)


def fetch(tree):
  """NumPy copies of `tree`'s arrays on this process, gathered from every process's devices."""

  def to_numpy(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))

  return jax.tree.map(to_numpy, tree)
