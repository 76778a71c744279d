"""Running the seeds: all in one vmapped program per epoch (sharded over devices), or one by one.

Two strategies (`config.train.seed_strategy`), with the same compiled epoch program and the same
numbers per seed:

* 'vmap': all seeds in one program per epoch over a mesh of every device of every process
  (`jax.devices()`; several processes: xaijax/distributed.py). The mesh has two axes, 'seeds' and
  'data': the seed axis is sharded over 'seeds'; each seed's batch is split over 'data' (a size
  of 1 unless there are fewer seeds than devices, or `train.data_parallel` asks). When the number
  of seeds is not a multiple of the 'seeds' axis, the seed axis is padded with inactive copies of
  the last seed, whose results are dropped. Once early stopping has ended enough seeds, the epoch
  runs on the active ones alone, gathered into a smaller program (`repack_stopped_seeds`).
* 'loop': the program runs on a seed axis of 1, once per seed still training, one after another
  (on one device). Stopped seeds cost nothing.

Across these layouts a seed's numbers agree up to the order of float sums: XLA blocks a batched
convolution by how many seeds one device holds, and a batch split over devices sums its gradients
and BatchNorm statistics across them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import dataclasses
import functools
import math

from flax import traverse_util
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec
import numpy as np

from xaijax import distributed
from xaijax.training.per_seed import Settings, init_seed_state, run_epoch

SEED_AXIS = 'seeds'
DATA_AXIS = 'data'


def run_epoch_all_seeds(state, train_data, validation_data, epoch, *, settings: Settings):
  """`run_epoch` vmapped over the leading seed axis of `state` (data shared by all seeds).

  With `settings.batch_sharding`, the seed axis is named SEED_AXIS for the compiler, so a seed's
  batch is split over DATA_AXIS within the devices holding that seed.
  """
  spmd_axis = SEED_AXIS if settings.batch_sharding is not None else None
  return jax.vmap(
    functools.partial(run_epoch, settings=settings),
    in_axes=(0, None, None, None),
    spmd_axis_name=spmd_axis,
  )(state, train_data, validation_data, epoch)


def init_seed_states(
  seeds: Sequence[int],
  learning_rates,
  sample_images,
  *,
  settings: Settings,
  max_epochs: int,
  active=None,
  sharding: NamedSharding | None = None,
) -> dict:
  """Stacked train states, one per seed value (seed s always gives the same state).

  With `sharding`, each device initialises the seeds it holds (the result has that sharding).
  """
  keys = np.stack([np.asarray(jax.random.PRNGKey(seed)) for seed in seeds])
  arrays = (
    keys,
    np.asarray(learning_rates, np.float32),
    np.ones(len(seeds), bool) if active is None else np.asarray(active, bool),
  )
  sample_images = np.asarray(sample_images)
  if sharding is not None:
    arrays = jax.device_put(arrays, sharding)
    sample_images = jax.device_put(sample_images, NamedSharding(sharding.mesh, PartitionSpec()))
  return _init_program(settings, max_epochs, sharding)(*arrays, sample_images)


# Compiled programs are cached per Settings (and devices), so training several cases or
# resuming in one process compiles once.
@functools.lru_cache(maxsize=16)
def _init_program(settings: Settings, max_epochs: int, sharding: NamedSharding | None):
  def init(key, learning_rate, active, sample_images):
    return init_seed_state(
      key, learning_rate, sample_images, settings=settings, max_epochs=max_epochs, active=active
    )

  return jax.jit(jax.vmap(init, in_axes=(0, 0, 0, None)), out_shardings=sharding)


@functools.lru_cache(maxsize=16)
def epoch_program(settings: Settings, seed_sharding: NamedSharding | None = None):
  """`run_epoch_all_seeds`, jitted; with `seed_sharding`, its seed axis sharded that way."""
  run = functools.partial(run_epoch_all_seeds, settings=settings)
  if seed_sharding is None:
    return jax.jit(run)
  return jax.jit(run, out_shardings=(seed_sharding, seed_sharding))


@functools.lru_cache(maxsize=16)
def packed_epoch_program(settings: Settings, seed_sharding: NamedSharding):
  """One epoch of the seeds at `slots` alone: gathered into a smaller seed axis, run, put back.

  `(state, slots, train_data, validation_data, epoch) -> (state, metrics)` with the state and
  metrics of every slot, those outside `slots` untouched (metrics: NaN, not trained). Compiles
  once per number of slots. The state is donated: it is updated in place.
  """

  def run(state, slots, train_data, validation_data, epoch):
    packed = jax.tree.map(lambda x: x[slots], state)
    packed = jax.lax.with_sharding_constraint(packed, seed_sharding)
    packed, packed_metrics = run_epoch_all_seeds(
      packed, train_data, validation_data, epoch, settings=settings
    )
    state = jax.tree.map(lambda x, p: x.at[slots].set(p), state, packed)
    num_slots = state['early_stopping']['active'].shape[0]
    idle = {
      'train_loss': jnp.full((num_slots,) + packed_metrics['train_loss'].shape[1:], jnp.nan),
      'validation_f1': jnp.full((num_slots,), jnp.nan),
      'trained': jnp.zeros((num_slots,), bool),
    }
    metrics = jax.tree.map(lambda x, p: x.at[slots].set(p.astype(x.dtype)), idle, packed_metrics)
    return state, metrics

  return jax.jit(run, out_shardings=(seed_sharding, seed_sharding), donate_argnums=0)


def mesh_shape(
  num_devices: int, num_seeds: int, batch_size: int, data_parallel: int = 0
) -> tuple[int, int]:
  """(devices along 'seeds', devices along 'data') for `num_seeds` seeds on `num_devices`.

  `data_parallel` > 0 fixes the 'data' size. 0 chooses: with at least as many seeds as devices,
  every device holds its own seeds (no batch is split, no communication). With fewer, the
  layout with the fewest seed slots (so the least work per device), among those whose 'data'
  size divides the batch; on a tie, the larger 'seeds' axis (less communication).
  """
  if data_parallel:
    if num_devices % data_parallel or batch_size % data_parallel:
      raise ValueError(
        f'config.train.data_parallel = {data_parallel} must divide the number of devices '
        f'({num_devices}) and config.train.batch_size ({batch_size}).'
      )
    return num_devices // data_parallel, data_parallel
  if num_seeds >= num_devices:
    return num_devices, 1
  layouts = [
    (math.ceil(num_seeds / seeds) * seeds, -seeds)
    for seeds in range(1, num_devices + 1)
    if num_devices % seeds == 0 and batch_size % (num_devices // seeds) == 0
  ]
  seeds = -min(layouts)[1]  # never empty: seeds = num_devices has a 'data' size of 1
  return seeds, num_devices // seeds


def packed_slot_count(num_active: int, seed_devices: int, num_slots: int) -> int:
  """Slots of the program that runs `num_active` seeds once others have stopped: a power of two
  per device along 'seeds' (so few sizes, few compilations), never more than `num_slots`."""
  per_device = math.ceil(max(num_active, 1) / seed_devices)
  return min(num_slots, seed_devices * 2 ** math.ceil(math.log2(per_device)))


class _SeedRunner:
  """What both runners share: the seed states, laid out as the runner's `seed_sharding` says."""

  settings: Settings
  seed_sharding: NamedSharding | None = None

  def init_states(self, seeds, learning_rates, sample_images, *, max_epochs: int, active):
    return init_seed_states(
      seeds,
      learning_rates,
      sample_images,
      settings=self.settings,
      max_epochs=max_epochs,
      active=active,
      sharding=self.seed_sharding,
    )


