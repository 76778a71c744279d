"""The paper's whole study: every case in both overlay settings, then one report with Tables 1-3 and
Figures 5-9 beside the paper's numbers, which differences are real, and whether training converged
(`scripts/reproduce_paper.py` is its command line; `study_report.py` writes the tables).

Two overlay settings, each with every case, each in its own folder under the study's root:
- `random`: the paper's own ("random information and company logos superimposed"): text and logo
  have nothing to do with the class;
- `spurious`: the shortcut: in train and validation the logo is the class's own with probability
  `data.logo_class_probability`; the test split draws it at random.

Finished cases (and finished stages of a killed case) are reused, so rerunning continues the study.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import dataclasses
import os

import jax
import ml_collections
import numpy as np

from xaijax import case_config, convergence, evaluation, report, study_report, workflow
from xaijax.corrections import table as correction_table
from xaijax.data import CLASS_NAMES, preview
from xaijax.models import registry
from xaijax.training import train_result
from xaijax.workdir import CLASSIFIER_DIR, REMEDIED_IMAGES_FILE, RESULTS_FILE, read_json, write_json

MakeConfig = Callable[[str, str], ml_collections.ConfigDict]  # (case, arg) -> config

CASES = ('original', 'blur', 'black_stripe', 'crop', 'generative', 'telea')
# The overlay settings the study runs (data.overlay_mode), the paper's first.
SETTINGS = ('random', 'spurious')
# Cases that correct the model instead of the images; run when named in --cases.
CORRECTION_CASES = correction_table.CORRECTION_CASES
ALL_CASES = CASES + CORRECTION_CASES
# The ClArC cases correct the setting's own Original models instead of training them again.
_REUSES_ORIGINAL = ('pclarc', 'aclarc', 'rrclarc')


@dataclasses.dataclass
class SettingOutcome:
  """What the report needs of one overlay setting."""

  setting: str
  arg: str  # the config argument every case of the setting ran with
  results: dict  # case -> its results.json
  verdicts: dict  # case -> convergence.Verdict
  table2: dict | None  # the Original model on generatively cleaned test images


def setting_arg(arg: str, setting: str) -> str:
  """The config argument of one setting's cases: the user's, the setting's overlay mode, and the
  study's seeds per case unless the user named them (the paper's own 30 stay with `paper`)."""
  options = case_config.parse_arg(arg)
  if 'overlay_mode' in options:
    raise ValueError(
      f'the study sets overlay_mode itself (settings {SETTINGS}); drop overlay_mode= from '
      f'--arg={arg!r} and pick settings with --settings instead'
    )
  if setting not in SETTINGS:
    raise ValueError(f'unknown overlay setting {setting!r}; choose from {SETTINGS}')
  extra = [f'overlay_mode={setting}']
  if 'seeds' not in options and not options.get('paper', False):
    extra.append(f'seeds={case_config.CPU_STUDY_SEEDS}')
  return ','.join(filter(None, [arg, *extra]))


def original_on_generative_images(root: str, arg: str, make_config: MakeConfig) -> dict | None:
  """Table 2: the Original model evaluated on the generatively cleaned test images (table2.json)."""
  path = os.path.join(root, 'table2.json')
  if os.path.exists(path):
    return read_json(path)
  original_dir, generative_dir = os.path.join(root, 'original'), os.path.join(root, 'generative')
  if not (
    os.path.exists(os.path.join(original_dir, RESULTS_FILE))
    and os.path.exists(os.path.join(generative_dir, REMEDIED_IMAGES_FILE))
  ):
    return None
  config = make_config('original', arg)
  result = train_result.load_train_result(os.path.join(original_dir, CLASSIFIER_DIR))
  classifier = registry.build(config.model)
  model, preprocess = classifier.module, classifier.preprocess
  splits = workflow.dataset_stage(config, original_dir)
  with np.load(os.path.join(generative_dir, REMEDIED_IMAGES_FILE)) as cached:
    cleaned = {**splits['test'], 'image': cached['test']}
  scores = evaluation.evaluate_splits(
    model,
    result.variables,
    {'test': cleaned},
    preprocess=preprocess,
    num_classes=int(config.model.num_classes),
  )['test']
  table2 = report.score_row(scores)
  # Fig. 7: what the Original model looks at once the overlays are inpainted away.
  from xaijax import lrp
  from xaijax.lrp import heatmaps

  best = int(np.argmax(result.best_validation_f1))
  shown = preview.first_of_each_class(cleaned, 1)
  relevance = lrp.explain(
    model,
    result.variables_of(best),
    preprocess(cleaned['image'][shown]),
    composite=config.lrp.composite,
    epsilon=float(config.lrp.epsilon),
  )
  heatmaps.write_heatmap_grid(
    os.path.join(root, 'fig7_original_model_on_generative_images.png'),
    cleaned['image'][shown],
    np.asarray(lrp.heatmap(relevance)),
    [CLASS_NAMES[k] for k in cleaned['label'][shown]],
    columns=5,
  )
  write_json(path, table2)
  return table2


def figure5(root: str, cases) -> str | None:
  """One test image under every remedy (the paper's Fig. 5), from each case's remedied images."""
  images = {}
  for case in [c for c in cases if c not in CORRECTION_CASES]:  # corrections keep the images
    path = os.path.join(root, case, REMEDIED_IMAGES_FILE)
    if os.path.exists(path):
      with np.load(path) as cached:
        images[study_report.CASE_TITLES[case]] = cached['test'][0]
  if not images:
    return None
  out = os.path.join(root, 'fig5_remedies.png')
  preview.image_row(images, out, title='Fig. 5: one test image under every remedy')
  return out


def training_curves(root: str, cases) -> dict:
  """case -> its TrainResult (validation curves, stopped epochs), from each case's workdir; the
  ClArC cases, which correct the Original's run and train no classifier of their own, left out."""
  trained = {
    case: train_result.load_train_result(os.path.join(root, case, CLASSIFIER_DIR)) for case in cases
  }
  return {case: result for case, result in trained.items() if result is not None}


def figure9(root: str, trained: dict, title: str) -> str:
  """Validation macro-F1 during training, mean over seeds with a ±1 std band, all cases (the
  paper's Fig. 9); a stopped seed is drawn at its last score from then on. Dashed: the mean best
  score so far, the curve the convergence verdict reads."""
  import matplotlib.pyplot as plt

  figure, axis = plt.subplots(figsize=(7, 4))
  for case, result in trained.items():
    curves = convergence.carried_forward(result.validation_f1)
    mean, std = np.nanmean(curves, axis=0), np.nanstd(curves, axis=0)
    epochs = np.arange(1, len(mean) + 1)
    (line,) = axis.plot(epochs, mean, label=study_report.CASE_TITLES[case])
    axis.fill_between(epochs, mean - std, mean + std, alpha=0.15, color=line.get_color())
    best = convergence.best_so_far(result.validation_f1).mean(axis=0)
    axis.plot(epochs, best, ls='--', lw=0.9, color=line.get_color())
  axis.set_xlabel('epoch')
  axis.set_ylabel('validation macro-F1')
  axis.set_ylim(0, 1)
  axis.grid(alpha=0.3)
  axis.legend(fontsize=8)
  axis.set_title(
    f'Fig. 9, {title}: validation F1, mean ± std over seeds\n(dashed: mean best so far)',
    fontsize=9,
  )
  figure.tight_layout()
  out = os.path.join(root, 'fig9_validation_f1.png')
  figure.savefig(out, dpi=110)
  plt.close(figure)
  return out


def run_setting(
  root: str, setting: str, cases, arg: str, make_config: MakeConfig
) -> SettingOutcome:
  """Every case of one overlay setting under `root/setting`, its Table 2 and figures."""
  directory = os.path.join(root, setting)
  os.makedirs(directory, exist_ok=True)
  arg = setting_arg(arg, setting)
  results = {}
  for case in [c for c in ALL_CASES if c in cases]:
    print(f'== {setting}: {case}', flush=True)
    config = make_config(case, arg)
    # The explanation-quality table asks whether the Original's heatmaps (the paper's Fig. 6, the
    # evidence of the shortcut) can be trusted; for every case it would add minutes each.
    config.quality.enabled = bool(config.quality.enabled) and case == 'original'
    if case in _REUSES_ORIGINAL and 'original' in results:
      config.correction.base_classifier = os.path.join(directory, 'original', CLASSIFIER_DIR)
    config.train.reuse_identical_run = _same_case_elsewhere(root, setting, case)
    results[case] = workflow.run(config, os.path.join(directory, case))
  table2 = original_on_generative_images(directory, arg, make_config)
  figure5(directory, results)
  trained = training_curves(directory, results)
  figure9(directory, trained, study_report.SETTING_TITLES[setting].split(' (')[0])
  verdicts = {
    case: convergence.verdict(result.validation_f1, result.stopped_epoch)
    for case, result in trained.items()
  }
  return SettingOutcome(setting, arg, results, verdicts, table2)


def _same_case_elsewhere(root: str, setting: str, case: str) -> str:
  """The finished classifier of `case` in another overlay setting, or ''. Training copies it
  when its data are byte for byte this setting's (a remedy that replaces the overlay's pixels)."""
  for other in SETTINGS:
    run_dir = os.path.join(root, other, case, CLASSIFIER_DIR)
    if other != setting and os.path.exists(os.path.join(run_dir, train_result.RESULT_FILE)):
      return run_dir
  return ''


def run_study(
  root: str, cases, arg: str, make_config: MakeConfig, settings: Sequence[str] = SETTINGS
) -> str:
  """Every case of `cases` in every overlay setting of `settings` under `root`, then the study's
  report (its path is returned)."""
  unknown = sorted(set(settings) - set(SETTINGS))
  if unknown or not settings:
    raise ValueError(f'overlay settings must be some of {SETTINGS}, got {list(settings)}')
  for setting in settings:
    setting_arg(arg, setting)  # a bad argument fails before the first case trains
  os.makedirs(root, exist_ok=True)
  outcomes = [
    run_setting(root, setting, cases, arg, make_config)
    for setting in [s for s in SETTINGS if s in settings]
  ]
  jax.clear_caches()
  return study_report.write(root, arg, outcomes)
