"""Choosing a correction's weight (λ) from validation scores alone, as `scripts/sweep_correction.py`
does over whole runs.

Swapped-overlay validation F1 picks the weight; it cannot see where the model looks, and when every
weight scores alike it takes the smallest, whose heatmaps may still sit on the overlay. A cap on
the share of LRP relevance on the validation images' overlays keeps those out of the choice.
"""

from __future__ import annotations

TIE = 0.01  # validation F1 within this of the best counts as the best


def validation_relevance(results: dict) -> float | None:
  """The mean share of relevance on the validation overlays in a run's results.json, or None."""
  share = results.get('validation_relevance_mass_in_overlay')
  return None if share is None else share['mean']


def choose_weight(rows: list[dict], max_validation_relevance: float | None = None) -> float | None:
  """The rule: the highest swapped-overlay validation F1, within TIE of it the smaller weight; with
  `max_validation_relevance`, only among the rows whose validation relevance share is at most it
  (None when no row is)."""
  if max_validation_relevance is not None:
    if any(row['validation_relevance_in_overlay'] is None for row in rows):
      raise ValueError(
        '--max_validation_relevance needs the relevance on the validation overlays, which these '
        'runs lack (the data has no overlay masks, or explanation.json predates it: delete it and '
        'rerun the sweep to recompute it).'
      )
    rows = [r for r in rows if r['validation_relevance_in_overlay'] <= max_validation_relevance]
  if not rows:
    return None
  best = max(row['validation_swapped_f1'] for row in rows)
  return min(row['weight'] for row in rows if row['validation_swapped_f1'] >= best - TIE)
