"""A classifier run's record in its workdir, what a rerun reads: its setup and its `TrainResult`.

`train_classifier` (xaijax/training/classifier.py) writes `run_config.json` first (the setup that
decides the numbers, `run_fingerprint`; a rerun with another setup is refused) and, at the end,
`best_variables/` (the best variables of every seed, Orbax) and then `train_result.json` (seeds,
curves, best and stopped epochs, how the run was executed); that JSON file is written last, so its
presence means the whole result is on disk. `load_train_result` reads the result back, for a rerun
that finds its run finished and for the stages that reuse an earlier run (the study, the reveal, a
correction's base classifier).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil

import jax
import numpy as np

from xaijax import checkpoints as checkpoints_lib
from xaijax import distributed
from xaijax.workdir import write_json

RUN_CONFIG_FILE = 'run_config.json'
RESULT_FILE = 'train_result.json'
BEST_VARIABLES_DIR = 'best_variables'
DATA_DIGEST_FILE = 'data_digest.json'

# Keys of config.train that change how the run executes, not what it computes; a run may be
# resumed with other values for them.
_EXECUTION_ONLY_KEYS = (
  'checkpoint_every',
  'keep_checkpoints',
  'seed_strategy',
  'devices',
  'data_parallel',
  'repack_stopped_seeds',
  'progress_bar',
  'eval_batch_size',
  'tensorboard',
  'reuse_identical_run',
  # The seed values themselves are fingerprinted; without it a run from before first_seed existed
  # would not match the same run asked for today.
  'first_seed',
)


# ----------------------------------------------------------------------------- the setup


def run_fingerprint(config, seeds, model, splits, penalty=None) -> dict:
  """What a run computes (seeds, training settings, model, data shapes, penalty), as JSON."""
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
  if penalty is not None:
    fingerprint['penalty'] = re.sub(r' at 0x[0-9a-fA-F]+', '', repr(penalty))
  return json.loads(json.dumps(fingerprint, default=str))


def check_or_write_fingerprint(workdir: str, fingerprint: dict) -> None:
  """Refuse a workdir whose run_config.json differs from `fingerprint`; write it where absent."""
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
  if distributed.is_writer():
    write_json(path, fingerprint)


def data_digest(splits, train_keys=('image', 'label')) -> str:
  """SHA-256 of the arrays a run trains and early-stops on (`train_keys` of the training split,
  image and label of the validation split): equal digests and fingerprints, equal runs."""
  digest = hashlib.sha256()
  for name, keys in (('train', train_keys), ('validation', ('image', 'label'))):
    for key in sorted(keys):
      array = np.ascontiguousarray(splits[name][key])
      digest.update(f'{name}/{key}/{array.dtype}/{array.shape}'.encode())
      digest.update(array.tobytes())
  return digest.hexdigest()


def copy_identical_run(source: str, workdir: str, fingerprint: dict, digest: str) -> bool:
  """Copy the finished run in `source` into `workdir` when it computed exactly this run: the same
  setup (`run_config.json`) on byte-identical data (`data_digest.json`). Returns whether it did.

  The study's settings differ only inside the overlay's pixels, so a remedy that replaces those
  pixels trains on the same bytes in both, and the second setting need not train it again.
  """
  try:
    with open(os.path.join(source, RUN_CONFIG_FILE)) as f:
      same_setup = json.load(f) == fingerprint
    with open(os.path.join(source, DATA_DIGEST_FILE)) as f:
      same_data = json.load(f).get('sha256') == digest
  except FileNotFoundError:
    return False
  if not (same_setup and same_data and os.path.exists(os.path.join(source, RESULT_FILE))):
    return False
  if distributed.is_writer():
    shutil.copytree(
      source,
      workdir,
      dirs_exist_ok=True,
      ignore=shutil.ignore_patterns(RESULT_FILE, 'checkpoints'),
    )
    # Last, as training writes it: its presence means the whole result is there.
    shutil.copy2(os.path.join(source, RESULT_FILE), os.path.join(workdir, RESULT_FILE))
  distributed.barrier('copy_identical_run')
  return True


# ----------------------------------------------------------------------------- the result


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


def _nan_to_none(values: np.ndarray) -> list:
  return [None if not np.isfinite(v) else float(v) for v in values]


def write_train_result(workdir: str, result: TrainResult, run_info: dict) -> None:
  """best_variables/ and train_result.json (process 0's job)."""
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
  write_json(os.path.join(workdir, RESULT_FILE), summary)


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
