"""Running the seeds: all in one vmapped program per epoch (sharded over devices), or one by one.

Two strategies (`config.train.seed_strategy`), with the same compiled epoch program and the same
numbers per seed:

* 'vmap': all seeds in one program per epoch; the seed axis is sharded over the local devices
  (a 1-D mesh named 'seeds'). When the number of seeds is not a multiple of the device count,
  the seed axis is padded with inactive copies of the last seed, whose results are dropped.
* 'loop': the program runs on a seed axis of 1, once per seed still training, one after another
  (on one device). Stopped seeds cost nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import functools
import math

from flax import traverse_util
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec
import numpy as np

from xaijax.training.per_seed import Settings, init_seed_state, run_epoch

SEED_AXIS = 'seeds'


def run_epoch_all_seeds(state, train_data, validation_data, epoch, *, settings: Settings):
  """`run_epoch` vmapped over the leading seed axis of `state` (data shared by all seeds)."""
  return jax.vmap(functools.partial(run_epoch, settings=settings), in_axes=(0, None, None, None))(
    state, train_data, validation_data, epoch
  )


def init_seed_states(
  seeds: Sequence[int],
  learning_rates,
  sample_images,
  *,
  settings: Settings,
  max_epochs: int,
  active=None,
) -> dict:
  """Stacked train states, one per seed value (seed s always gives the same state)."""
  keys = jnp.stack([jax.random.PRNGKey(seed) for seed in seeds])
  learning_rates = jnp.asarray(learning_rates, jnp.float32)
  active = jnp.ones(len(seeds), bool) if active is None else jnp.asarray(active, bool)
  return _init_program(settings, max_epochs)(
    keys, learning_rates, active, jnp.asarray(sample_images)
  )


# Compiled programs are cached per Settings (and devices), so training several cases or
# resuming in one process compiles once.
@functools.lru_cache(maxsize=16)
def _init_program(settings: Settings, max_epochs: int):
  def init(key, learning_rate, active, sample_images):
    return init_seed_state(
      key, learning_rate, sample_images, settings=settings, max_epochs=max_epochs, active=active
    )

  return jax.jit(jax.vmap(init, in_axes=(0, 0, 0, None)))


@functools.lru_cache(maxsize=16)
def epoch_program(settings: Settings, devices: tuple | None = None):
  """`run_epoch_all_seeds`, jitted; with `devices`, its seed axis sharded over them."""
  run = functools.partial(run_epoch_all_seeds, settings=settings)
  if devices is None:
    return jax.jit(run)
  seed_sharding = NamedSharding(Mesh(np.asarray(devices), (SEED_AXIS,)), PartitionSpec(SEED_AXIS))
  return jax.jit(run, out_shardings=(seed_sharding, seed_sharding))


class VmapSeeds:
  """All seeds in one program per epoch, the seed axis sharded over `devices`.

  `num_slots` is the seed axis length: the seeds, padded to a multiple of the device count.
  """

  def __init__(self, settings: Settings, devices: Sequence[jax.Device], num_seeds: int):
    self.num_devices = len(devices)
    self.num_slots = math.ceil(num_seeds / len(devices)) * len(devices)
    mesh = Mesh(np.asarray(devices), (SEED_AXIS,))
    self.seed_sharding = NamedSharding(mesh, PartitionSpec(SEED_AXIS))
    self.replicated = NamedSharding(mesh, PartitionSpec())
    self._run = epoch_program(settings, tuple(devices))

  def place_state(self, state):
    return jax.device_put(state, self.seed_sharding)

  def place_data(self, data):
    return jax.device_put(data, self.replicated)

  def run_epoch(self, state, train_data, validation_data, epoch):
    return self._run(state, train_data, validation_data, jnp.int32(epoch))


class LoopSeeds:
  """One seed at a time (seed axis of 1), skipping seeds that have stopped."""

  num_devices = 1

  def __init__(self, settings: Settings, num_seeds: int, num_steps: int):
    self.num_slots = num_seeds
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
    return LoopSeeds(settings, num_seeds, num_steps)
  if strategy != 'vmap':
    raise ValueError(f"config.train.seed_strategy must be 'vmap' or 'loop', got {strategy!r}.")
  devices = jax.local_devices()
  requested = int(train_config.devices)
  if requested:
    if requested > len(devices):
      raise ValueError(
        f'config.train.devices = {requested}, but only {len(devices)} local devices exist.'
      )
    devices = devices[:requested]
  return VmapSeeds(settings, devices, num_seeds)


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
      value = jnp.asarray(value, current[path].dtype)
      slots = current[path].shape[0]
      if value.ndim == current[path].ndim and 0 < value.shape[0] <= slots:
        # One value per seed; padding slots repeat the last seed, as their states do.
        value = jnp.concatenate([value, jnp.repeat(value[-1:], slots - value.shape[0], axis=0)])
      if value.shape == current[path].shape:
        current[path] = value
        continue
      if value.shape != current[path].shape[1:]:
        raise ValueError(
          f'initial_variables {collection}/{path} has shape {value.shape}, the '
          f'model expects {current[path].shape[1:]}.'
        )
      current[path] = jnp.broadcast_to(value, current[path].shape)
    state[collection] = traverse_util.unflatten_dict(current, sep='/')
  state['best'] = {'params': state['params'], 'batch_stats': state['batch_stats']}
  return state
