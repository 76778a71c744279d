"""Checkpoints of pytrees (train states, trained variables) with orbax-checkpoint.

Two uses, both on plain pytrees of arrays (dicts, optax states):

* `PeriodicCheckpoints`: the state of a running training saved every few epochs, the last
  `keep` of them kept, so a killed run restarts from the latest one. Orbax writes each checkpoint
  to a temporary folder and renames it when complete, so a kill while saving leaves the previous
  checkpoint as the latest.
* `save_pytree` / `load_pytree`: one finished result (e.g. the best variables of every seed).

Restoring takes a `like` tree (arrays or `jax.ShapeDtypeStruct`s, with shardings) that fixes the
structure, dtypes and devices of the result, so a state sharded over devices comes back sharded.

Over several processes (xaijax/distributed.py), `PeriodicCheckpoints` is used by every process
at once on arrays sharded over all of them: each writes its own devices' shards and process 0
the metadata (Orbax's multi-process protocol; the directory must be one every process sees).
`save_pytree` / `load_pytree` are one process's own business there (process 0 writing a
result, any process reading one): they run without waiting for the others, on host arrays.
"""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp


def _abstract(like):
  """ShapeDtypeStructs (keeping shardings) for every array of `like`."""
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, like)


class PeriodicCheckpoints:
  """The last `keep` checkpoints of a training state in `directory`, numbered by epoch."""

  def __init__(self, directory: str, *, keep: int = 3):
    if keep < 1:
      raise ValueError(f'keep must be at least 1 checkpoint, got {keep}.')
    self.directory = os.path.abspath(directory)
    self._manager = ocp.CheckpointManager(
      self.directory,
      options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
    )

  def latest_epoch(self) -> int | None:
    """Epoch of the newest complete checkpoint, None when there is none."""
    return self._manager.latest_step()

  def epochs(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(self, epoch: int, state) -> None:
    """Starts writing `state` as the checkpoint of `epoch` (in the background)."""
    self._manager.save(epoch, args=ocp.args.StandardSave(state), force=True)

  def restore(self, epoch: int, like):
    """The checkpoint of `epoch`, with the structure, dtypes and shardings of `like`."""
    return self._manager.restore(epoch, args=ocp.args.StandardRestore(_abstract(like)))

  def wait(self) -> None:
    """Blocks until every checkpoint started so far is on disk."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc_info):
    self.close()


def _this_process_alone() -> ocp.options.MultiprocessingOptions:
  """Orbax options for a checkpointer only this process uses (no barriers with the others)."""
  index = jax.process_index()
  return ocp.options.MultiprocessingOptions(primary_host=index, active_processes={index})


def save_pytree(path: str, tree) -> None:
  """Writes `tree` to the folder `path` (replacing what is there) and waits until it is done.

  With several processes, only the calling process writes (call it from one), from host copies.
  """
  if jax.process_count() > 1:
    tree = jax.device_get(tree)  # Orbax writes a process's own arrays only as host arrays
  with ocp.StandardCheckpointer(multiprocessing_options=_this_process_alone()) as checkpointer:
    checkpointer.save(os.path.abspath(path), tree, force=True)
    checkpointer.wait_until_finished()


def load_pytree(path: str, like=None):
  """Reads a tree written by `save_pytree`; `like` fixes structure, dtypes and shardings.

  With several processes the result lies on this process's own devices.
  """
  with ocp.StandardCheckpointer(multiprocessing_options=_this_process_alone()) as checkpointer:
    if like is None:
      return checkpointer.restore(os.path.abspath(path))
    abstract = _abstract(like)
    if jax.process_count() > 1:
      local = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
      abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=local), abstract
      )
    return checkpointer.restore(os.path.abspath(path), abstract)


def pytree_exists(path: str) -> bool:
  """True when `path` holds a completely written checkpoint."""
  # Orbax writes into a temporary folder and renames it at the end; its metadata file marks a
  # checkpoint, so an unrelated folder of that name does not pass.
  path = os.path.abspath(path)
  return os.path.isfile(
    os.path.join(path, '_CHECKPOINT_METADATA')
  ) and ocp.utils.is_checkpoint_finalized(path)
