"""The workflow of one case, stage by stage; each stage writes into the workdir and is skipped on a rerun
when its output is there, so a killed run resumes instead of starting over.

    dataset -> remedy (fit the inpainter first for `generative`) -> train N seeds -> evaluate
    (test, test_clean, test_attacked) -> explain (LRP; relevance share in the overlay) -> report
"""

from __future__ import annotations

import json
import os
import time

from absl import logging
import jax
import numpy as np

from xaijax import data, remedies
from xaijax.data import CLASS_NAMES, preview
from xaijax.data.overlays import strip_mask

TEST_SPLITS = ('test', 'test_clean', 'test_attacked')
REMEDY_NAMES = tuple(remedies.REMEDIES)


def write_json(path: str, payload) -> None:
  """Write then rename, so a run killed mid-write never leaves a half file that a rerun would trust."""
  partial = path + '.partial'
  with open(partial, 'w') as f:
    json.dump(payload, f, indent=2)
  os.replace(partial, path)


def read_json(path: str):
  with open(path) as f:
    return json.load(f)


def describe(data_config) -> str:
  return f'{data_config.name}, {data_config.resolution} px, overlays: {data_config.overlay_mode}'


def validate(config) -> None:
  """Fail at start, saying what to change, rather than an hour into a run."""
  problems = []
  if config.data.resolution < 32:
    problems.append(f'data.resolution={config.data.resolution}: MobileNet needs at least 32 px')
  if config.remedy.name not in REMEDY_NAMES:
    problems.append(f'remedy.name={config.remedy.name!r}: choose one of {REMEDY_NAMES}')
  if config.remedy.region not in ('strips', 'mask'):
    problems.append(f"remedy.region={config.remedy.region!r}: choose 'strips' or 'mask'")
  train = config.train
  for key in ('epochs', 'batch_size', 'patience'):
    if int(train[key]) < 1:
      problems.append(f'train.{key}={train[key]}: must be at least 1')
  if isinstance(train.seeds, int) and train.seeds < 1:
    problems.append(f'train.seeds={train.seeds}: must be at least 1')
  if not train.learning_rate > 0:
    problems.append(f'train.learning_rate={train.learning_rate}: must be positive')
  if config.model.init_from and not os.path.isfile(os.path.expanduser(config.model.init_from)):
    problems.append(f'model.init_from={config.model.init_from!r}: no such file')
  if problems:
    raise ValueError('bad config:\n  ' + '\n  '.join(problems))


class Timings:
  """Seconds spent per stage, kept in timings.json so a resumed run still reports its whole wall time."""

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, 'timings.json')
    self.seconds = read_json(self.path) if os.path.exists(self.path) else {}

  def add(self, stage: str, seconds: float) -> None:
    self.seconds[stage] = round(self.seconds.get(stage, 0.0) + seconds, 2)
    write_json(self.path, self.seconds)


def dataset_stage(config, workdir: str) -> dict[str, dict[str, np.ndarray]]:
  """Build (or reuse) the dataset; write dataset.json and the preview PNGs once."""
  start = time.time()
  splits = data.load_splits(config.data)
  summary_path = os.path.join(workdir, 'dataset.json')
  if not os.path.exists(summary_path):
    figures = preview.write_previews(splits, workdir, describe(config.data))
    write_json(
      summary_path,
      {
        'dataset': describe(config.data),
        'seconds_to_build_or_load': round(time.time() - start, 2),
        'images_per_split': {name: int(len(s['label'])) for name, s in splits.items()},
        'images_per_class': {
          name: int(
            sum(
              np.sum(s['label'] == k)
              for n, s in splits.items()
              if n in ('train', 'validation', 'test')
            )
          )
          for k, name in enumerate(CLASS_NAMES)
        },
        'figures': [os.path.basename(f) for f in figures],
      },
    )
  logging.info('dataset: %s', {name: len(s['label']) for name, s in splits.items()})
  return splits


