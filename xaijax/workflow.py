"""The workflow of one case, stage by stage; each stage writes into the workdir and is skipped on a
rerun when its output is there, so a killed run resumes instead of starting over.

    dataset -> remedy (fit the inpainter first for `generative`) -> train N seeds -> evaluate
    (test, test_clean, test_attacked) -> explain (LRP; relevance share in the overlay) -> quality
    (sanity, faithfulness, localisation, complexity of every explainer) -> report

This module keeps the order of the stages (`run`) and the stages of no package of their own; the
reveal is in xaijax/reveal/case.py, the corrections' stages (correct, measure) in
xaijax/corrections/stages.py, the quality stage in xaijax/quality/stage.py.

Over several processes (xaijax/distributed.py) all of them train together; every other stage
runs on process 0, and the others read what it wrote.
"""

from __future__ import annotations

import os
import time

from absl import logging
import jax
import numpy as np

from xaijax import case_config, config_checks, data, distributed, evaluation, remedies, report
from xaijax.data import preview
from xaijax.data.overlays import strip_mask
from xaijax.models import registry
from xaijax.workdir import (
  CLASSIFIER_DIR,
  CONFIG_FILE,
  DATASET_FILE,
  EVALUATION_FILE,
  EXPLANATION_FILE,
  REMEDIED_IMAGES_FILE,
  RESULTS_FILE,
  TIMINGS_FILE,
  read_json,
  write_json,
)


class Timings:
  """Seconds spent per stage, kept in timings.json so a resumed run still reports its whole wall
  time."""

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, TIMINGS_FILE)
    self.seconds = read_json(self.path) if os.path.exists(self.path) else {}

  def add(self, stage: str, seconds: float) -> None:
    self.seconds[stage] = round(self.seconds.get(stage, 0.0) + seconds, 2)
    if distributed.is_writer():
      write_json(self.path, self.seconds)


def dataset_stage(config, workdir: str) -> dict[str, dict[str, np.ndarray]]:
  """Build (or reuse) the dataset; write dataset.json and the preview PNGs once."""
  start = time.time()
  splits = data.load_splits(config.data)
  summary_path = os.path.join(workdir, DATASET_FILE)
  if not os.path.exists(summary_path):
    class_names = data.class_names(config.data)
    figures = preview.write_previews(
      splits, workdir, case_config.describe_data(config.data), class_names
    )
    write_json(
      summary_path,
      {
        'dataset': case_config.describe_data(config.data),
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
          for k, name in enumerate(class_names)
        },
        'figures': [os.path.basename(f) for f in figures],
      },
    )
  logging.info('dataset: %s', {name: len(s['label']) for name, s in splits.items()})
  return splits


def remedy_stage(config, splits: dict, workdir: str) -> dict[str, dict[str, np.ndarray]]:
  """Apply the case's remedy to the images of every split (cached in remedied_images.npz).

  Every other key (clean image, masks, labels) is kept, so later stages can still measure relevance
  on the overlay's pixels after the overlay was removed.
  """
  path = os.path.join(workdir, REMEDIED_IMAGES_FILE)
  if os.path.exists(path):
    with np.load(path) as cached:
      return {name: {**split, 'image': cached[name]} for name, split in splits.items()}
  settings = {}
  found = config.remedy.region == 'found'
  if found and not any(split['found_mask'].any() for split in splits.values()):
    logging.warning('remedy: the reveal found nothing to remove; the images stay as they are')
    remedied = {name: split['image'] for name, split in splits.items()}
  else:
    if config.remedy.name == 'generative':
      settings['inpainter'] = fitted_inpainter(config, splits, workdir)
    remedied = {}
    for name, split in splits.items():
      remedied[name] = remedies.apply(
        config.remedy.name,
        split['image'],
        split['found_mask'] if found else split['mask'],
        'mask' if found else config.remedy.region,
        **settings,
      )
  partial = path + '.partial.npz'
  np.savez(partial, **remedied)
  os.replace(partial, path)
  return {name: {**split, 'image': remedied[name]} for name, split in splits.items()}


def fitted_inpainter(config, splits: dict, workdir: str):
  """The GAN inpainter of the generative case: trained on the training split once, then reused."""
  from xaijax.training import gan

  return gan.fit_or_load_for_case(
    config, splits['train'], workdir, show_progress=bool(config.train.progress_bar)
  )


def inpainting_stage(config, splits: dict, workdir: str) -> dict:
  """How well each remover restores the clean test images, inside the mask and overall (generative
  case, synthetic data only, where the clean truth exists): inpainting_quality.json and
  inpainting_grid.png."""
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


