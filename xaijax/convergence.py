"""Did a case's training converge? Early stopping ended every seed, or the best validation score so
far (what the restored weights score; the mean over seeds) rose by at most PLATEAU_TOLERANCE over
the last PLATEAU_EPOCHS epochs.

The best-so-far curve is the one early stopping itself watches, seed by seed; the raw validation
curve of Fig. 9 also carries the epoch-to-epoch noise of macro-F1 on a small validation split (a few
hundredths even at a vanishing learning rate), which says nothing about whether training still
improves the model. Its spread over the last epochs is reported beside the verdict.

A table comparing under-trained models says little about the methods, so the study reports this
verdict beside every case.
"""

from __future__ import annotations

import dataclasses

import numpy as np

PLATEAU_EPOCHS = 10  # the window at the end of training that must be flat
PLATEAU_TOLERANCE = 0.01  # how much the best-so-far score may still rise in that window


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


def best_so_far(validation_f1: np.ndarray) -> np.ndarray:
  """[S, E]: each seed's best validation F1 up to each epoch (what early stopping would restore)."""
  curves = carried_forward(validation_f1)
  return np.fmax.accumulate(np.where(np.isnan(curves), -np.inf, curves), axis=1)


@dataclasses.dataclass(frozen=True)
class Verdict:
  seeds: int
  seeds_stopped: int  # seeds that early stopping ended before the epoch limit
  epochs_run: int
  best_so_far_rise: float  # rise of the mean best-so-far score over the last `window` epochs
  raw_spread: float  # best of the raw mean curve minus the lowest of its last `window` epochs
  window: int
  tolerance: float

  @property
  def stopped(self) -> bool:
    return self.seeds_stopped == self.seeds

  @property
  def plateaued(self) -> bool:
    return bool(self.best_so_far_rise <= self.tolerance)

  @property
  def converged(self) -> bool:
    return self.stopped or self.plateaued

  def describe(self) -> str:
    stopped = f'{self.seeds_stopped}/{self.seeds} seeds stopped early'
    if self.stopped:
      return f'yes: {stopped}'
    if self.epochs_run <= self.window:
      return (
        f'**no**: only {self.epochs_run} epochs, too few to see {self.window} flat ones; {stopped}'
      )
    rise = (
      f'best-so-far rose {self.best_so_far_rise:.3f} in the last {self.window} epochs '
      f'(raw curve within {self.raw_spread:.3f} of its best)'
    )
    if self.plateaued:
      return f'yes, plateau: {rise}; {stopped}'
    return f'**no**: {rise}, more than {self.tolerance}; {stopped}'


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
  epochs = validation_f1.shape[1]
  rise = spread = float('inf')
  if epochs > window:
    best = best_so_far(validation_f1).mean(axis=0)
    rise = float(best[-1] - best[-window - 1])  # what the last `window` epochs added
    curve = mean_curve(validation_f1)
    spread = float(np.max(curve) - np.min(curve[-window:]))
  return Verdict(
    seeds=int(validation_f1.shape[0]),
    seeds_stopped=int(np.sum(np.asarray(stopped_epoch) > 0)),
    epochs_run=epochs,
    best_so_far_rise=rise,
    raw_spread=spread,
    window=window,
    tolerance=tolerance,
  )
