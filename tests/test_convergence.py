"""The convergence rule: every seed stopped early, or the best-so-far score stopped rising."""

import numpy as np
import pytest

from xaijax import convergence

NAN = np.nan


def best_so_far_by_hand(row):
  best, out = -np.inf, []
  for value in row:
    if not np.isnan(value):
      best = max(best, value)
    out.append(best)
  return out


def test_a_rising_curve_has_not_converged():
  rising = np.tile(np.linspace(0.2, 0.6, 30), (3, 1))
  verdict = convergence.verdict(rising, np.zeros(3, int))
  assert not verdict.converged and not verdict.stopped
  # What epochs 21..30 added to the best so far: 0.6 minus the value at epoch 20.
  assert verdict.best_so_far_rise == pytest.approx(0.6 - rising[0, 19])
  assert verdict.describe().startswith('**no**: best-so-far rose 0.138')


def test_a_noisy_flat_end_is_a_plateau_though_the_raw_curve_spreads_more():
  rng = np.random.default_rng(0)
  curves = np.concatenate([np.linspace(0.2, 0.6, 25), np.full(15, 0.6)])[None] + rng.normal(
    0, 0.02, (5, 40)
  )
  curves[0, -5] += 0.03  # one seed's lucky epoch inside the window (0.006 on the mean)
  verdict = convergence.verdict(curves, np.zeros(5, int))
  by_hand = np.mean([best_so_far_by_hand(row) for row in curves], axis=0)
  assert verdict.best_so_far_rise == pytest.approx(by_hand[-1] - by_hand[-11])
  mean = curves.mean(axis=0)
  assert verdict.raw_spread == pytest.approx(mean.max() - mean[-10:].min())
  assert verdict.best_so_far_rise <= 0.01 < verdict.raw_spread
  assert verdict.plateaued and verdict.converged
  assert verdict.describe().startswith('yes, plateau: best-so-far rose')


def test_seeds_that_all_stopped_have_converged_whatever_the_curve():
  curves = np.array([[0.1, 0.3, 0.2, NAN, NAN], [0.2, 0.25, 0.24, 0.22, NAN]])
  verdict = convergence.verdict(curves, np.array([3, 4]))
  assert verdict.stopped and verdict.converged and verdict.seeds_stopped == 2
  assert verdict.describe() == 'yes: 2/2 seeds stopped early'
  # Too short for a plateau: only stopping can make it converge.
  not_all = convergence.verdict(curves, np.array([3, 0]))
  assert not not_all.converged and 'too few to see 10 flat ones' in not_all.describe()


def test_stopped_seeds_are_carried_forward_at_their_last_score():
  curves = np.array([[0.1, 0.4, NAN, NAN], [0.2, 0.3, 0.5, 0.45]])
  np.testing.assert_allclose(
    convergence.carried_forward(curves), [[0.1, 0.4, 0.4, 0.4], [0.2, 0.3, 0.5, 0.45]]
  )
  np.testing.assert_allclose(convergence.mean_curve(curves), [0.15, 0.35, 0.45, 0.425])
  np.testing.assert_allclose(
    convergence.best_so_far(curves), [best_so_far_by_hand(row) for row in curves]
  )
  with pytest.raises(ValueError, match='seeds, epochs'):
    convergence.verdict(curves, np.array([0]))
