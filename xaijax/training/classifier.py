"""Train the defect classifier over many seeds at once, with early stopping per seed.

The paper's recipe (Adam, lr 1e-3, beta1 0.9, batch 16, up to 450 epochs, early stopping on the
validation macro-F1 with patience 60 and min delta 0.001, best weights restored) becomes a pure
function of one seed's state, vmapped over a leading seed axis (purejaxrl style):

    run_epoch(state, train_data, validation_data, epoch, settings) -> (state, metrics)

`run_epoch` shuffles the training set with the seed's own key, runs `train_step` over the
batches in a `lax.scan`, scores the validation set (macro-F1, in the program), and updates the
seed's early-stopping state; a seed that has stopped keeps its state unchanged (a mask), so its
best variables stay what they were. The host loop over epochs only moves numbers out: progress
bar, `metrics.jsonl`, checkpoints, the check for a non-finite loss, and the end of the run once
every seed has stopped.

Seeds run in one of two ways (`config.train.seed_strategy`), with the same compiled epoch program:

* 'vmap': all seeds in one program per epoch; the seed axis is sharded over the local devices
  (a 1-D mesh named 'seeds'). When the number of seeds is not a multiple of the device count,
  the seed axis is padded with inactive copies of the last seed, whose results are dropped.
* 'loop': the program runs on a seed axis of 1, once per seed still training, one after another
  (on one device). Stopped seeds cost nothing; on a CPU, where a vmapped convolution is slow,
  this is the faster choice. Same numbers per seed as 'vmap'.

Every epoch drops the last `len(train) % batch_size` images of that epoch's permutation, so all
steps have one static shape (a different remainder is dropped each epoch).

The workdir given to `train_classifier` belongs to it: `run_config.json` (the setup; a rerun with
another one is refused), `metrics.jsonl` (one line per seed and epoch trained), `checkpoints/`
(the whole state of the real seeds, best variables included, every `checkpoint_every` epochs),
and at the end `best_variables/` and `train_result.json`. A rerun returns a finished result
without training, or resumes from the latest checkpoint, with the numbers an uninterrupted run
would have given.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
import dataclasses
import functools
import json
import math
import os
import re

from flax import traverse_util
import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec
import ml_collections
import numpy as np
import optax
import tqdm

from xaijax import checkpoints as checkpoints_lib
from xaijax import evaluation
from xaijax.training.early_stopping import init_early_stopping, update_early_stopping

METRICS_FILE = 'metrics.jsonl'
RUN_CONFIG_FILE = 'run_config.json'
RESULT_FILE = 'train_result.json'
BEST_VARIABLES_DIR = 'best_variables'
CHECKPOINTS_DIR = 'checkpoints'
SEED_AXIS = 'seeds'
_STEP_KEYS = ('params', 'batch_stats', 'opt_state', 'rng')  # the part of a state train_step uses

# Keys of config.train that change how the run executes, not what it computes; a run may be
# resumed with other values for them.
_EXECUTION_ONLY_KEYS = (
  'checkpoint_every',
  'keep_checkpoints',
  'seed_strategy',
  'devices',
  'progress_bar',
  'eval_batch_size',
)


def default_train_config() -> ml_collections.ConfigDict:
  """`config.train` with the paper's settings."""
  return ml_collections.ConfigDict(
    {
      'seeds': 30,  # an int n (seeds 0..n-1) or a list of seed values
      'batch_size': 16,
      'epochs': 450,
      'learning_rate': 1e-3,
      'learning_rate_per_seed': None,  # optional list, one rate per seed, overrides the above
      'b1': 0.9,
      'patience': 60,
      'min_delta': 0.001,
      'seed_strategy': 'vmap',  # or 'loop'
      'devices': 0,  # devices to shard the seed axis over; 0 = all local devices
      'checkpoint_every': 10,  # epochs
      'keep_checkpoints': 3,
      'eval_batch_size': 64,
      'progress_bar': True,
    }
  )


class NonFiniteLossError(FloatingPointError):
  """The training loss of a seed became NaN or infinite."""

  def __init__(self, message: str, *, seed: int, epoch: int, step: int):
    super().__init__(message)
    self.seed = seed
    self.epoch = epoch
    self.step = step


