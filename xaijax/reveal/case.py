"""The reveal inside a case (`remedy.region='found'`), and on any finished case
(`scripts/find_shortcuts.py`).

A found-mask case first needs the Original model (trained on the images as distributed): the run in
`reveal.model_workdir` when one is named (its data and model settings must be this case's), else
one trained here, in <workdir>/original. That model is revealed into <workdir>/reveal; the remedy
then acts on the found masks of every split, and the case trains on the remedied images as usual.
"""

from __future__ import annotations

import json
import os

from absl import logging
import ml_collections
import numpy as np

from xaijax import data as data_lib
from xaijax import evaluation
from xaijax.models import registry
from xaijax.reveal import stage
from xaijax.workdir import CLASSIFIER_DIR, CONFIG_FILE, read_json, write_json

REVEAL_DIR = 'reveal'
ORIGINAL_DIR = 'original'
ORIGINAL_SCORES_FILE = 'original_scores.json'
# Settings that do not change the data or the model a run saw.
_NOT_IDENTITY = {'data_dir', 'progress_bar'}


def _identity(section: dict) -> dict:
  return {k: v for k, v in section.items() if k not in _NOT_IDENTITY}


def _saved_config(workdir: str) -> ml_collections.ConfigDict:
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f'{workdir!r} holds no {CONFIG_FILE}: is it the workdir of a case run?')
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def check_same_data_and_model(config, model_workdir: str) -> None:
  """The Original run in `model_workdir` saw this case's data through this case's model."""
  saved = _saved_config(model_workdir)
  differences = []
  for section in ('data', 'model'):
    ours, theirs = _identity(config[section].to_dict()), _identity(saved[section].to_dict())
    for key in sorted(set(ours) | set(theirs)):
      if json.dumps(ours.get(key)) != json.dumps(theirs.get(key)):
        differences.append(f'{section}.{key}: {theirs.get(key)!r} there, {ours.get(key)!r} here')
  if differences:
    raise ValueError(
      f'reveal.model_workdir={model_workdir!r} was trained on other data or another model: '
      + '; '.join(differences)
    )
  if saved.remedy.name != 'none':
    raise ValueError(
      f'reveal.model_workdir={model_workdir!r} is a {saved.remedy.name!r} case; the reveal needs '
      'the Original model (remedy none), trained on the images as distributed'
    )
  correction = saved.get('correction', {}).get('name', 'none')
  if correction != 'none':
    raise ValueError(
      f'reveal.model_workdir={model_workdir!r} is a {correction!r} case; the reveal needs the '
      'Original model, trained without a correction'
    )


def original_model(config, splits: dict, workdir: str):
  """(TrainResult of the Original model, where it came from)."""
  from xaijax.training import classifier as classifier_training
  from xaijax.training import train_result

  if config.reveal.model_workdir:
    model_workdir = os.path.expanduser(config.reveal.model_workdir)
    check_same_data_and_model(config, model_workdir)
    result = train_result.load_train_result(os.path.join(model_workdir, CLASSIFIER_DIR))
    if result is None:
      raise ValueError(
        f'reveal.model_workdir={model_workdir!r} holds no finished training '
        f'({CLASSIFIER_DIR}/train_result.json); let that run finish first'
      )
    return result, f'the Original model of {model_workdir}'
  original = ml_collections.ConfigDict(config.to_dict())
  original.remedy.name, original.remedy.region = 'none', 'strips'
  original.correction.name, original.correction.masks = 'none', 'mask'
  directory = os.path.join(workdir, ORIGINAL_DIR)
  classifier = registry.build(config.model)
  result = classifier_training.train_classifier(
    original,
    {'train': splits['train'], 'validation': splits['validation']},
    os.path.join(directory, CLASSIFIER_DIR),
    classifier,
    initial_variables=registry.initial_variables(config, classifier),
  )
  return result, f'the Original model trained in {directory}'


def original_scores(config, splits: dict, result, workdir: str, test_splits) -> dict:
  """Macro scores of the Original model on the test splits, for comparison in the report."""
  path = os.path.join(workdir, REVEAL_DIR, ORIGINAL_SCORES_FILE)
  if os.path.exists(path):
    return read_json(path)
  scores = evaluation.evaluate_case(
    config, result.variables, {name: splits[name] for name in test_splits}
  )
  compact = {name: {'mean': s['mean'], 'std': s['std']} for name, s in scores.items()}
  os.makedirs(os.path.dirname(path), exist_ok=True)
  write_json(path, compact)
  return compact


def found_masks_stage(config, splits: dict, workdir: str, test_splits) -> dict:
  """Reveal the Original model (see the module docstring).

  Returns {'summary', 'masks' (found, per split), 'original_scores'}.
  """
  result, note = original_model(config, splits, workdir)
  best = int(np.argmax(result.best_validation_f1))
  summary = stage.reveal(
    config,
    splits,
    result.variables_of(best),
    os.path.join(workdir, REVEAL_DIR),
    data_lib.class_names(config.data),
    data_lib.ground_truth(config.data)['overlay_masks'],
    model_note=f'{note}, seed {result.seeds[best]} (best validation macro-F1)',
  )
  masks = stage.load_found_masks(os.path.join(workdir, REVEAL_DIR))
  if not any(m.any() for m in masks.values()):
    logging.warning('reveal: no cluster showed shortcut evidence; the found masks are empty')
  return {
    'summary': summary,
    'masks': masks,
    'original_scores': original_scores(config, splits, result, workdir, test_splits),
  }


def find_shortcuts(
  workdir: str,
  out_dir: str | None = None,
  overrides: dict | None = None,
  model_seed: int | None = None,
) -> dict:
  """The reveal of the finished case in `workdir`, into `out_dir` (default <workdir>/reveal), of
  the model of training seed `model_seed` (default: the seed with the best validation macro-F1).
  The data, model and training settings come from the case's config.json; the reveal's own
  settings are the defaults (whatever reveal section that run saved: an Original saves the
  defaults of its day); `overrides` ({'reveal.layer': ...}) change either. Returns the reveal's
  summary."""
  from xaijax import case_config
  from xaijax.training import train_result

  saved = _saved_config(workdir)
  config = case_config.get_config()
  for section in saved:
    if section == 'reveal':
      continue
    if section in config and isinstance(config[section], ml_collections.ConfigDict):
      config[section].update(saved[section].to_dict())
  for key, value in (overrides or {}).items():
    section, field = key.split('.')
    if field not in config[section]:
      raise ValueError(f'unknown setting {key!r}; known: {sorted(config[section].keys())}')
    config[section][field] = value
  result = train_result.load_train_result(os.path.join(workdir, CLASSIFIER_DIR))
  if result is None:
    raise ValueError(f'{workdir!r} holds no finished training ({CLASSIFIER_DIR}/train_result.json)')
  if model_seed is None:
    index = int(np.argmax(result.best_validation_f1))
    note = f'seed {result.seeds[index]} (best validation macro-F1)'
  elif model_seed in result.seeds:
    index = list(result.seeds).index(model_seed)
    note = f'seed {model_seed} (chosen)'
  else:
    raise ValueError(f'{workdir!r} trained seeds {list(result.seeds)}; no seed {model_seed}')
  splits = data_lib.load_splits(config.data)
  return stage.reveal(
    config,
    splits,
    result.variables_of(index),
    out_dir or os.path.join(workdir, REVEAL_DIR),
    data_lib.class_names(config.data),
    data_lib.ground_truth(config.data)['overlay_masks'],
    model_note=f'the model of {workdir}, {note}',
  )
