"""The paper's whole study: every case, then one report with Tables 1-3 and Figures 5-9 beside the
paper's numbers (`scripts/reproduce_paper.py` is its command line).

Finished cases (and finished stages of a killed case) are reused, so rerunning continues the study.
"""

from __future__ import annotations

from collections.abc import Callable
import os

import jax
import ml_collections
import numpy as np

from xaijax import evaluation, report, workflow
from xaijax.corrections import table as correction_table
from xaijax.data import CLASS_NAMES, preview
from xaijax.models import registry
from xaijax.training import classifier as classifier_training
from xaijax.workdir import CLASSIFIER_DIR, REMEDIED_IMAGES_FILE, RESULTS_FILE, read_json, write_json

MakeConfig = Callable[[str, str], ml_collections.ConfigDict]  # (case, arg) -> config

CASES = ('original', 'blur', 'black_stripe', 'crop', 'generative', 'telea')
# Cases that correct the model instead of the images; run when named in --cases.
CORRECTION_CASES = correction_table.CORRECTION_CASES
ALL_CASES = CASES + CORRECTION_CASES
CASE_TITLES = {
  **correction_table.CORRECTION_TITLES,
  'original': 'Original',
  'blur': 'Blur',
  'black_stripe': 'Black Stripe',
  'crop': 'Crop',
  'generative': 'Generative',
  'telea': 'Telea (not in the paper)',
}
# Bento et al. 2021, Tables 1-3: (F1, recall, precision) as (mean, std).
PAPER_TABLE3 = {
  'original': ((0.50, 0.02), (0.51, 0.02), (0.52, 0.02)),
  'blur': ((0.54, 0.03), (0.52, 0.03), (0.61, 0.05)),
  'black_stripe': ((0.47, 0.01), (0.47, 0.01), (0.48, 0.01)),
  'crop': ((0.51, 0.04), (0.50, 0.04), (0.56, 0.03)),
  'generative': ((0.65, 0.02), (0.64, 0.02), (0.69, 0.03)),
}
PAPER_TABLE2 = ((0.33, 0.02), (0.31, 0.02), (0.64, 0.02))


def paper_pm(pair) -> str:
  return f'{pair[0]:.2f} ± {pair[1]:.2f}'


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
  result = classifier_training.load_train_result(os.path.join(original_dir, CLASSIFIER_DIR))
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
        images[CASE_TITLES[case]] = cached['test'][0]
  if not images:
    return None
  out = os.path.join(root, 'fig5_remedies.png')
  preview.image_row(images, out, title='Fig. 5: one test image under every remedy')
  return out


def figure9(root: str, results: dict) -> str:
  """Validation macro-F1 during training, mean over seeds with a ±1 std band, all cases (the
  paper's Fig. 9)."""
  import matplotlib.pyplot as plt

  figure, axis = plt.subplots(figsize=(7, 4))
  for case in results:
    trained = classifier_training.load_train_result(os.path.join(root, case, CLASSIFIER_DIR))
    if trained is None:  # a ClArC case corrects the Original's run and trains none of its own
      continue
    curves = np.asarray(trained.validation_f1, np.float64)
    # A stopped seed keeps its best score from then on (NaN in the curve): carry it forward.
    for row in curves:
      for k in range(1, len(row)):
        if np.isnan(row[k]):
          row[k] = row[k - 1]
    mean, std = np.nanmean(curves, axis=0), np.nanstd(curves, axis=0)
    epochs = np.arange(1, len(mean) + 1)
    axis.plot(epochs, mean, label=CASE_TITLES[case])
    axis.fill_between(epochs, mean - std, mean + std, alpha=0.15)
  axis.set_xlabel('epoch')
  axis.set_ylabel('validation macro-F1')
  axis.set_ylim(0, 1)
  axis.grid(alpha=0.3)
  axis.legend(fontsize=8)
  axis.set_title('Fig. 9: validation F1 during training (mean ± std over seeds)', fontsize=10)
  figure.tight_layout()
  out = os.path.join(root, 'fig9_validation_f1.png')
  figure.savefig(out, dpi=110)
  plt.close(figure)
  return out


