"""The significance helper against scipy on known numbers."""

import math

import numpy as np
import pytest
from scipy import stats

from xaijax import significance

# Two cases' per-seed test F1 (unequal spread, unequal counts for Welch).
CROP = [0.61, 0.58, 0.66, 0.63, 0.57]
ORIGINAL = [0.42, 0.44, 0.40, 0.43, 0.45]
WIDER = [0.48, 0.64, 0.45, 0.62, 0.57, 0.52]


@pytest.mark.parametrize('a, b', [(CROP, ORIGINAL), (ORIGINAL, WIDER), (WIDER, CROP)])
def test_welch_matches_scipy(a, b):
  ours = significance.welch(a, b)
  reference = stats.ttest_ind(a, b, equal_var=False)
  interval = reference.confidence_interval(0.95)
  assert ours.difference == pytest.approx(np.mean(a) - np.mean(b), abs=1e-12)
  assert ours.t == pytest.approx(reference.statistic, rel=1e-10)
  assert ours.df == pytest.approx(reference.df, rel=1e-10)
  assert ours.p_value == pytest.approx(reference.pvalue, rel=1e-9)
  assert (ours.ci_low, ours.ci_high) == pytest.approx((interval.low, interval.high), rel=1e-9)


def test_paired_matches_scipy():
  ours = significance.paired(CROP, ORIGINAL, confidence=0.9)
  reference = stats.ttest_rel(CROP, ORIGINAL)
  interval = reference.confidence_interval(0.9)
  assert ours.t == pytest.approx(reference.statistic, rel=1e-10)
  assert ours.df == len(CROP) - 1
  assert ours.p_value == pytest.approx(reference.pvalue, rel=1e-9)
  assert (ours.ci_low, ours.ci_high) == pytest.approx((interval.low, interval.high), rel=1e-9)


def test_a_clear_gap_is_significant_and_overlapping_noise_is_not():
  assert significance.welch(CROP, ORIGINAL).significant
  assert not significance.welch(WIDER, WIDER[::-1]).significant
  comparison = significance.welch(CROP, ORIGINAL)
  expected = f'+0.18 [{comparison.ci_low:+.2f}, {comparison.ci_high:+.2f}], p < 0.001'
  assert comparison.describe() == expected, comparison


def test_too_few_seeds_or_no_spread_give_no_p_value():
  for comparison in (
    significance.welch([0.5], [0.4, 0.45]),
    significance.welch([0.5, 0.5], [0.4, 0.4]),
    significance.paired([0.5, 0.6], [0.4, 0.5]),
  ):
    assert math.isnan(comparison.p_value) and not comparison.significant
    assert math.isnan(comparison.ci_low) and comparison.difference > 0
  assert 'p n/a' in significance.welch([0.5], [0.4, 0.45]).describe()


def test_holm_on_a_worked_example():
  # Sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, max(0.04*1, 0.06) = 0.06.
  adjusted = significance.holm([0.01, 0.04, 0.03, 0.005, float('nan')])
  assert adjusted[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02])
  assert math.isnan(adjusted[4])
  assert significance.holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])


def test_ordering_joins_neighbours_by_what_the_test_supports():
  scores = {'original': ORIGINAL, 'crop': CROP, 'wider': WIDER}
  text, neighbours = significance.ordering(scores, {'crop': 'Crop', 'original': 'Original'})
  # Crop 0.61 and wider 0.55 overlap; wider and Original 0.43 differ by Welch (checked by scipy).
  assert stats.ttest_ind(CROP, WIDER, equal_var=False).pvalue > 0.05
  assert stats.ttest_ind(WIDER, ORIGINAL, equal_var=False).pvalue < 0.05
  assert text == 'Crop 0.61 ≈ wider 0.55 > Original 0.43', text
  assert [(upper, lower) for upper, lower, _ in neighbours] == [
    ('crop', 'wider'),
    ('wider', 'original'),
  ]
