"""report.md of the study: one function per table, each returning its markdown lines.

The tables follow the paper (Tables 1-3, Figures 5-9) for every overlay setting, with the paper's
numbers beside ours, and add what the paper does not give: which differences between cases are
real (Welch's t-test over seeds, xaijax/significance.py) and whether training converged
(xaijax/convergence.py).
"""

from __future__ import annotations

import os

from xaijax import report, significance
from xaijax.convergence import PLATEAU_EPOCHS, PLATEAU_TOLERANCE
from xaijax.corrections import table as correction_table

CASE_TITLES = {
  'original': 'Original',
  'blur': 'Blur',
  'black_stripe': 'Black Stripe',
  'crop': 'Crop',
  'generative': 'Generative',
  'telea': 'Telea (not in the paper)',
  **correction_table.CORRECTION_TITLES,
}
SETTING_TITLES = {
  'random': "random overlays (the paper's setting)",
  'spurious': 'spurious logos (the shortcut setting)',
}
SETTING_DESCRIPTIONS = {
  'random': 'text and a logo drawn at random for every image, unrelated to the class, as the paper '
  'describes its data ("adding random information and company logos").',
  'spurious': "in train and validation the logo is the class's own with probability "
  'data.logo_class_probability; in test it is drawn at random, so a model that learned the logo '
  'loses there.',
}
# Bento et al. 2021, Tables 1-3: (F1, recall, precision) as (mean, std), 30 seeds on GC10-DET with
# random overlays.
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


def test_f1(case_results: dict) -> list[float]:
  """Per-seed macro-F1 on the test split (as distributed)."""
  return case_results['splits']['test']['f1']['per_seed']


def paper_ordering() -> str:
  ranked = sorted(PAPER_TABLE3, key=lambda case: -PAPER_TABLE3[case][0][0])
  return ' > '.join(f'{CASE_TITLES[c]} {PAPER_TABLE3[c][0][0]:.2f}' for c in ranked)


def table1(outcome) -> list[str]:
  if 'original' not in outcome.results:
    return []
  pm, row = report.pm, outcome.results['original']['splits']['test']
  return [
    '### Table 1: the Original model on the test split',
    '',
    '| | F1 | Recall | Precision |',
    '|---|---|---|---|',
    f'| Original (ours) | {pm(row["f1"])} | {pm(row["recall"])} | {pm(row["precision"])} |',
    '| Original (paper) | ' + ' | '.join(paper_pm(p) for p in PAPER_TABLE3['original']) + ' |',
    '',
  ]


def table2(outcome) -> list[str]:
  if outcome.table2 is None:
    return []
  pm, row = report.pm, outcome.table2
  return [
    '### Table 2: the Original model on generatively cleaned test images',
    '',
    '| | F1 | Recall | Precision |',
    '|---|---|---|---|',
    f'| ours | {pm(row["f1"])} | {pm(row["recall"])} | {pm(row["precision"])} |',
    '| paper | ' + ' | '.join(paper_pm(p) for p in PAPER_TABLE2) + ' |',
    '',
    f'![Fig. 7]({outcome.setting}/fig7_original_model_on_generative_images.png)',
    '',
  ]