def train_stage(config, splits: dict, workdir: str):
  """The case's classifier, every seed. A case with a penalty (RRR, counterexamples) trains with
  it, from scratch or from each seed's model in `correction.base_classifier`; a ClArC case trains
  (or reuses, `correction.base_classifier`) the Original model it then corrects."""
  from xaijax.corrections import stages as corrections
  from xaijax.training import classifier as classifier_training

  classifier = registry.build(config.model)
  run_dir = os.path.join(workdir, CLASSIFIER_DIR)
  penalty = None
  train_splits = {'train': splits['train'], 'validation': splits['validation']}
  penalised = config.correction.name in case_config.PENALISED_CORRECTIONS
  base_classifier = config.correction.base_classifier
  if base_classifier and not penalised:
    return reused_classifier(config, base_classifier)
  if penalised:
    train_splits = corrections.correction_splits(config, splits)
    penalty = corrections.training_penalty(config, classifier)
  if base_classifier:  # every seed fine-tuned from its own finished model
    train_config = corrections.fine_tune_config(config)
    initial_variables = reused_classifier(config, base_classifier).variables
  else:
    train_config = config
    initial_variables = registry.initial_variables(config, classifier)
  timer = corrections.EpochTimer(run_dir)
  result = classifier_training.train_classifier(
    train_config,
    train_splits,
    run_dir,
    classifier,
    on_epoch_end=timer,
    initial_variables=initial_variables,
    penalty=penalty,
  )
  timer.write()
  return result


def reused_classifier(config, run_dir: str):
  """A finished run to correct (`correction.base_classifier`), its seeds checked."""
  from xaijax.training import classifier as classifier_training
  from xaijax.training import train_result

  result = train_result.load_train_result(run_dir)
  seeds = classifier_training.seed_values(config.train)
  if result is None or list(result.seeds) != seeds:
    found = 'no finished run' if result is None else f'seeds {result.seeds}'
    raise ValueError(
      f'correction.base_classifier={run_dir!r} holds {found}; it must be the classifier/ folder '
      f'of a finished run with seeds {seeds} (an Original case, or any case to fine-tune).'
    )
  return result


