"""Train the defect classifier over many seeds at once: the host loop.

The seeds' work is one compiled program per epoch (`per_seed.run_epoch`, vmapped and sharded by
`seed_runners`). The host loop over epochs only moves numbers out: progress bar, `metrics.jsonl`,
TensorBoard curves, checkpoints, the check for a non-finite loss, and the end of the run once every
seed has stopped.

The workdir given to `train_classifier` belongs to it: `run_config.json` (the setup; a rerun with
another one is refused), `metrics.jsonl` (one line per seed and epoch trained), `tensorboard/`
(one event folder per seed), `checkpoints/` (the whole state of the real seeds, best variables
included, every `checkpoint_every` epochs), and at the end `best_variables/` and
`train_result.json`. The setup file and the result are read and written by
xaijax/training/train_result.py (`TrainResult`, `load_train_result`). A rerun returns a finished
result without training, or resumes from the latest checkpoint, with the numbers an uninterrupted
run would have given.

Over several processes (xaijax/distributed.py) every process runs this loop on the same numbers
(gathered from all devices each epoch, so all make the same decisions); the checkpoints are
written by all of them together (Orbax, each its own devices' shards), every other file by
process 0 alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
import dataclasses
import json
import os

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm

from xaijax import checkpoints as checkpoints_lib
from xaijax import distributed
from xaijax.models import registry
from xaijax.training import per_seed, seed_runners, train_result
from xaijax.workdir import write_json

METRICS_FILE = 'metrics.jsonl'
TENSORBOARD_DIR = 'tensorboard'
CHECKPOINTS_DIR = 'checkpoints'


class NonFiniteLossError(FloatingPointError):
  """The training loss of a seed became NaN or infinite."""

  def __init__(self, message: str, *, seed: int, epoch: int, step: int):
    super().__init__(message)
    self.seed = seed
    self.epoch = epoch
    self.step = step


# ----------------------------------------------------------------------------------------------
# The run: config in, best variables of every seed out, everything on the way in the workdir.


def seed_values(train_config) -> list[int]:
  """`config.train.seeds` as a list: an int n means seeds first_seed..first_seed+n-1."""
  seeds, first_seed = train_config.seeds, int(train_config.get('first_seed', 0))
  if isinstance(seeds, int):
    if seeds < 1:
      raise ValueError(f'config.train.seeds must be at least 1, got {seeds}.')
    return list(range(first_seed, first_seed + seeds))
  values = [int(seed) for seed in seeds]
  if not values or len(set(values)) != len(values):
    raise ValueError(f'config.train.seeds must be distinct seed values, got {values}.')
  return values


def _learning_rates(train_config, num_seeds: int) -> np.ndarray:
  rates = train_config.learning_rate_per_seed
  if rates is None:
    return np.full(num_seeds, float(train_config.learning_rate), np.float32)
  values = np.asarray(list(rates), np.float32)
  if values.shape != (num_seeds,):
    raise ValueError(
      f'config.train.learning_rate_per_seed must hold one rate per seed '
      f'({num_seeds}), got {list(rates)}.'
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


class _TensorBoardCurves:
  """Training curves per seed as TensorBoard event files (tensorboardX: no TensorFlow needed).

  One run folder per seed (`tensorboard/seed_<s>`), so TensorBoard overlays the seeds of a sweep.
  """

  def __init__(self, directory: str, seeds: list[int], enabled: bool):
    self._writers = {}
    if enabled and distributed.is_writer():
      import tensorboardX  # imported here: only runs that write curves need it

      self._writers = {
        seed: tensorboardX.SummaryWriter(os.path.join(directory, f'seed_{seed}')) for seed in seeds
      }

  def write(self, records: list[dict]) -> None:
    for record in records:
      writer = self._writers.get(record['seed'])
      if writer is not None:
        for key in ('train_loss', 'validation_f1', 'best_validation_f1'):
          writer.add_scalar(key, record[key], record['epoch'])

  def close(self) -> None:
    for writer in self._writers.values():
      writer.close()


def train_classifier(
  config: ml_collections.ConfigDict,
  splits: Mapping[str, Mapping[str, np.ndarray]],
  workdir: str,
  classifier: registry.Classifier | None = None,
  *,
  on_epoch_end: Callable[[int, list[dict]], None] | None = None,
  initial_variables: Mapping | None = None,
  penalty: Callable | None = None,
) -> train_result.TrainResult:
  """Trains `config.train.seeds` classifiers on `splits['train']`, early-stopped on
  `splits['validation']`, and returns the best variables of every seed.

  `workdir` belongs to this run: it receives `metrics.jsonl` (one line per seed and epoch),
  `tensorboard/`, `checkpoints/` (every `checkpoint_every` epochs, last `keep_checkpoints` kept),
  `best_variables/` and `train_result.json`. A rerun with a finished result returns it without
  training; a rerun after a kill resumes from the latest checkpoint.

  `classifier` defaults to the one `config.model` names (`registry.build`).
  `on_epoch_end(epoch, records)` is called after each epoch's metrics and checkpoint are written.
  `initial_variables` (unstacked `{'params', 'batch_stats'}`, possibly partial, e.g. pretrained
  weights without the head) are where every seed starts; see `seed_runners.start_from`.
  `penalty` is a model correction's term of the loss (`per_seed.Settings.penalty`); the arrays of
  `splits['train']` it names in `penalty.batch_keys` go into its batches.
  """
  train_config = config.train
  num_classes = int(config.model.num_classes)
  seeds = seed_values(train_config)
  learning_rates = _learning_rates(train_config, len(seeds))
  max_epochs = int(train_config.epochs)
  _check_splits(splits, num_classes, int(train_config.batch_size))
  if max_epochs < 1:
    raise ValueError(f'config.train.epochs must be at least 1, got {max_epochs}.')

  os.makedirs(workdir, exist_ok=True)
  finished = train_result.load_train_result(workdir)
  classifier = registry.build(config.model) if classifier is None else classifier
  fingerprint = train_result.run_fingerprint(config, seeds, classifier.module, splits, penalty)
  train_result.check_or_write_fingerprint(workdir, fingerprint)
  if finished is not None:
    return finished
  digest = train_result.data_digest(splits, ('image', 'label', *getattr(penalty, 'batch_keys', ())))
  if distributed.is_writer():
    write_json(os.path.join(workdir, train_result.DATA_DIGEST_FILE), {'sha256': digest})
  source = train_config.reuse_identical_run
  if source and train_result.copy_identical_run(source, workdir, fingerprint, digest):
    logging.info('%s: the same run on the same data finished in %s; copied', workdir, source)
    return train_result.load_train_result(workdir)

  settings = per_seed.make_settings(train_config, classifier, num_classes)
  settings = dataclasses.replace(settings, penalty=penalty)
  num_steps = len(splits['train']['label']) // settings.batch_size
  runner = seed_runners.make_runner(train_config, settings, len(seeds), num_steps)

  # Padding slots repeat the last seed, inactive from the start; their results are dropped.
  padding = runner.num_slots - len(seeds)
  slot_seeds = seeds + [seeds[-1]] * padding
  slot_rates = np.concatenate([learning_rates, np.repeat(learning_rates[-1:], padding)])
  train_data = runner.place_data(
    {
      'image': np.asarray(splits['train']['image']),
      'label': np.asarray(splits['train']['label'], np.int32),
      **{key: np.asarray(splits['train'][key]) for key in getattr(penalty, 'batch_keys', ())},
    }
  )
  validation_data = runner.place_data(
    per_seed.prepare_eval_data(splits['validation'], int(train_config.eval_batch_size))
  )
  state = runner.init_states(
    slot_seeds,
    slot_rates,
    np.asarray(splits['train']['image'][:1]),
    max_epochs=max_epochs,
    active=[True] * len(seeds) + [False] * padding,
  )
  if initial_variables is not None:
    state = seed_runners.start_from(state, initial_variables)
  state = runner.place_state(state)

  writer = distributed.is_writer()
  metrics_path = os.path.join(workdir, METRICS_FILE)
  checkpoint_every = int(train_config.checkpoint_every)
  store = checkpoints_lib.PeriodicCheckpoints(
    os.path.join(workdir, CHECKPOINTS_DIR), keep=int(train_config.keep_checkpoints)
  )
  curves = _TensorBoardCurves(
    os.path.join(workdir, TENSORBOARD_DIR), seeds, bool(train_config.tensorboard)
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
      if writer:
        _rewrite_metrics_until(metrics_path, epoch)
    elif writer and os.path.exists(metrics_path):
      os.remove(metrics_path)

    early_stopping = distributed.fetch(state['early_stopping'])
    progress = tqdm.tqdm(
      total=max_epochs,
      initial=epoch,
      desc='classifier',
      unit='epoch',
      disable=not (train_config.progress_bar and writer),
    )
    with progress:
      while epoch < max_epochs and early_stopping['active'][real].any():
        epoch += 1
        state, metrics = runner.run_epoch(state, train_data, validation_data, epoch)
        metrics = distributed.fetch(metrics)
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
        early_stopping = distributed.fetch(state['early_stopping'])
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
        if writer:
          with open(metrics_path, 'a') as f:
            f.writelines(json.dumps(record) + '\n' for record in records)
        curves.write(records)
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
    curves.close()

  final = distributed.fetch({key: state[key] for key in ('best', 'early_stopping', 'history')})
  final = jax.tree.map(lambda x: x[real], final)
  result = train_result.TrainResult(
    seeds=seeds,
    variables=final['best'],
    validation_f1=final['history']['validation_f1'][:, :epoch],
    train_loss=final['history']['train_loss'][:, :epoch],
    best_validation_f1=final['early_stopping']['best_score'],
    best_epoch=final['early_stopping']['best_epoch'],
    stopped_epoch=final['early_stopping']['stopped_epoch'],
    epochs_run=epoch,
  )
  if writer:
    train_result.write_train_result(
      workdir,
      result,
      {
        'seed_strategy': train_config.seed_strategy,
        'processes': jax.process_count(),
        'devices': runner.num_devices,
        'mesh': {'seeds': runner.seed_devices, 'data': runner.data_devices},
        'padding_seeds': padding,
        # Seed-epochs computed by this (possibly resumed) run, idle slots included; with
        # repacking, stopped seeds stop costing.
        'slot_epochs_computed': runner.slots_run,
      },
    )
  return result