def table3(outcome) -> list[str]:
  pm = report.pm
  lines = [
    '### Table 3: every case',
    '',
    '| case | F1 | Recall | Precision | paper F1 | F1 test_clean | F1 test_attacked | '
    'relevance in overlay | epochs run | converged |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ]
  for case, res in outcome.results.items():
    if case in correction_table.CORRECTION_CASES:
      continue  # in their own table
    test = res['splits']['test']
    paper = paper_pm(PAPER_TABLE3[case][0]) if case in PAPER_TABLE3 else '-'
    verdict = outcome.verdicts[case]
    lines.append(
      f'| {CASE_TITLES[case]} | {pm(test["f1"])} | {pm(test["recall"])} | '
      f'{pm(test["precision"])} | {paper} | {pm(res["splits"]["test_clean"]["f1"])} | '
      f'{pm(res["splits"]["test_attacked"]["f1"])} | {pm(res["relevance_mass_in_overlay"], 3)} | '
      f'{res["epochs_run"]} | {"yes" if verdict.converged else "**no**"} |'
    )
  lines += [
    '',
    "test_clean: the same test images without overlay; test_attacked: with a wrong class's logo. A "
    'model that learned the logo shortcut loses F1 on test_attacked; relevance in overlay is the '
    "share of positive LRP relevance on the overlay's pixels (Arras et al.'s relevance mass).",
    '',
  ]
  return lines


def comparisons(outcome) -> list[str]:
  """Each case against Original and the best against the runner-up (Welch), and the ordering of
  the cases the tests support."""
  scores = {case: test_f1(res) for case, res in outcome.results.items()}
  if len(scores) < 2:
    return []
  titles = {case: CASE_TITLES[case] for case in scores}
  lines = [
    '### Which differences are real',
    '',
    "Test macro-F1 per seed, Welch's t-test (two-sided), differences with 95% confidence "
    f'intervals; significant means p < {significance.ALPHA}.',
    '',
  ]
  remedies = [case for case in scores if case != 'original']
  if 'original' in scores and remedies:
    tests = {case: significance.welch(scores[case], scores['original']) for case in remedies}
    adjusted = dict(zip(remedies, significance.holm([t.p_value for t in tests.values()])))
    lines += [
      f'| case | minus Original [95% CI] | p | Holm-adjusted p ({len(remedies)} tests) |',
      '|---|---|---|---|',
    ]
    for case, test in tests.items():
      interval = f'{test.difference:+.3f} [{test.ci_low:+.3f}, {test.ci_high:+.3f}]'
      lines.append(
        f'| {titles[case]} | {interval} | {significance.format_p(test.p_value)} | '
        f'{significance.format_p(adjusted[case])} |'
      )
    best_remedy = max(remedies, key=lambda case: tests[case].difference)
    lines += ['', original_against_best_remedy(titles[best_remedy], tests[best_remedy], scores)]
  text, neighbours = significance.ordering(scores, titles)
  best, runner_up, test = neighbours[0]
  verdict = 'significantly better' if test.significant else '**not significantly** better'
  lines += [
    '',
    f'Best against runner-up: {titles[best]} is {verdict} than {titles[runner_up]} '
    f'({test.describe(3)}).',
    '',
    f"**The ordering these numbers support** ('>' where Welch's test separates neighbours, '≈' "
    f'where it cannot): {text}.',
    '',
    f"The paper's (30 seeds, no test reported): {paper_ordering()}.",
    '',
  ]
  return lines


def original_against_best_remedy(title: str, test, scores) -> str:
  """The sentence on the paper's claim: is Original below the best remedy by a real margin?"""
  seeds = (
    f'{len(scores["original"])} seeds each' if len(set(map(len, scores.values()))) == 1 else ''
  )
  said = f'{title} minus Original: {test.describe(3)}'
  if test.difference <= 0:
    return f'Original is not below any remedy: the best remedy, {said}.'
  if test.significant:
    return f'Original is significantly below the best remedy, {said} ({seeds}).'
  return f'Original is **not significantly** below the best remedy, {said} ({seeds}).'


def convergence_table(outcome) -> list[str]:
  lines = [
    '### Did training converge?',
    '',
    'Converged: every seed stopped early, or the best validation F1 so far (the score of the '
    'weights early stopping restores; mean over seeds, dashed in Fig. 9) rose by at most '
    f'{PLATEAU_TOLERANCE} in the last {PLATEAU_EPOCHS} epochs. The raw curve is noisier: macro-F1 '
    'on a small validation split moves by a few hundredths from epoch to epoch.',
    '',
    '| case | epochs run | best epoch per seed | converged |',
    '|---|---|---|---|',
  ]
  for case, verdict in outcome.verdicts.items():
    best_epochs = ', '.join(str(e) for e in outcome.results[case]['best_epoch'])
    lines.append(
      f'| {CASE_TITLES[case]} | {verdict.epochs_run} | {best_epochs} | {verdict.describe()} |'
    )
  return [*lines, '']


def inpainting_table(outcome) -> list[str]:
  generative = outcome.results.get('generative', {})
  if 'inpainting' not in generative:
    return []
  lines = [
    '### Inpainting quality (test split, against the clean images)',
    '',
    '| method | PSNR in mask (dB) | SSIM in mask | L1 in mask |',
    '|---|---|---|---|',
  ]
  for method, q in generative['inpainting'].items():
    lines.append(
      f'| {method} | {q["psnr_in_mask"]:.2f} | {q["ssim_in_mask"]:.3f} | {q["l1_in_mask"]:.2f} |'
    )
  return [*lines, '']


def model_corrections(outcome) -> list[str]:
  """The corrections beside the Original and the best image remedy (none when none ran)."""
  return correction_table.table_lines(outcome.results, CASE_TITLES)


def figures(outcome) -> list[str]:
  setting = outcome.setting
  lines = ['### Figures', '', f'![Fig. 5]({setting}/fig5_remedies.png)', '']
  for case, title in (
    ('original', 'Fig. 6: LRP of the Original model'),
    ('generative', 'Fig. 8: LRP of the Generative model'),
  ):
    if case in outcome.results:
      lines += [f'{title}:', '', f'![{title}]({setting}/{case}/lrp_examples.png)', '']
  lines += [
    f'![Fig. 9]({setting}/fig9_validation_f1.png)',
    '',
    'Wall time per case (s): '
    + ', '.join(f'{c} {r["wall_time_seconds"]["total"]:.0f}' for c, r in outcome.results.items()),
    '',
  ]
  return lines


def side_by_side(outcomes) -> list[str]:
  """Test macro-F1 of every case in every setting, beside the paper's (its setting is random)."""
  cases = [case for case in CASE_TITLES if any(case in o.results for o in outcomes)]
  header = ' | '.join(f'ours, {o.setting}' for o in outcomes)
  lines = [
    '## Table 3 side by side: test macro-F1',
    '',
    f'| case | paper (random overlays, GC10-DET) | {header} |',
    '|---|---|' + '---|' * len(outcomes),
  ]
  for case in cases:
    paper = paper_pm(PAPER_TABLE3[case][0]) if case in PAPER_TABLE3 else '-'
    ours = ' | '.join(
      report.pm(o.results[case]['splits']['test']['f1']) if case in o.results else '-'
      for o in outcomes
    )
    lines.append(f'| {CASE_TITLES[case]} | {paper} | {ours} |')
  return [*lines, '']


SETTING_SECTIONS = (
  table1,
  table2,
  table3,
  comparisons,
  convergence_table,
  model_corrections,
  inpainting_table,
  figures,
)


def write(root: str, arg: str, outcomes) -> str:
  """report.md under `root` from every setting's outcome; returns its path."""
  lines = [
    '# The study of Bento et al. 2021, reproduced',
    '',
    f'Config argument: `{arg or "(none: CPU-sized, embedded data)"}`; per setting: '
    + '; '.join(f'{o.setting} `{o.arg}`' for o in outcomes)
    + '. Scores are macro averages over the test split, mean ± std over seeds; the paper reports '
    'GC10-DET with random overlays, 30 seeds.',
    '',
    *side_by_side(outcomes),
  ]
  for outcome in outcomes:
    lines += [
      f'## Setting: {SETTING_TITLES[outcome.setting]}',
      '',
      SETTING_DESCRIPTIONS[outcome.setting],
      '',
    ]
    for section in SETTING_SECTIONS:
      lines += section(outcome)
  out = os.path.join(root, 'report.md')
  with open(out, 'w') as f:
    f.write('\n'.join(lines))
  return out