@dataclasses.dataclass(frozen=True)
class Settings:
  """What the pure training functions need besides arrays; bind it with functools.partial."""

  model: nn.Module
  optimizer: optax.GradientTransformation
  preprocess: Callable[[jax.Array], jax.Array]  # uint8 images -> model input
  num_classes: int
  batch_size: int
  patience: int
  min_delta: float


@functools.cache
def make_optimizer(b1: float) -> optax.GradientTransformation:
  """Adam whose learning rate lives in the optimiser state, so every seed can have its own.

  Cached, so equal settings compare equal and reuse their compiled programs.
  """
  return optax.inject_hyperparams(optax.adam)(learning_rate=0.0, b1=b1)


def make_settings(train_config, model: nn.Module, preprocess, num_classes: int) -> Settings:
  return Settings(
    model=model,
    optimizer=make_optimizer(float(train_config.b1)),
    preprocess=preprocess,
    num_classes=num_classes,
    batch_size=int(train_config.batch_size),
    patience=int(train_config.patience),
    min_delta=float(train_config.min_delta),
  )


# ----------------------------------------------------------------------------------------------
# Pure functions of one seed (vmap them over a leading seed axis).


def init_seed_state(
  key, learning_rate, sample_images, *, settings: Settings, max_epochs: int, active=True
) -> dict:
  """A fresh train state for one seed: its own initialisation, data-order and dropout keys."""
  init_key, train_key = jax.random.split(key)
  params_key, dropout_key = jax.random.split(init_key)
  variables = settings.model.init(
    {'params': params_key, 'dropout': dropout_key}, settings.preprocess(sample_images), train=False
  )
  params = variables['params']
  batch_stats = variables.get('batch_stats', {})
  opt_state = settings.optimizer.init(params)
  opt_state = opt_state._replace(
    hyperparams={**opt_state.hyperparams, 'learning_rate': jnp.asarray(learning_rate, jnp.float32)}
  )
  no_history = jnp.full((max_epochs,), jnp.nan, jnp.float32)
  return {
    'params': params,
    'batch_stats': batch_stats,
    'opt_state': opt_state,
    'rng': train_key,
    'best': {'params': params, 'batch_stats': batch_stats},
    'early_stopping': init_early_stopping(active),
    'history': {'train_loss': no_history, 'validation_f1': no_history},
  }


def train_step(state: dict, batch: dict, *, settings: Settings):
  """One Adam step of one seed on `batch = {'image': uint8 [B,H,W,1], 'label': int [B]}`.

  Uses and advances `state['rng']` (dropout); returns `(state, {'loss', 'accuracy'})`.
  """
  rng, dropout_rng = jax.random.split(state['rng'])
  inputs = settings.preprocess(batch['image'])

  def loss_fn(params):
    logits, updates = settings.model.apply(
      {'params': params, 'batch_stats': state['batch_stats']},
      inputs,
      train=True,
      rngs={'dropout': dropout_rng},
      mutable=['batch_stats'],
    )
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch['label']).mean()
    return loss, (logits, updates.get('batch_stats', {}))

  (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state['params'])
  updates, opt_state = settings.optimizer.update(grads, state['opt_state'], state['params'])
  params = optax.apply_updates(state['params'], updates)
  accuracy = (logits.argmax(-1) == batch['label']).mean()
  new_state = {
    **state,
    'params': params,
    'batch_stats': batch_stats,
    'opt_state': opt_state,
    'rng': rng,
  }
  return new_state, {'loss': loss, 'accuracy': accuracy}


def train_epoch(state: dict, train_data: dict, *, settings: Settings):
  """One pass over a fresh permutation of `train_data`; returns `(state, losses [steps])`."""
  num_images = train_data['label'].shape[0]
  num_steps = num_images // settings.batch_size
  rng, permutation_rng = jax.random.split(state['rng'])
  order = jax.random.permutation(permutation_rng, num_images)
  batches = order[: num_steps * settings.batch_size].reshape(num_steps, settings.batch_size)

  def step(carry, indices):
    batch = {'image': train_data['image'][indices], 'label': train_data['label'][indices]}
    return train_step(carry, batch, settings=settings)

  # Only what a step changes goes through the scan; best variables and history stay outside.
  carry = {key: state[key] for key in _STEP_KEYS}
  carry['rng'] = rng
  carry, step_metrics = jax.lax.scan(step, carry, batches)
  return {**state, **carry}, step_metrics['loss']