def remedy_stage(config, splits: dict, workdir: str) -> dict[str, dict[str, np.ndarray]]:
  """Apply the case's remedy to the images of every split (cached in remedied_images.npz).

  Every other key (clean image, masks, labels) is kept, so later stages can still measure relevance on
  the overlay's pixels after the overlay was removed.
  """
  path = os.path.join(workdir, 'remedied_images.npz')
  if os.path.exists(path):
    with np.load(path) as cached:
      return {name: {**split, 'image': cached[name]} for name, split in splits.items()}
  settings = {}
  if config.remedy.name == 'generative':
    settings['inpainter'] = fitted_inpainter(config, splits, workdir)
  remedied = {}
  for name, split in splits.items():
    remedied[name] = remedies.apply(
      config.remedy.name, split['image'], split['mask'], config.remedy.region, **settings
    )
  partial = path + '.partial.npz'
  np.savez(partial, **remedied)
  os.replace(partial, path)
  return {name: {**split, 'image': remedied[name]} for name, split in splits.items()}


def fitted_inpainter(config, splits: dict, workdir: str):
  """The GAN inpainter of the generative case: trained on the training split once, then reused."""
  from xaijax.training import gan

  return gan.fit_or_load_for_case(
    config, splits['train'], workdir, show_progress=bool(config.train.get('progress_bar', True))
  )


def inpainting_stage(config, splits: dict, workdir: str) -> dict:
  """How well each remover restores the clean test images, inside the mask and overall (generative case,
  synthetic data only, where the clean truth exists): inpainting_quality.json and inpainting_grid.png."""
  from xaijax import inpainting_quality
  from xaijax.training import gan

  path = os.path.join(workdir, inpainting_quality.QUALITY_FILE)
  if os.path.exists(path):
    return read_json(path)
  test = splits['test']
  return inpainting_quality.evaluate(
    test,
    gan.region_masks(test, config.remedy.region),
    fitted_inpainter(config, splits, workdir),
    workdir,
    int(config.gan.grid_examples),
  )


def model_and_preprocess(config):
  from xaijax.training import classifier

  return classifier.default_model(config.model), classifier.default_preprocess(
    int(config.model.channels)
  )


def initial_variables(config, model):
  """Pretrained weights from `model.init_from` (a Keras MobileNet file), or None."""
  if not config.model.init_from:
    return None
  from xaijax.models import keras_import

  template = model.init(
    jax.random.PRNGKey(0),
    np.zeros(
      (1, config.data.resolution, config.data.resolution, int(config.model.channels)), np.float32
    ),
    train=False,
  )
  return keras_import.load_keras_mobilenet(os.path.expanduser(config.model.init_from), template)


def train_stage(config, splits: dict, workdir: str):
  from xaijax.training import classifier

  model, _ = model_and_preprocess(config)
  return classifier.train_classifier(
    config,
    {'train': splits['train'], 'validation': splits['validation']},
    os.path.join(workdir, 'classifier'),
    model,
    initial_variables=initial_variables(config, model),
  )


def evaluate_stage(config, splits: dict, result, workdir: str) -> dict:
  """Macro F1, precision and recall of every seed on the three test sets (evaluation.json)."""
  path = os.path.join(workdir, 'evaluation.json')
  if os.path.exists(path):
    return read_json(path)
  from xaijax import evaluation

  model, preprocess = model_and_preprocess(config)
  scores = evaluation.evaluate_splits(
    model,
    result.variables,
    {name: splits[name] for name in TEST_SPLITS},
    preprocess=preprocess,
    num_classes=int(config.model.num_classes),
    batch_size=int(config.train.eval_batch_size),
  )
  write_json(path, scores)
  return scores


def _mean_std(values: np.ndarray) -> dict:
  values = np.asarray(values, np.float64)
  return {
    'mean': float(np.nanmean(values)),
    'std': float(np.nanstd(values, ddof=1)) if len(values) > 1 else 0.0,
    'per_seed': [float(v) for v in values],
  }