class VmapSeeds(_SeedRunner):
  """All seeds in one program per epoch over a ('seeds', 'data') mesh of `devices`.

  `num_slots` is the seed axis length: the seeds, padded to a multiple of the 'seeds' axis.
  """

  def __init__(
    self,
    settings: Settings,
    devices: Sequence[jax.Device],
    num_seeds: int,
    *,
    data_parallel: int = 0,
    repack_stopped_seeds: bool = True,
  ):
    self.num_devices = len(devices)
    self.seed_devices, self.data_devices = mesh_shape(
      len(devices), num_seeds, settings.batch_size, data_parallel
    )
    self.num_slots = math.ceil(num_seeds / self.seed_devices) * self.seed_devices
    self.mesh = Mesh(
      np.asarray(devices).reshape(self.seed_devices, self.data_devices), (SEED_AXIS, DATA_AXIS)
    )
    self.seed_sharding = NamedSharding(self.mesh, PartitionSpec(SEED_AXIS))
    self.replicated = NamedSharding(self.mesh, PartitionSpec())
    if self.data_devices > 1:
      settings = dataclasses.replace(
        settings, batch_sharding=NamedSharding(self.mesh, PartitionSpec(DATA_AXIS))
      )
    self.settings = settings
    self.repack_stopped_seeds = repack_stopped_seeds
    self.slots_run = 0  # seed-epochs computed, padding and stopped seeds included
    self._run = epoch_program(settings, self.seed_sharding)

  def place_state(self, state):
    return jax.device_put(state, self.seed_sharding)

  def place_data(self, data):
    return jax.device_put(data, self.replicated)

  def run_epoch(self, state, train_data, validation_data, epoch):
    epoch = jax.device_put(np.int32(epoch), self.replicated)
    slots = self.num_slots
    if self.repack_stopped_seeds:
      active = distributed.fetch(state['early_stopping']['active'])
      slots = packed_slot_count(int(active.sum()), self.seed_devices, self.num_slots)
    self.slots_run += slots
    if slots == self.num_slots:
      return self._run(state, train_data, validation_data, epoch)
    # The active seeds first, then stopped ones as padding: these stay as they are, so writing
    # them back changes nothing.
    order = np.concatenate([np.flatnonzero(active), np.flatnonzero(~active)])[:slots]
    program = packed_epoch_program(self.settings, self.seed_sharding)
    return program(
      state,
      jax.device_put(order.astype(np.int32), self.replicated),
      train_data,
      validation_data,
      epoch,
    )


