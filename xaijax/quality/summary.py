"""The explanation-quality table as results.json and report.md hold it, and which explainer the
data support.

The verdict: an explainer must pass the randomisation sanity check (MPRT: Spearman rank
correlation between its maps on the trained and the fully randomised model below
`sanity_threshold`, mean over seeds); of those that pass, the one with the best mean rank over
the faithfulness measures (RegionPerturbation MoRF and LeRF AOPC, FaithfulnessCorrelation) is
supported. Localisation and complexity describe the maps but do not decide: a faithful map of a
model that reads the overlay *should* point away from the defect.
"""

from __future__ import annotations

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt
import numpy as np

from xaijax.quality.table import MEASURES

FAITHFULNESS = ('RegionPerturbation_MoRF', 'RegionPerturbation_LeRF', 'FaithfulnessCorrelation')
SHORT_NAMES = {
  'MPRT': 'MPRT ↓',
  'MPRT_SSIM': 'MPRT SSIM ↓',
  'EfficientMPRT': 'eMPRT ↑',
  'RandomLogit': 'RandomLogit ↓',
  'RegionPerturbation_MoRF': 'AOPC MoRF ↑',
  'RegionPerturbation_LeRF': 'AOPC LeRF ↓',
  'FaithfulnessCorrelation': 'FaithCorr ↑',
  'RelevanceMassAccuracy': 'RMA ↑',
  'RelevanceRankAccuracy': 'RRA ↑',
  'PointingGame': 'Pointing ↑',
  'AUC': 'AUC ↑',
  'Sparseness': 'Sparseness ↑',
  'Complexity': 'Complexity ↓',
}


def _number(value):
  """A float for JSON, or None (null) for NaN: strict JSON has no NaN, and None == None."""
  value = float(value)
  return None if np.isnan(value) else value


def _numbers(values) -> list:
  return [_number(v) for v in np.asarray(values, np.float64).ravel()]


def _mean_over_seeds(curves) -> list:
  """[S, points] -> the mean over seeds that have a value at each point (None where none has)."""
  values = np.asarray(curves, np.float64)
  counts = np.sum(~np.isnan(values), axis=0)
  return _numbers(np.where(counts > 0, np.nansum(values, axis=0) / np.maximum(counts, 1), np.nan))


def mean_std(per_seed) -> dict:
  """Mean and sample std over the seeds that have a value; None where none has."""
  values = np.asarray(per_seed, np.float64)
  finite = values[~np.isnan(values)]
  return {
    'mean': _number(finite.mean()) if finite.size else None,
    'std': _number(finite.std(ddof=1)) if finite.size > 1 else 0.0,
    'per_seed': _numbers(values),
  }


def summarise(scores: dict, settings, sanity_threshold: float, extra: dict) -> dict:
  """JSON-ready table: explainer x measure as mean, std and per-seed values, the MPRT and region
  perturbation curves (mean over seeds), the measures' meaning, and the verdict."""
  table = {
    method: {name: mean_std(values) for name, values in measures.items()}
    for method, measures in scores['explainers'].items()
  }
  verdict = choose_explainer(table, sanity_threshold)
  return {
    **extra,
    'explainers': list(table),
    'measures': {
      name: {'category': c, 'better': d, 'what': w}
      for name, (c, d, w) in MEASURES.items()
      if name in settings.measures
    },
    'table': table,
    'mprt_cascade': scores['cascade'],
    'mprt_curves': {
      method: {name: _mean_over_seeds(curve) for name, curve in curves.items()}
      for method, curves in scores['mprt_curves'].items()
    },
    'region_perturbation_curves': {
      method: {order: _mean_over_seeds(c) for order, c in curves.items()}
      for method, curves in scores['region_curves'].items()
    },
    'sanity_threshold': sanity_threshold,
    'supported_explainer': verdict['explainer'],
    'verdict': verdict['sentence'],
  }