def explain_stage(config, splits: dict, result, workdir: str) -> dict:
  """LRP on the test images for every seed: the share of positive relevance on the overlay's pixels,
  on the strips and on the defect; heatmap grids of the best seed (explanation.json, lrp_*.png)."""
  path = os.path.join(workdir, 'explanation.json')
  if os.path.exists(path):
    return read_json(path)
  from xaijax import lrp
  from xaijax.lrp import heatmaps, metrics

  model, preprocess = model_and_preprocess(config)
  test = splits['test']
  batch = int(config.lrp.batch_size)
  composite, epsilon = config.lrp.composite, float(config.lrp.epsilon)

  @jax.jit
  def shares(variables, images, overlay, strips, defect):
    relevance = lrp.explain(
      model, variables, preprocess(images), composite=composite, epsilon=epsilon
    )
    return (
      metrics.relevance_mass_in_mask(relevance, overlay),
      metrics.relevance_mass_in_mask(relevance, strips),
      metrics.relevance_mass_in_mask(relevance, defect),
      lrp.heatmap(relevance),
    )

  strips = np.broadcast_to(strip_mask(test['image'].shape[1]), test['image'].shape)
  per_seed = {'overlay': [], 'strips': [], 'defect': []}
  best = int(np.argmax(result.best_validation_f1))
  best_maps = []
  for seed_index in range(len(result.seeds)):
    variables = result.variables_of(seed_index)
    collected = {'overlay': [], 'strips': [], 'defect': []}
    for start in range(0, len(test['label']), batch):
      part = slice(start, start + batch)
      overlay, strip, defect, maps = shares(
        variables, test['image'][part], test['mask'][part], strips[part], test['defect'][part]
      )
      for key, value in zip(('overlay', 'strips', 'defect'), (overlay, strip, defect)):
        collected[key].append(np.asarray(value))
      if seed_index == best:
        best_maps.append(np.asarray(maps))
    for key, values in collected.items():
      per_seed[key].append(float(np.nanmean(np.concatenate(values))))
  maps = np.concatenate(best_maps)
  shown = preview.first_of_each_class(test, 1)
  titles = [f'{CLASS_NAMES[test["label"][i]]}' for i in shown]
  heatmaps.write_heatmap_grid(
    os.path.join(workdir, 'lrp_examples.png'), test['image'][shown], maps[shown], titles, columns=5
  )
  heatmaps.write_class_means(
    os.path.join(workdir, 'lrp_class_means.png'), maps, test['label'], CLASS_NAMES
  )
  explanation = {
    'composite': composite,
    'target': 'predicted class',
    'split': 'test',
    'best_seed': int(result.seeds[best]),
    'relevance_mass_in_overlay': _mean_std(per_seed['overlay']),
    'relevance_mass_in_strips': _mean_std(per_seed['strips']),
    'relevance_mass_in_defect': _mean_std(per_seed['defect']),
    'figures': ['lrp_examples.png', 'lrp_class_means.png'],
  }
  write_json(path, explanation)
  return explanation


def run(config, workdir: str) -> dict:
  validate(config)
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, 'config.json'), 'w') as f:
    f.write(config.to_json_best_effort(indent=2))
  timings = Timings(workdir)
  stages = {}

  def timed(name, function, *args):
    start = time.time()
    output = function(*args)
    timings.add(name, time.time() - start)
    stages[name] = output
    return output

  splits = timed('dataset', dataset_stage, config, workdir)
  if config.remedy.name == 'generative' and config.data.name == 'synthetic_gc10':
    timed('inpainting', inpainting_stage, config, splits, workdir)
  splits = timed('remedy', remedy_stage, config, splits, workdir)
  result = timed('train', train_stage, config, splits, workdir)
  timed('evaluate', evaluate_stage, config, splits, result, workdir)
  timed('explain', explain_stage, config, splits, result, workdir)
  from xaijax import report

  results = report.write_case_report(config, workdir, result, stages, timings.seconds)
  logging.info('done: %s', workdir)
  return results
