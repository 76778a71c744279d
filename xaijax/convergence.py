"""Did a case's training converge? Early stopping ended every seed, or the validation curve of the
study's Fig. 9 (mean over seeds) has flattened out.

A table comparing under-trained models says little about the methods, so the study reports this
verdict beside every case.
"""

from __future__ import annotations

import dataclasses

import numpy as np

PLATEAU_EPOCHS = 10  # the window at the end of the curve that must be flat
PLATEAU_TOLERANCE = 0.01  # how far below the curve's best any epoch of that window may lie


def carried_forward(validation_f1: np.ndarray) -> np.ndarray:
  """[S, E] curves with each stopped seed's NaNs replaced by its last score (as Fig. 9 draws it)."""
  curves = np.array(validation_f1, np.float64, copy=True)
  for row in curves:
    for k in range(1, len(row)):
      if np.isnan(row[k]):
        row[k] = row[k - 1]
  return curves


def mean_curve(validation_f1: np.ndarray) -> np.ndarray:
  """The mean validation F1 over seeds per epoch (stopped seeds carried forward)."""
  return np.nanmean(carried_forward(validation_f1), axis=0)


@dataclasses.dataclass(frozen=True)
class Verdict:
  seeds: int
  seeds_stopped: int  # seeds that early stopping ended before the epoch limit
  epochs_run: int
  plateau_gap: float  # best of the mean curve minus the lowest of its last PLATEAU_EPOCHS
  window: int
  tolerance: float

  @property
  def stopped(self) -> bool:
    return self.seeds_stopped == self.seeds

  @property
  def plateaued(self) -> bool:
    return bool(self.plateau_gap <= self.tolerance)

  @property
  def converged(self) -> bool:
    return self.stopped or self.plateaued

  def describe(self) -> str:
    stopped = f'{self.seeds_stopped}/{self.seeds} seeds stopped early'
    if self.stopped:
      return f'yes: {stopped}'
    if self.epochs_run < self.window:
      return (
        f'**no**: only {self.epochs_run} epochs, fewer than the {self.window} a plateau needs; '
        f'{stopped}'
      )
    flat = f'last {self.window} epochs within {self.plateau_gap:.3f} of the best'
    if self.plateaued:
      return f'yes, plateau: {flat}; {stopped}'
    return f'**no**: {flat} (more than {self.tolerance}); {stopped}'


def verdict(
  validation_f1: np.ndarray,
  stopped_epoch: np.ndarray,
  window: int = PLATEAU_EPOCHS,
  tolerance: float = PLATEAU_TOLERANCE,
) -> Verdict:
  """The verdict on one case from its [S, E] validation curves (NaN once a seed stopped) and the
  epoch each seed stopped at (0: it ran to the limit)."""
  validation_f1 = np.asarray(validation_f1, np.float64)
  if validation_f1.ndim != 2 or validation_f1.shape[0] != len(stopped_epoch):
    raise ValueError(
      f'validation_f1 must be [seeds, epochs] with one row per stopped_epoch entry, got '
      f'{validation_f1.shape} and {len(stopped_epoch)}'
    )
  curve = mean_curve(validation_f1)
  epochs = len(curve)
  gap = float(np.max(curve) - np.min(curve[-window:])) if epochs >= window else float('inf')
  return Verdict(
    seeds=int(validation_f1.shape[0]),
    seeds_stopped=int(np.sum(np.asarray(stopped_epoch) > 0)),
    epochs_run=epochs,
    plateau_gap=gap,
    window=window,
    tolerance=tolerance,
  )
