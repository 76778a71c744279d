"""results.json and report.md of one case: tables of mean ± std over seeds, figures linked."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt
import numpy as np

from xaijax import case_config
from xaijax.workdir import REPORT_FILE, RESULTS_FILE, write_json

# The test sets every case is scored on (Reveal2Revise's three), and how the report names them.
SPLIT_TITLES = {
  'test': 'test (as distributed)',
  'test_clean': 'test, overlays removed',
  'test_attacked': "test, wrong class's logo",
}
TEST_SPLITS = tuple(SPLIT_TITLES)


def test_splits(data_config) -> tuple[str, ...]:
  """The test sets a case is scored on: without overlays there is no clean or attacked variant."""
  return TEST_SPLITS if data_config.overlay_mode != 'none' else ('test',)


def case_name(config) -> str:
  """'original', 'blur', ..., 'rrr', ...; a case on masks the reveal found gets '_found'."""
  if config.correction.name != 'none':
    return config.correction.name + ('_found' if config.correction.masks == 'found' else '')
  case = config.remedy.name if config.remedy.name != 'none' else 'original'
  return case + '_found' if config.remedy.region == 'found' else case


def write_validation_curves(path: str, validation_f1: np.ndarray, seeds, title: str) -> None:
  """Validation macro-F1 per epoch of every seed (the paper's Fig. 9 for one case)."""
  figure, axis = plt.subplots(figsize=(6, 3.5))
  for seed, curve in zip(seeds, np.asarray(validation_f1)):
    axis.plot(np.arange(1, len(curve) + 1), curve, lw=1.2, label=f'seed {seed}')
  axis.set_xlabel('epoch')
  axis.set_ylabel('validation macro-F1')
  axis.set_ylim(0, 1)
  axis.set_title(title, fontsize=10)
  if len(seeds) <= 10:
    axis.legend(fontsize=7, ncol=2)
  axis.grid(alpha=0.3)
  figure.tight_layout()
  figure.savefig(path, dpi=110)
  plt.close(figure)


def pm(summary: dict, digits: int = 2) -> str:
  return f'{summary["mean"]:.{digits}f} ± {summary["std"]:.{digits}f}'


def pm_or_skipped(summary: dict | None, digits: int = 3) -> str:
  return 'skipped: the data keeps no such mask' if summary is None else pm(summary, digits)


def score_row(split_scores: dict) -> dict:
  return {
    metric: {
      'mean': split_scores['mean'][metric],
      'std': split_scores['std'][metric],
      'per_seed': split_scores['per_seed'][metric],
    }
    for metric in ('f1', 'precision', 'recall')
  }


def mean_std(values) -> dict:
  values = np.asarray(values, np.float64)
  return {
    'mean': float(np.nanmean(values)),
    'std': float(np.nanstd(values, ddof=1)) if len(values) > 1 else 0.0,
    'per_seed': [float(v) for v in values],
  }


def correction_summary(measures: dict) -> dict:
  """correction.json in the shape of results.json: mean ± std over seeds."""
  seconds = measures['seconds_per_epoch']
  summary = {
    'settings': measures['correction'],
    'concept_sensitivity': mean_std(measures['concept_sensitivity']),
    'concept_directions': measures['concept_directions'],
    'validation_f1': {name: mean_std(v) for name, v in measures['validation_f1'].items()},
    'seconds_per_epoch': seconds,
  }
  if seconds.get('plain') and seconds.get('corrected'):
    summary['epoch_time_ratio'] = seconds['corrected'] / seconds['plain']
  return summary


def correction_lines(summary: dict) -> list[str]:
  settings, seconds = summary['settings'], summary['seconds_per_epoch']
  validation = summary['validation_f1']
  timing = ', '.join(f'{name} {value:.2f} s' for name, value in seconds.items() if value)
  if 'epoch_time_ratio' in summary:
    timing += f' (ratio {summary["epoch_time_ratio"]:.2f})'
  return [
    '## Model correction',
    '',
    f'`{settings["name"]}`: weight (λ) {settings["weight"]}, masks `{settings["masks"]}`, '
    f'early stopping on validation `{settings["validation"]}`; concept at the input of '
    f'`{settings["layer"]}` (`{settings["concept"]}`, `{settings["cav"]}` CAV, '
    f'{summary["concept_directions"]} directions).',
    '',
    '| measure | mean ± std over seeds |',
    '|---|---|',
    '| TCAV sensitivity to the concept, mean &#124;∇ŷ·v&#124; (test) | '
    f'{pm(summary["concept_sensitivity"], 4)} |',
    f'| validation macro-F1, as distributed | {pm(validation["validation"])} |',
    f'| validation macro-F1, overlays swapped | {pm(validation["validation_overlays_swapped"])} |',
    '',
    f'Wall seconds per training epoch (median, first epoch left out): {timing or "not timed"}.',
    '',
  ]


def write_case_report(config, workdir: str, result, stages: dict, timings: dict) -> dict:
  evaluation, explanation = stages['evaluate'], stages['explain']
  case = case_name(config)
  write_validation_curves(
    os.path.join(workdir, 'validation_f1.png'),
    result.validation_f1,
    result.seeds,
    f'{case}: validation macro-F1 per seed',
  )
  results = {
    'case': case,
    'dataset': case_config.describe_data(config.data),
    'seeds': [int(s) for s in result.seeds],
    'epochs_run': int(result.epochs_run),
    'best_epoch': [int(e) for e in result.best_epoch],
    'splits': {name: score_row(evaluation[name]) for name in TEST_SPLITS if name in evaluation},
    'relevance_mass_in_overlay': explanation['relevance_mass_in_overlay'],
    'validation_relevance_mass_in_overlay': explanation.get('validation_relevance_mass_in_overlay'),
    'relevance_mass_in_strips': explanation['relevance_mass_in_strips'],
    'relevance_mass_in_defect': explanation['relevance_mass_in_defect'],
    'settings': {
      'data': config.data.to_dict(),
      'remedy': config.remedy.to_dict(),
      'model': config.model.to_dict(),
      'train': config.train.to_dict(),
      'lrp': config.lrp.to_dict(),
      'quality': config.quality.to_dict(),
    },
    'wall_time_seconds': {**timings, 'total': round(sum(timings.values()), 1)},
  }
  if 'inpainting' in stages:
    results['inpainting'] = stages['inpainting']
  if 'quality' in stages:
    results['explanation_quality'] = stages['quality']
  if 'measure' in stages:
    results['correction'] = correction_summary(stages['measure'])
    results['settings']['correction'] = config.correction.to_dict()
  if 'reveal' in stages:
    from xaijax.reveal import report_section

    results['reveal'] = report_section.results_entry(stages['reveal'])
  write_json(os.path.join(workdir, RESULTS_FILE), results)

  if config.correction.name != 'none':
    edit = f'model correction: `{config.correction.name}` (the images keep their overlays)'
  else:
    edit = f'remedy: `{config.remedy.name}` (region: {config.remedy.region})'
  lines = [
    f'# Case `{case}`',
    '',
    f'Dataset: {results["dataset"]}; {edit}; {len(result.seeds)} seeds; '
    f'{results["epochs_run"]} epochs run; '
    f'wall time {results["wall_time_seconds"]["total"]:.0f} s.',
    '',
    '## Test scores (macro, mean ± std over seeds)',
    '',
    '| test set | F1 | recall | precision |',
    '|---|---|---|---|',
  ]
  for name in TEST_SPLITS:
    if name not in results['splits']:
      lines.append(
        f'| {SPLIT_TITLES[name]} | skipped: the data has no overlays to remove or swap | | |'
      )
      continue
    row = results['splits'][name]
    lines.append(
      f'| {SPLIT_TITLES[name]} | {pm(row["f1"])} | {pm(row["recall"])} | {pm(row["precision"])} |'
    )
  lines += [
    '',
    '## Where the model looks (LRP, ' + explanation['composite'] + ' rule, predicted class)',
    '',
    'Share of positive relevance on the test images (mean ± std over seeds):',
    '',
    '| region | relevance share |',
    '|---|---|',
    f'| overlay pixels | {pm_or_skipped(results["relevance_mass_in_overlay"])} |',
    f'| top and bottom strips | {pm(results["relevance_mass_in_strips"], 3)} |',
    f'| defect | {pm_or_skipped(results["relevance_mass_in_defect"])} |',
    '',
  ]
  if results['validation_relevance_mass_in_overlay'] is not None:
    share = pm(results['validation_relevance_mass_in_overlay'], 3)
    lines += [f'On the validation images, what a sweep may choose by: {share} on the overlay.', '']
  if 'quality' in stages:
    from xaijax.quality import summary  # pylint: disable=import-outside-toplevel

    lines += summary.markdown(stages['quality'])
  if 'correction' in results:
    lines += correction_lines(results['correction'])
  if 'reveal' in stages:
    lines += report_section.markdown(stages['reveal'], results['splits'])
  if 'inpainting' in results:
    lines += [
      '## Inpainting quality against the clean images (test split)',
      '',
      '| method | PSNR in mask (dB) | SSIM in mask | L1 in mask | PSNR image (dB) | SSIM image |',
      '|---|---|---|---|---|---|',
    ]
    for method, q in results['inpainting'].items():
      lines.append(
        f'| {method} | {q["psnr_in_mask"]:.2f} | {q["ssim_in_mask"]:.3f} | {q["l1_in_mask"]:.2f} | '
        f'{q["psnr"]:.2f} | {q["ssim"]:.3f} |'
      )
    lines += ['', '![inpainting](inpainting_grid.png)', '']
  lines += [
    '## Figures',
    '',
    '![validation F1](validation_f1.png)',
    '',
    f'LRP of the best seed ({explanation["best_seed"]}), one test image per class:',
    '',
    '![LRP examples](lrp_examples.png)',
    '',
    '![LRP class means](lrp_class_means.png)',
    '',
    'The data: ![classes](dataset_classes.png)',
    '',
    '![remedies](dataset_remedies.png)',
    '',
  ]
  with open(os.path.join(workdir, REPORT_FILE), 'w') as f:
    f.write('\n'.join(lines))
  return results