def validation_macro_f1(variables: dict, eval_data: dict, *, settings: Settings):
  """Macro-F1 on `eval_data = {'image': [B, b, H, W, 1], 'label': [B, b], 'valid': [B, b]}`."""

  def predict_batch(images):
    logits = settings.model.apply(variables, settings.preprocess(images), train=False)
    return logits.argmax(-1)

  predictions = jax.lax.map(predict_batch, eval_data['image'])
  confusion = evaluation.confusion_matrix(
    eval_data['label'], predictions, settings.num_classes, weights=eval_data['valid']
  )
  return evaluation.macro_scores(confusion)['f1']


def run_epoch(state: dict, train_data: dict, validation_data: dict, epoch, *, settings: Settings):
  """Epoch `epoch` (1-based) of one seed: train, score, early-stopping bookkeeping.

  A seed that is no longer active comes back unchanged and reports NaN.
  """
  was_active = state['early_stopping']['active']
  trained, losses = train_epoch(state, train_data, settings=settings)
  variables = {'params': trained['params'], 'batch_stats': trained['batch_stats']}
  f1 = validation_macro_f1(variables, validation_data, settings=settings)
  early_stopping, improved = update_early_stopping(
    state['early_stopping'], f1, epoch, patience=settings.patience, min_delta=settings.min_delta
  )
  trained['best'] = jax.tree.map(
    lambda new, old: jnp.where(improved, new, old), variables, state['best']
  )
  trained['early_stopping'] = early_stopping
  mean_loss = jnp.where(was_active, losses.mean(), jnp.nan)
  reported_f1 = jnp.where(was_active, f1, jnp.nan)
  trained['history'] = {
    'train_loss': state['history']['train_loss'].at[epoch - 1].set(mean_loss),
    'validation_f1': state['history']['validation_f1'].at[epoch - 1].set(reported_f1),
  }
  new_state = jax.tree.map(lambda new, old: jnp.where(was_active, new, old), trained, state)
  metrics = {
    'train_loss': jnp.where(was_active, losses, jnp.nan),
    'validation_f1': reported_f1,
    'trained': was_active,
  }
  return new_state, metrics


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


def prepare_eval_data(split: Mapping[str, np.ndarray], eval_batch_size: int) -> dict:
  """Images and labels padded to whole batches `[B, b, ...]`, with a 0/1 `valid` mask."""
  images, labels = np.asarray(split['image']), np.asarray(split['label'], np.int32)
  count = labels.shape[0]
  batch = max(1, min(eval_batch_size, count))
  num_batches = math.ceil(count / batch)
  padding = num_batches * batch - count
  valid = np.concatenate([np.ones(count, np.int32), np.zeros(padding, np.int32)])
  images = np.concatenate([images, np.zeros((padding,) + images.shape[1:], images.dtype)])
  labels = np.concatenate([labels, np.zeros(padding, np.int32)])
  return {
    'image': images.reshape((num_batches, batch) + images.shape[1:]),
    'label': labels.reshape(num_batches, batch),
    'valid': valid.reshape(num_batches, batch),
  }


# ----------------------------------------------------------------------------------------------
# Running the seeds: all in one program (sharded), or one after another.


class _VmapSeeds:
  """All seeds in one program per epoch, the seed axis sharded over `devices`."""

  def __init__(self, settings: Settings, devices: Sequence[jax.Device]):
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


class _LoopSeeds:
  """One seed at a time (seed axis of 1), skipping seeds that have stopped."""

  def __init__(self, settings: Settings, num_steps: int):
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


# ----------------------------------------------------------------------------------------------
# The run: config in, best variables of every seed out, everything on the way in the workdir.


@dataclasses.dataclass
class TrainResult:
  """Outcome of `train_classifier`; per-seed arrays follow the order of `seeds`."""

  seeds: list[int]
  variables: dict  # best {'params', 'batch_stats'} of every seed, leading seed axis
  validation_f1: np.ndarray  # [S, epochs_run]; NaN where the seed had stopped
  train_loss: np.ndarray  # [S, epochs_run], mean over the epoch's steps
  best_validation_f1: np.ndarray  # [S]
  best_epoch: np.ndarray  # [S], 1-based epoch of the restored variables
  stopped_epoch: np.ndarray  # [S], epoch early stopping ended the seed; 0 = never stopped
  epochs_run: int  # epochs until every seed had stopped or the limit was reached

  def variables_of(self, index: int) -> dict:
    """The best variables of the seed at position `index`, without the seed axis."""
    return jax.tree.map(lambda x: x[index], self.variables)