def evaluate_stage(config, splits: dict, result, workdir: str) -> dict:
  """Macro F1, precision and recall of every seed on the three test sets (evaluation.json)."""
  path = os.path.join(workdir, EVALUATION_FILE)
  if os.path.exists(path):
    return read_json(path)
  scores = evaluation.evaluate_case(
    config, result.variables, {name: splits[name] for name in report.test_splits(config.data)}
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
  on the strips and on the defect; the overlay's share on the validation images too; heatmap grids
  of the best seed (explanation.json, lrp_*.png)."""
  path = os.path.join(workdir, EXPLANATION_FILE)
  if os.path.exists(path):
    return read_json(path)
  from xaijax import lrp
  from xaijax.lrp import heatmaps, metrics

  classifier = registry.build(config.model)
  model, preprocess = classifier.module, classifier.preprocess
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

  truth = data.ground_truth(config.data)
  best = int(np.argmax(result.best_validation_f1))

  def split_shares(variables, split, maps=None) -> dict:
    """Per-image shares on `split`, averaged; the heatmaps appended to `maps` where given."""
    strips = np.broadcast_to(strip_mask(split['image'].shape[1]), split['image'].shape)
    collected = {'overlay': [], 'strips': [], 'defect': []}
    for start in range(0, len(split['label']), batch):
      part = slice(start, start + batch)
      *values, heatmap = shares(
        variables, split['image'][part], split['mask'][part], strips[part], split['defect'][part]
      )
      for key, value in zip(collected, values):
        collected[key].append(np.asarray(value))
      if maps is not None:
        maps.append(np.asarray(heatmap))
    return {key: float(np.nanmean(np.concatenate(values))) for key, values in collected.items()}

  per_seed = {'overlay': [], 'strips': [], 'defect': []}
  validation_overlay = []
  best_maps = []
  for seed_index in range(len(result.seeds)):
    variables = result.variables_of(seed_index)
    test_shares = split_shares(variables, test, best_maps if seed_index == best else None)
    for key, value in test_shares.items():
      per_seed[key].append(value)
    if truth['overlay_masks'] and 'validation' in splits:
      validation_overlay.append(split_shares(variables, splits['validation'])['overlay'])
  maps = np.concatenate(best_maps)
  shown = preview.first_of_each_class(test, 1)
  class_names = data.class_names(config.data)
  titles = [f'{class_names[test["label"][i]]}' for i in shown]
  heatmaps.write_heatmap_grid(
    os.path.join(workdir, 'lrp_examples.png'), test['image'][shown], maps[shown], titles, columns=5
  )
  heatmaps.write_class_means(
    os.path.join(workdir, 'lrp_class_means.png'), maps, test['label'], class_names
  )
  explanation = {
    'composite': composite,
    'target': 'predicted class',
    'split': 'test',
    'best_seed': int(result.seeds[best]),
    # None where the data keeps no such mask (an image folder of your own, no overlays burnt in).
    'relevance_mass_in_overlay': _mean_std(per_seed['overlay']) if truth['overlay_masks'] else None,
    # What a λ sweep may choose by: validation images, never the test images.
    'validation_relevance_mass_in_overlay': (
      _mean_std(validation_overlay) if validation_overlay else None
    ),
    'relevance_mass_in_strips': _mean_std(per_seed['strips']),
    'relevance_mass_in_defect': _mean_std(per_seed['defect']) if truth['defects'] else None,
    'figures': ['lrp_examples.png', 'lrp_class_means.png'],
  }
  write_json(path, explanation)
  return explanation


def reveal_stage(config, splits: dict, workdir: str) -> dict:
  """remedy.region='found' or correction.masks='found': reveal the Original model (trained here,
  or the one in reveal.model_workdir) and find the masks the remedy or correction acts on
  (xaijax/reveal/case.py)."""
  from xaijax.reveal import case

  return case.found_masks_stage(config, splits, workdir, report.test_splits(config.data))


def match_class_count(config) -> None:
  """An image folder decides how many classes the classifier has."""
  if config.data.name != 'image_folder':
    return
  count = len(data.class_names(config.data))
  if int(config.model.num_classes) != count:
    logging.info('model.num_classes: %d, the class folders in data.manual_dir', count)
    config.model.num_classes = count


def run(config, workdir: str) -> dict:
  """Every stage of the case `config` describes, in `workdir`; returns what results.json holds."""
  from xaijax.corrections import stages as corrections

  config_checks.validate(config)
  match_class_count(config)
  registry.build(config.model)  # a user's classifier that cannot be built fails now, not later
  os.makedirs(workdir, exist_ok=True)
  if distributed.is_writer():
    with open(os.path.join(workdir, CONFIG_FILE), 'w') as f:
      f.write(config.to_json_best_effort(indent=2))
  timings = Timings(workdir)
  stages = {}

  def timed(name, function, *args):
    start = time.time()
    if name == 'train':  # every process's devices at once
      output = function(*args)
    else:  # process 0 writes the stage's output, the others then read it
      with distributed.writer_first(name):
        output = function(*args)
    timings.add(name, time.time() - start)
    stages[name] = output
    return output

  splits = timed('dataset', dataset_stage, config, workdir)
  if config.remedy.region == 'found' or config.correction.masks == 'found':
    found = timed('reveal', reveal_stage, config, splits, workdir)
    splits = {name: {**split, 'found_mask': found['masks'][name]} for name, split in splits.items()}
  if config.remedy.name == 'generative' and config.data.name == 'synthetic_gc10':
    timed('inpainting', inpainting_stage, config, splits, workdir)
  splits = timed('remedy', remedy_stage, config, splits, workdir)
  result = timed('train', train_stage, config, splits, workdir)
  if config.correction.name in ('pclarc', 'aclarc', 'rrclarc'):
    result = timed('correct', corrections.correct_stage, config, splits, result, workdir)
  timed('evaluate', evaluate_stage, config, splits, result, workdir)
  timed('explain', explain_stage, config, splits, result, workdir)
  if config.quality.enabled:
    from xaijax.quality import stage as quality

    timed('quality', quality.quality_stage, config, splits, result, workdir)
  if config.remedy.name == 'none':
    skip = corrections.why_no_measures(config, splits, result)
    if skip is None:
      timed('measure', corrections.measures_stage, config, splits, result, workdir)
    else:
      logging.info('no TCAV / swapped-overlay measures: %s', skip)
  with distributed.writer_first('report'):
    if distributed.is_writer():
      results = report.write_case_report(config, workdir, result, stages, timings.seconds)
    else:
      results = read_json(os.path.join(workdir, RESULTS_FILE))
  logging.info('done: %s', workdir)
  return results
