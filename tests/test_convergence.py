"""The convergence rule: every seed stopped early, or the mean curve's last epochs are flat."""

import numpy as np
import pytest

from xaijax import convergence

NAN = np.nan


def test_a_rising_curve_has_not_converged():
  rising = np.tile(np.linspace(0.2, 0.6, 30), (3, 1))
  verdict = convergence.verdict(rising, np.zeros(3, int))
  assert not verdict.converged and not verdict.stopped
  # Best 0.6 at epoch 30, lowest of the last 10 at epoch 21.
  assert verdict.plateau_gap == pytest.approx(0.6 - rising[0, 20])
  assert verdict.describe().startswith('**no**')


def test_a_flat_end_within_the_tolerance_is_a_plateau():
  curve = np.concatenate([np.linspace(0.2, 0.6, 20), 0.6 + 0.004 * np.sin(np.arange(10))])
  noise = np.array([[0.003], [-0.003], [0.0]])
  verdict = convergence.verdict(curve[None] + noise, np.zeros(3, int))
  assert verdict.plateaued and verdict.converged and not verdict.stopped
  assert verdict.plateau_gap <= 0.01
  assert verdict.describe().startswith('yes, plateau')


def test_seeds_that_all_stopped_have_converged_whatever_the_curve():
  curves = np.array([[0.1, 0.3, 0.2, NAN, NAN], [0.2, 0.25, 0.24, 0.22, NAN]])
  verdict = convergence.verdict(curves, np.array([3, 4]))
  assert verdict.stopped and verdict.converged and verdict.seeds_stopped == 2
  assert verdict.describe() == 'yes: 2/2 seeds stopped early'
  # Too short for a plateau: only stopping can make it converge.
  not_all = convergence.verdict(curves, np.array([3, 0]))
  assert not not_all.converged and 'fewer than the 10' in not_all.describe()


def test_stopped_seeds_are_carried_forward_at_their_last_score():
  curves = np.array([[0.1, 0.4, NAN, NAN], [0.2, 0.3, 0.5, 0.6]])
  np.testing.assert_allclose(
    convergence.carried_forward(curves), [[0.1, 0.4, 0.4, 0.4], [0.2, 0.3, 0.5, 0.6]]
  )
  np.testing.assert_allclose(convergence.mean_curve(curves), [0.15, 0.35, 0.45, 0.5])
  with pytest.raises(ValueError, match='seeds, epochs'):
    convergence.verdict(curves, np.array([0]))