def seed_values(seeds) -> list[int]:
  """`config.train.seeds` as a list: an int n means seeds 0..n-1."""
  if isinstance(seeds, int):
    if seeds < 1:
      raise ValueError(f'config.train.seeds must be at least 1, got {seeds}.')
    return list(range(seeds))
  values = [int(seed) for seed in seeds]
  if not values or len(set(values)) != len(values):
    raise ValueError(f'config.train.seeds must be distinct seed values, got {values}.')
  return values


def _learning_rates(train_config, num_seeds: int) -> np.ndarray:
  per_seed = train_config.get('learning_rate_per_seed')
  if per_seed is None:
    return np.full(num_seeds, float(train_config.learning_rate), np.float32)
  values = np.asarray(list(per_seed), np.float32)
  if values.shape != (num_seeds,):
    raise ValueError(
      f'config.train.learning_rate_per_seed must hold one rate per seed '
      f'({num_seeds}), got {list(per_seed)}.'
    )
  return values


def _check_splits(
  splits: Mapping[str, Mapping[str, np.ndarray]], num_classes: int, batch_size: int
) -> None:
  for name in ('train', 'validation'):
    if name not in splits:
      raise ValueError(f"splits needs a '{name}' split, got {sorted(splits)}.")
    split = splits[name]
    for key in ('image', 'label'):
      if key not in split:
        raise ValueError(f"split '{name}' needs an '{key}' array, has {sorted(split)}.")
    images, labels = np.asarray(split['image']), np.asarray(split['label'])
    if images.dtype != np.uint8 or images.ndim != 4:
      raise ValueError(
        f"split '{name}': images must be uint8 [N, H, W, C], got {images.dtype} {images.shape}."
      )
    if labels.shape != images.shape[:1] or not np.issubdtype(labels.dtype, np.integer):
      raise ValueError(
        f"split '{name}': labels must be integers [N] with N = {images.shape[0]}, "
        f'got {labels.dtype} {labels.shape}.'
      )
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
      raise ValueError(
        f"split '{name}': labels must lie in [0, {num_classes}), "
        f'found {labels.min()}..{labels.max()}.'
      )
  if splits['train']['image'].shape[1:] != splits['validation']['image'].shape[1:]:
    raise ValueError(
      'train and validation images differ in size: '
      f'{splits["train"]["image"].shape[1:]} vs '
      f'{splits["validation"]["image"].shape[1:]}.'
    )
  if len(splits['train']['label']) < batch_size:
    raise ValueError(
      f'the train split has {len(splits["train"]["label"])} images, fewer than '
      f'one batch (config.train.batch_size = {batch_size}).'
    )
  if len(splits['validation']['label']) == 0:
    raise ValueError('the validation split is empty; early stopping needs it.')


@functools.cache
def default_preprocess(channels: int) -> Callable[[jax.Array], jax.Array]:
  """MobileNet's input preprocessing for `channels` input channels (one cached function)."""
  from xaijax.models import mobilenet  # imported late: the model module is optional here

  return functools.partial(mobilenet.preprocess, channels=channels)


def default_model(model_config) -> nn.Module:
  from xaijax.models import mobilenet

  return mobilenet.MobileNet(
    num_classes=model_config.get('num_classes', 10),
    alpha=model_config.alpha,
    dropout_rate=model_config.dropout_rate,
    depthwise_impl=model_config.depthwise_impl,
    batch_norm_momentum=model_config.get('batch_norm_momentum', 0.99),
  )


def _run_fingerprint(config, seeds, model, splits) -> dict:
  train = {
    key: value for key, value in config.train.to_dict().items() if key not in _EXECUTION_ONLY_KEYS
  }
  data = {
    name: {
      key: [list(np.shape(array)), str(np.asarray(array).dtype)]
      for key, array in sorted(splits[name].items())
      if key in ('image', 'label')
    }
    for name in ('train', 'validation')
  }
  # Addresses in a repr (a function-valued field, say) differ between processes.
  model_description = re.sub(r' at 0x[0-9a-fA-F]+', '', repr(model))
  fingerprint = {
    'seeds': seeds,
    'train': train,
    'model_config': config.model.to_dict(),
    'model': model_description,
    'data': data,
  }
  return json.loads(json.dumps(fingerprint, default=str))