def choose_explainer(table: dict, sanity_threshold: float) -> dict:
  """{'explainer': name or None, 'sentence': why}, from the table's mean values."""

  def mean(method, name):
    value = table[method][name]['mean'] if name in table[method] else None
    return float('nan') if value is None else value

  methods = list(table)
  if not methods:
    return {'explainer': None, 'sentence': 'No explainer was scored.'}
  measured = any('MPRT' in table[m] for m in methods)
  if measured:
    passing = [m for m in methods if mean(m, 'MPRT') < sanity_threshold]
    failing = [m for m in methods if mean(m, 'MPRT') >= sanity_threshold]
    # Spearman is undefined where the randomised model's maps are constant (e.g. all zero).
    unchecked = [m for m in methods if np.isnan(mean(m, 'MPRT'))]
  else:
    passing, failing, unchecked = methods, [], []
  notes = ''
  if failing:
    notes += f'; {", ".join(failing)} {"fails" if len(failing) == 1 else "fail"} the sanity check'
  if unchecked:
    notes += (
      f'; {", ".join(unchecked)} cannot be checked (constant maps on the randomised model, where '
      'rank correlation is undefined)'
    )
  if not passing:
    return {
      'explainer': None,
      'sentence': (
        f'No explainer passes the sanity check (MPRT Spearman below {sanity_threshold} between '
        f'the maps of the trained and the fully randomised model){notes}.'
      ),
    }
  faithful = [n for n in FAITHFULNESS if any(not np.isnan(mean(m, n)) for m in passing)]
  ranks = _mean_ranks(passing, faithful, mean)
  best = min(passing, key=lambda m: (ranks[m], m)) if faithful else passing[0]
  if measured:
    checked = (
      f'passes the sanity check (MPRT Spearman {mean(best, "MPRT"):.2f} < {sanity_threshold})'
    )
  else:
    checked = 'was not sanity-checked (MPRT was not run)'
  if faithful:
    over = ', '.join(SHORT_NAMES[n].rstrip(' ↑↓') for n in faithful)
    among = 'among those that pass' if measured else 'of all'
    how = f'ranks first on faithfulness {among} (mean rank {ranks[best]:.1f} over {over})'
  else:
    how = 'is the first of those that pass (no faithfulness measure was run)'
  return {
    'explainer': best,
    'sentence': f'The data support **{best}**: it {checked} and {how}{notes}.',
  }


def _mean_ranks(methods, measures, mean) -> dict:
  """Mean over `measures` of each method's rank (1 = best), NaN values ranked last."""
  totals = dict.fromkeys(methods, 0.0)
  for name in measures:
    sign = -1.0 if MEASURES[name][1] == 'higher' else 1.0
    ordered = sorted(
      methods, key=lambda m: np.inf if np.isnan(mean(m, name)) else sign * mean(m, name)
    )
    for rank, method in enumerate(ordered, start=1):
      totals[method] += rank
  return {m: totals[m] / max(len(measures), 1) for m in methods}


def markdown(quality: dict) -> list[str]:
  """The report.md section: the table (mean ± std over seeds), the verdict, the figure."""
  names = list(quality['measures'])
  lines = [
    '## Can the heatmaps be trusted? (explanation quality, mean ± std over seeds)',
    '',
    f'{quality["images"]} test images, target: the predicted class; localisation against the '
    f'{quality["mask_name"]}. ↑ / ↓: higher / lower is better. MPRT randomises the layers top '
    'down (Adebayo et al. 2018); random and edges ignore the model and must fail it.',
    '',
    '| explainer | ' + ' | '.join(SHORT_NAMES[n] for n in names) + ' |',
    '|---|' + '---|' * len(names),
  ]
  for method in quality['explainers']:
    row = quality['table'][method]
    cells = [
      f'{row[n]["mean"]:.2f} ± {row[n]["std"]:.2f}' if row.get(n, {}).get('mean') is not None
      else '–'
      for n in names
    ]  # fmt: skip
    lines.append(f'| {method} | ' + ' | '.join(cells) + ' |')
  lines += ['', quality['verdict'], '']
  if quality.get('figure'):
    lines += [f'![explanation quality]({quality["figure"]})', '']
  return lines


def write_figure(path: str, quality: dict) -> None:
  """MPRT cascade (Spearman to the original map as layers are randomised top down) and region
  perturbation (MoRF) curves, one line per explainer."""
  figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
  cascade = quality['mprt_cascade']
  for method, curves in quality['mprt_curves'].items():
    left.plot(
      range(len(cascade) + 1),
      [1.0] + [np.nan if v is None else v for v in curves['spearman']],
      marker='o',
      ms=3,
      lw=1.2,
      label=method,
    )
  left.set_xticks(range(len(cascade) + 1), ['none'] + cascade, rotation=45, ha='right', fontsize=7)
  left.set_xlabel('randomised from the top down to')
  left.set_ylabel('Spearman to the original map')
  left.set_title('MPRT (cascading)', fontsize=10)
  left.set_ylim(-0.2, 1.05)
  for method, curves in quality['region_perturbation_curves'].items():
    if 'morf' in curves:
      morf = [np.nan if v is None else v for v in curves['morf']]
      right.plot(range(1, len(morf) + 1), morf, lw=1.2, label=method)
  right.set_xlabel('regions replaced (most relevant first)')
  right.set_ylabel('f(x) - f(x perturbed)')
  right.set_title('Region perturbation (MoRF)', fontsize=10)
  for axis in (left, right):
    axis.grid(alpha=0.3)
  right.legend(fontsize=7, loc='center left', bbox_to_anchor=(1.0, 0.5))
  figure.tight_layout()
  figure.savefig(path, dpi=110)
  plt.close(figure)