class LoopSeeds(_SeedRunner):
  """One seed at a time (seed axis of 1), skipping seeds that have stopped."""

  num_devices = seed_devices = data_devices = 1

  def __init__(self, settings: Settings, num_seeds: int, num_steps: int):
    self.num_slots = num_seeds
    self.settings = settings
    self.slots_run = 0
    self._run = epoch_program(settings, None)
    self._idle_metrics = {
      'train_loss': jnp.full((1, num_steps), jnp.nan, jnp.float32),
      'validation_f1': jnp.full((1,), jnp.nan, jnp.float32),
      'trained': jnp.zeros((1,), bool),
    }

  def place_state(self, state):
    return jax.device_put(state, jax.local_devices()[0])

  def place_data(self, data):
    return jax.device_put(data, jax.local_devices()[0])

  def run_epoch(self, state, train_data, validation_data, epoch):
    active = np.asarray(state['early_stopping']['active'])
    states, metrics = [], []
    for index in range(active.shape[0]):
      seed_state = jax.tree.map(lambda x, i=index: x[i : i + 1], state)
      seed_metrics = self._idle_metrics
      if active[index]:
        self.slots_run += 1
        seed_state, seed_metrics = self._run(
          seed_state, train_data, validation_data, jnp.int32(epoch)
        )
      states.append(seed_state)
      metrics.append(seed_metrics)
    concatenate = lambda *parts: jnp.concatenate(parts)
    return jax.tree.map(concatenate, *states), jax.tree.map(concatenate, *metrics)


def make_runner(train_config, settings: Settings, num_seeds: int, num_steps: int):
  """The runner `config.train.seed_strategy` names, on the devices `config.train.devices` asks."""
  strategy = train_config.seed_strategy
  if strategy == 'loop':
    if jax.process_count() > 1:
      raise ValueError(
        "config.train.seed_strategy='loop' runs on one device; a run over "
        f"{jax.process_count()} processes needs 'vmap'."
      )
    return LoopSeeds(settings, num_seeds, num_steps)
  if strategy != 'vmap':
    raise ValueError(f"config.train.seed_strategy must be 'vmap' or 'loop', got {strategy!r}.")
  devices = jax.devices()  # every process's
  requested = int(train_config.devices)
  if requested:
    if requested > len(devices):
      raise ValueError(
        f'config.train.devices = {requested}, but only {len(devices)} devices exist.'
      )
    if jax.process_count() > 1 and requested != len(devices):
      raise ValueError(
        f'config.train.devices = {requested}: a run over {jax.process_count()} processes '
        f'uses all {len(devices)} devices (set 0).'
      )
    devices = devices[:requested]
  return VmapSeeds(
    settings,
    devices,
    num_seeds,
    data_parallel=int(train_config.data_parallel),
    repack_stopped_seeds=bool(train_config.repack_stopped_seeds),
  )


def start_from(state: dict, initial_variables: Mapping) -> dict:
  """Stacked `state` whose seeds all start from `initial_variables` where those have an entry.

  For pretrained weights: the entries given (say, everything but the head) replace every seed's
  random initialisation; the rest keeps it, so seeds still differ there, in data order and in
  dropout. An entry that already has the leading seed axis gives each seed its own start (say,
  each seed's own trained model, to fine-tune).
  """
  state = dict(state)
  for collection in ('params', 'batch_stats'):
    given = traverse_util.flatten_dict(dict(initial_variables.get(collection, {})), sep='/')
    current = traverse_util.flatten_dict(state[collection], sep='/')
    unknown = sorted(set(given) - set(current))
    if unknown:
      raise ValueError(
        f'initial_variables has {collection} the model does not: {unknown[:5]}'
        f'{" ..." if len(unknown) > 5 else ""}. Check the model config '
        '(alpha, num_classes) against the weights file.'
      )
    for path, value in given.items():
      value = np.asarray(value, current[path].dtype)
      slots = current[path].shape[0]
      if value.ndim == current[path].ndim and 0 < value.shape[0] <= slots:
        # One value per seed; padding slots repeat the last seed, as their states do.
        value = np.concatenate([value, np.repeat(value[-1:], slots - value.shape[0], axis=0)])
      if value.shape == current[path].shape:
        current[path] = value
        continue
      if value.shape != current[path].shape[1:]:
        raise ValueError(
          f'initial_variables {collection}/{path} has shape {value.shape}, the '
          f'model expects {current[path].shape[1:]}.'
        )
      # Placed as the state is (over every process's devices, maybe).
      current[path] = jax.device_put(
        np.broadcast_to(value, current[path].shape), current[path].sharding
      )
    state[collection] = traverse_util.unflatten_dict(current, sep='/')
  state['best'] = {'params': state['params'], 'batch_stats': state['batch_stats']}
  return state