def _check_or_write_fingerprint(workdir: str, fingerprint: dict) -> None:
  path = os.path.join(workdir, RUN_CONFIG_FILE)
  if os.path.exists(path):
    with open(path) as f:
      previous = json.load(f)
    if previous != fingerprint:
      differing = sorted(
        key for key in set(previous) | set(fingerprint) if previous.get(key) != fingerprint.get(key)
      )
      raise ValueError(
        f'{workdir} holds a classifier run with a different setup ({", ".join(differing)} '
        f'differ; see {path}). Use a fresh workdir, or delete this one to start over.'
      )
    return
  with open(path, 'w') as f:
    json.dump(fingerprint, f, indent=1)


def start_from(state: dict, initial_variables: Mapping) -> dict:
  """Stacked `state` whose seeds all start from `initial_variables` where those have an entry.

  For pretrained weights: the entries given (say, everything but the head) replace every seed's
  random initialisation; the rest keeps it, so seeds still differ there, in data order and in
  dropout.
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
      if value.shape != current[path].shape[1:]:
        raise ValueError(
          f'initial_variables {collection}/{path} has shape {value.shape}, the '
          f'model expects {current[path].shape[1:]}.'
        )
      current[path] = jnp.broadcast_to(value, current[path].shape)
    state[collection] = traverse_util.unflatten_dict(current, sep='/')
  state['best'] = {'params': state['params'], 'batch_stats': state['batch_stats']}
  return state


def _nan_to_none(values: np.ndarray) -> list:
  return [None if not np.isfinite(v) else float(v) for v in values]


def _write_result(workdir: str, result: TrainResult, run_info: dict) -> None:
  checkpoints_lib.save_pytree(os.path.join(workdir, BEST_VARIABLES_DIR), result.variables)
  summary = {
    **run_info,
    'seeds': result.seeds,
    'epochs_run': result.epochs_run,
    'best_validation_f1': result.best_validation_f1.tolist(),
    'best_epoch': result.best_epoch.tolist(),
    'stopped_epoch': result.stopped_epoch.tolist(),
    'validation_f1': [_nan_to_none(row) for row in result.validation_f1],
    'train_loss': [_nan_to_none(row) for row in result.train_loss],
  }
  # Written last: its presence means the whole result is on disk.
  with open(os.path.join(workdir, RESULT_FILE), 'w') as f:
    json.dump(summary, f)


def load_train_result(workdir: str) -> TrainResult | None:
  """The result a finished `train_classifier` left in `workdir`, None when there is none."""
  summary_path = os.path.join(workdir, RESULT_FILE)
  variables_path = os.path.join(workdir, BEST_VARIABLES_DIR)
  if not (os.path.exists(summary_path) and checkpoints_lib.pytree_exists(variables_path)):
    return None
  with open(summary_path) as f:
    summary = json.load(f)
  as_array = lambda rows: np.asarray(
    [[np.nan if v is None else v for v in row] for row in rows], np.float32
  )
  variables = jax.tree.map(np.asarray, checkpoints_lib.load_pytree(variables_path))
  return TrainResult(
    seeds=summary['seeds'],
    variables=variables,
    validation_f1=as_array(summary['validation_f1']),
    train_loss=as_array(summary['train_loss']),
    best_validation_f1=np.asarray(summary['best_validation_f1'], np.float32),
    best_epoch=np.asarray(summary['best_epoch'], np.int32),
    stopped_epoch=np.asarray(summary['stopped_epoch'], np.int32),
    epochs_run=summary['epochs_run'],
  )


def _rewrite_metrics_until(path: str, last_epoch: int) -> None:
  """Keeps the lines of epochs <= last_epoch (those a restored checkpoint has seen)."""
  if not os.path.exists(path):
    return
  with open(path) as f:
    lines = [line for line in f if line.strip() and json.loads(line)['epoch'] <= last_epoch]
  with open(path, 'w') as f:
    f.writelines(lines)


def _raise_on_non_finite(
  losses: np.ndarray, trained: np.ndarray, seeds: list[int], epoch: int, checkpoint_note: str
) -> None:
  bad = trained[:, None] & ~np.isfinite(losses)
  if not bad.any():
    return
  first_step = int(np.argmax(bad.any(axis=0)))
  index = int(np.argmax(bad[:, first_step]))
  failing = [seeds[i] for i in np.flatnonzero(bad.any(axis=1))]
  raise NonFiniteLossError(
    f'the training loss of seed {seeds[index]} (position {index}) became '
    f'{losses[index, first_step]} at epoch {epoch}, step {first_step + 1} of {losses.shape[1]} '
    f'(seeds with a non-finite loss this epoch: {failing}). {checkpoint_note} '
    'Lower config.train.learning_rate, or check the images and labels.',
    seed=seeds[index],
    epoch=epoch,
    step=first_step + 1,
  )


def train_classifier(
  config: ml_collections.ConfigDict,
  splits: Mapping[str, Mapping[str, np.ndarray]],
  workdir: str,
  model: nn.Module | None = None,
  *,
  preprocess: Callable[[jax.Array], jax.Array] | None = None,
  on_epoch_end: Callable[[int, list[dict]], None] | None = None,
  initial_variables: Mapping | None = None,
) -> TrainResult:
  """Trains `config.train.seeds` classifiers on `splits['train']`, early-stopped on
  `splits['validation']`, and returns the best variables of every seed.

  `workdir` belongs to this run: it receives `metrics.jsonl` (one line per seed and epoch),
  `checkpoints/` (every `checkpoint_every` epochs, last `keep_checkpoints` kept),
  `best_variables/` and `train_result.json`. A rerun with a finished result returns it without
  training; a rerun after a kill resumes from the latest checkpoint.

  `model` defaults to `MobileNet` built from `config.model`; `preprocess` (uint8 images -> model
  input) to MobileNet's, with `config.model.channels`. `on_epoch_end(epoch, records)` is called
  after each epoch's metrics and checkpoint are written. `initial_variables` (unstacked
  `{'params', 'batch_stats'}`, possibly partial, e.g. pretrained weights without the head) are
  where every seed starts; see `start_from`.
  """
  train_config = config.train
  num_classes = int(config.model.get('num_classes', 10))
  seeds = seed_values(train_config.seeds)
  learning_rates = _learning_rates(train_config, len(seeds))
  max_epochs = int(train_config.epochs)
  _check_splits(splits, num_classes, int(train_config.batch_size))
  if max_epochs < 1:
    raise ValueError(f'config.train.epochs must be at least 1, got {max_epochs}.')

  os.makedirs(workdir, exist_ok=True)
  finished = load_train_result(workdir)
  model = default_model(config.model) if model is None else model
  _check_or_write_fingerprint(workdir, _run_fingerprint(config, seeds, model, splits))
  if finished is not None:
    return finished

  preprocess = default_preprocess(int(config.model.channels)) if preprocess is None else preprocess
  settings = make_settings(train_config, model, preprocess, num_classes)
  num_steps = len(splits['train']['label']) // settings.batch_size

  strategy = train_config.get('seed_strategy', 'vmap')
  if strategy == 'vmap':
    devices = jax.local_devices()
    requested = int(train_config.get('devices', 0))
    if requested:
      if requested > len(devices):
        raise ValueError(
          f'config.train.devices = {requested}, but only {len(devices)} local devices exist.'
        )
      devices = devices[:requested]
    runner = _VmapSeeds(settings, devices)
    num_devices = len(devices)
    num_slots = math.ceil(len(seeds) / len(devices)) * len(devices)
  elif strategy == 'loop':
    runner = _LoopSeeds(settings, num_steps)
    num_devices = 1
    num_slots = len(seeds)
  else:
    raise ValueError(f"config.train.seed_strategy must be 'vmap' or 'loop', got {strategy!r}.")

  # Padding slots repeat the last seed, inactive from the start; their results are dropped.
  padding = num_slots - len(seeds)
  slot_seeds = seeds + [seeds[-1]] * padding
  slot_rates = np.concatenate([learning_rates, np.repeat(learning_rates[-1:], padding)])
  train_data = runner.place_data(
    {
      'image': np.asarray(splits['train']['image']),
      'label': np.asarray(splits['train']['label'], np.int32),
    }
  )
  validation_data = runner.place_data(
    prepare_eval_data(splits['validation'], int(train_config.get('eval_batch_size', 64)))
  )
  state = init_seed_states(
    slot_seeds,
    slot_rates,
    np.asarray(splits['train']['image'][:1]),
    settings=settings,
    max_epochs=max_epochs,
    active=[True] * len(seeds) + [False] * padding,
  )
  if initial_variables is not None:
    state = start_from(state, initial_variables)
  state = runner.place_state(state)

  metrics_path = os.path.join(workdir, METRICS_FILE)
  checkpoint_every = int(train_config.get('checkpoint_every', 10))
  store = checkpoints_lib.PeriodicCheckpoints(
    os.path.join(workdir, CHECKPOINTS_DIR), keep=int(train_config.get('keep_checkpoints', 3))
  )
  # Checkpoints hold the real seeds only, so a run may resume on another number of devices
  # or with the other seed strategy.
  real = slice(0, len(seeds))
  real_seeds_of = lambda tree: jax.tree.map(lambda x: x[real], tree) if padding else tree
  try:
    epoch = store.latest_epoch() or 0
    if epoch:
      restored = store.restore(epoch, like=real_seeds_of(state))
      if padding:
        restored = jax.tree.map(
          lambda saved, fresh: jnp.concatenate([saved, fresh[real.stop :]]), restored, state
        )
      state = runner.place_state(restored)
      _rewrite_metrics_until(metrics_path, epoch)
    elif os.path.exists(metrics_path):
      os.remove(metrics_path)

    early_stopping = jax.device_get(state['early_stopping'])
    progress = tqdm.tqdm(
      total=max_epochs,
      initial=epoch,
      desc='classifier',
      unit='epoch',
      disable=not train_config.get('progress_bar', True),
    )
    with progress:
      while epoch < max_epochs and early_stopping['active'][real].any():
        epoch += 1
        state, metrics = runner.run_epoch(state, train_data, validation_data, epoch)
        metrics = jax.device_get(metrics)
        trained = np.asarray(metrics['trained'])[real]
        latest = store.latest_epoch()
        _raise_on_non_finite(
          np.asarray(metrics['train_loss'])[real],
          trained,
          seeds,
          epoch,
          f'The last good checkpoint (epoch {latest}) is kept in {store.directory}.'
          if latest
          else 'No checkpoint had been written yet.',
        )
        early_stopping = jax.device_get(state['early_stopping'])
        records = [
          {
            'epoch': epoch,
            'seed': seeds[i],
            'seed_index': i,
            'train_loss': float(np.mean(metrics['train_loss'][i])),
            'validation_f1': float(metrics['validation_f1'][i]),
            'best_validation_f1': float(early_stopping['best_score'][i]),
            'best_epoch': int(early_stopping['best_epoch'][i]),
            'active': bool(early_stopping['active'][i]),
          }
          for i in np.flatnonzero(trained).tolist()
        ]
        with open(metrics_path, 'a') as f:
          f.writelines(json.dumps(record) + '\n' for record in records)
        if epoch % checkpoint_every == 0:
          store.save(epoch, real_seeds_of(state))
        progress.update(1)
        progress.set_postfix(
          best_validation_f1=f'{early_stopping["best_score"][real].max():.4f}',
          active=int(early_stopping['active'][real].sum()),
        )
        if on_epoch_end is not None:
          on_epoch_end(epoch, records)
  finally:
    store.close()

  final = jax.device_get({key: state[key] for key in ('best', 'early_stopping', 'history')})
  final = jax.tree.map(lambda x: np.asarray(x)[real], final)
  result = TrainResult(
    seeds=seeds,
    variables=final['best'],
    validation_f1=final['history']['validation_f1'][:, :epoch],
    train_loss=final['history']['train_loss'][:, :epoch],
    best_validation_f1=final['early_stopping']['best_score'],
    best_epoch=final['early_stopping']['best_epoch'],
    stopped_epoch=final['early_stopping']['stopped_epoch'],
    epochs_run=epoch,
  )
  _write_result(
    workdir, result, {'seed_strategy': strategy, 'devices': num_devices, 'padding_seeds': padding}
  )
  return result