def write_study_report(root: str, arg: str, results: dict, table2: dict | None) -> str:
  pm = report.pm
  lines = [
    '# The study of Bento et al. 2021, reproduced',
    '',
    f'Config argument: `{arg or "(none: CPU-sized, embedded data)"}`. Cases: {", ".join(results)}. '
    "Scores are macro averages over the test split, mean ± std over seeds; the paper's numbers "
    '(GC10-DET with overlays, 30 seeds) stand beside ours.',
    '',
  ]
  if 'original' in results:
    row = results['original']['splits']['test']
    lines += [
      '## Table 1: the Original model on the test split',
      '',
      '| | F1 | Recall | Precision |',
      '|---|---|---|---|',
      f'| Original (ours) | {pm(row["f1"])} | {pm(row["recall"])} | {pm(row["precision"])} |',
      '| Original (paper) | ' + ' | '.join(paper_pm(p) for p in PAPER_TABLE3['original']) + ' |',
      '',
    ]
  if table2 is not None:
    lines += [
      '## Table 2: the Original model on generatively cleaned test images',
      '',
      '| | F1 | Recall | Precision |',
      '|---|---|---|---|',
      f'| ours | {pm(table2["f1"])} | {pm(table2["recall"])} | {pm(table2["precision"])} |',
      '| paper | ' + ' | '.join(paper_pm(p) for p in PAPER_TABLE2) + ' |',
      '',
      '![Fig. 7](fig7_original_model_on_generative_images.png)',
      '',
    ]
  lines += [
    '## Table 3: every case',
    '',
    '| case | F1 | Recall | Precision | paper F1 | F1 test_clean | F1 test_attacked | '
    'relevance in overlay | epochs run |',
    '|---|---|---|---|---|---|---|---|---|',
  ]
  for case, res in results.items():
    if case in CORRECTION_CASES:
      continue  # in their own table, below
    test = res['splits']['test']
    paper = paper_pm(PAPER_TABLE3[case][0]) if case in PAPER_TABLE3 else '-'
    lines.append(
      f'| {CASE_TITLES[case]} | {pm(test["f1"])} | {pm(test["recall"])} | '
      f'{pm(test["precision"])} | '
      f'{paper} | {pm(res["splits"]["test_clean"]["f1"])} | '
      f'{pm(res["splits"]["test_attacked"]["f1"])} | {pm(res["relevance_mass_in_overlay"], 3)} | '
      f'{res["epochs_run"]} |'
    )
  lines += [
    '',
    "test_clean: the same test images without overlay; test_attacked: with a wrong class's logo. A "
    'model that learned the logo shortcut loses F1 on test_attacked; relevance in overlay is the '
    "share of positive LRP relevance on the overlay's pixels (Arras et al.'s relevance mass).",
    '',
  ]
  lines += correction_table.table_lines(results, CASE_TITLES)
  if 'generative' in results and 'inpainting' in results['generative']:
    lines += [
      '## Inpainting quality (test split, against the clean images)',
      '',
      '| method | PSNR in mask (dB) | SSIM in mask | L1 in mask |',
      '|---|---|---|---|',
    ]
    for method, q in results['generative']['inpainting'].items():
      lines.append(
        f'| {method} | {q["psnr_in_mask"]:.2f} | {q["ssim_in_mask"]:.3f} | {q["l1_in_mask"]:.2f} |'
      )
    lines.append('')
  lines += ['## Figures', '', '![Fig. 5](fig5_remedies.png)', '']
  for case, title in (
    ('original', 'Fig. 6: LRP of the Original model'),
    ('generative', 'Fig. 8: LRP of the Generative model'),
  ):
    if case in results:
      lines += [f'{title}:', '', f'![{title}]({case}/lrp_examples.png)', '']
  lines += [
    '![Fig. 9](fig9_validation_f1.png)',
    '',
    'Wall time per case (s): '
    + ', '.join(f'{c} {r["wall_time_seconds"]["total"]:.0f}' for c, r in results.items()),
    '',
  ]
  out = os.path.join(root, 'report.md')
  with open(out, 'w') as f:
    f.write('\n'.join(lines))
  return out


def run_study(root: str, cases, arg: str, make_config: MakeConfig) -> str:
  """Every case of `cases` (in the study's order) under `root`, then the study's report (its path
  is returned)."""
  os.makedirs(root, exist_ok=True)
  results = {}
  for case in [c for c in ALL_CASES if c in cases]:
    print(f'== {case}', flush=True)
    config = make_config(case, arg)
    base = os.path.join(root, 'original', CLASSIFIER_DIR)
    if case in ('pclarc', 'aclarc', 'rrclarc') and 'original' in results:
      # The ClArC cases correct the study's own Original models instead of training them again.
      config.correction.base_classifier = base
    results[case] = workflow.run(config, os.path.join(root, case))
  table2 = original_on_generative_images(root, arg, make_config)
  figure5(root, results)
  figure9(root, results)
  jax.clear_caches()
  return write_study_report(root, arg, results, table2)
