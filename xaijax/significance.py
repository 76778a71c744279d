"""Which differences between cases are real: t-tests over seeds, differences with confidence
intervals, and the ordering of the cases the numbers support.

Every case is trained on the same seed values, but seed s of two cases sees different images, so the
default comparison is Welch's t-test (independent samples, unequal variances); `paired` is there
for runs that really are paired. The statistics are written out here (mean difference, standard
error, Welch-Satterthwaite degrees of freedom) and scipy supplies the t distribution; the tests
check both against `scipy.stats.ttest_ind` / `ttest_rel`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import dataclasses
import itertools
import math

import numpy as np
from scipy import stats

ALPHA = 0.05  # significance level of every statement the report makes


@dataclasses.dataclass(frozen=True)
class Comparison:
  """`a` against `b`: the difference of means, its confidence interval and the test's p-value."""

  test: str  # 'welch' or 'paired'
  difference: float  # mean(a) - mean(b)
  ci_low: float
  ci_high: float
  confidence: float
  t: float
  df: float
  p_value: float  # two-sided; NaN when the test cannot be made (fewer than 2 values, no spread)

  @property
  def significant(self) -> bool:
    return bool(self.p_value < ALPHA)

  def describe(self, digits: int = 2) -> str:
    """'+0.12 [0.05, 0.19], p = 0.004' (the interval at `confidence`)."""
    interval = f'[{self.ci_low:+.{digits}f}, {self.ci_high:+.{digits}f}]'
    return f'{self.difference:+.{digits}f} {interval}, {format_p(self.p_value)}'


def format_p(p_value: float) -> str:
  if not math.isfinite(p_value):
    return 'p n/a'
  return 'p < 0.001' if p_value < 0.001 else f'p = {p_value:.3f}'


def _values(values: Sequence[float], name: str) -> np.ndarray:
  array = np.asarray(values, np.float64)
  if array.ndim != 1:
    raise ValueError(f'{name} must be a 1-D sequence of per-seed scores, got shape {array.shape}')
  return array[np.isfinite(array)]


def _comparison(test, difference, standard_error, df, confidence) -> Comparison:
  if not (df > 0 and standard_error > 0):
    nan = float('nan')
    return Comparison(test, float(difference), nan, nan, confidence, nan, nan, nan)
  t = difference / standard_error
  p_value = 2.0 * stats.t.sf(abs(t), df)
  half_width = stats.t.ppf(0.5 + confidence / 2.0, df) * standard_error
  return Comparison(
    test,
    float(difference),
    float(difference - half_width),
    float(difference + half_width),
    confidence,
    float(t),
    float(df),
    float(p_value),
  )


def welch(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> Comparison:
  """Welch's t-test of mean(a) - mean(b); the interval uses the Welch-Satterthwaite df."""
  a, b = _values(a, 'a'), _values(b, 'b')
  if len(a) < 2 or len(b) < 2:
    return _comparison('welch', _mean_difference(a, b), 0.0, 0.0, confidence)
  var_a, var_b = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
  standard_error = math.sqrt(var_a + var_b)
  denominator = var_a**2 / (len(a) - 1) + var_b**2 / (len(b) - 1)
  df = (var_a + var_b) ** 2 / denominator if denominator > 0 else 0.0
  return _comparison('welch', a.mean() - b.mean(), standard_error, df, confidence)


def paired(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> Comparison:
  """The paired t-test of mean(a - b), for a[i] and b[i] from the same seed."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if a.shape != b.shape or a.ndim != 1:
    raise ValueError(
      f'a paired test needs two equal-length 1-D sequences, got {a.shape}, {b.shape}'
    )
  differences = _values(a - b, 'a - b')
  if len(differences) < 2:
    return _comparison('paired', float(np.mean(differences)), 0.0, 0.0, confidence)
  standard_error = differences.std(ddof=1) / math.sqrt(len(differences))
  return _comparison(
    'paired', differences.mean(), standard_error, len(differences) - 1.0, confidence
  )


def _mean_difference(a: np.ndarray, b: np.ndarray) -> float:
  return float(a.mean() - b.mean()) if len(a) and len(b) else float('nan')


def holm(p_values: Sequence[float]) -> list[float]:
  """Holm-Bonferroni adjusted p-values of one family of tests (NaN stays NaN)."""
  p = np.asarray(p_values, np.float64)
  finite = np.flatnonzero(np.isfinite(p))
  adjusted = np.full(p.shape, np.nan)
  order = finite[np.argsort(p[finite], kind='stable')]
  running = 0.0
  for rank, index in enumerate(order):
    running = max(running, (len(order) - rank) * p[index])
    adjusted[index] = min(1.0, running)
  return adjusted.tolist()


def ordering(
  scores: Mapping[str, Sequence[float]], titles: Mapping[str, str] | None = None
) -> tuple[str, list[tuple[str, str, Comparison]]]:
  """The cases from best to worst mean, each neighbour pair joined by '>' where Welch's test says
  the upper one is better (p < ALPHA) and by '≈' where it cannot tell them apart.

  Returns the chain as text, e.g. 'Crop 0.61 ≈ Generative 0.58 > Original 0.42', and the
  neighbour comparisons (upper, lower, comparison) it rests on.
  """
  titles = titles or {}
  means = {case: float(np.nanmean(values)) for case, values in scores.items()}
  ranked = sorted(means, key=lambda case: -means[case])
  text = f'{titles.get(ranked[0], ranked[0])} {means[ranked[0]]:.2f}'
  neighbours = []
  for upper, lower in itertools.pairwise(ranked):
    comparison = welch(scores[upper], scores[lower])
    neighbours.append((upper, lower, comparison))
    link = '>' if comparison.significant else '≈'
    text += f' {link} {titles.get(lower, lower)} {means[lower]:.2f}'
  return text, neighbours
