"""Stratified, deterministic train / validation / test splits."""

from __future__ import annotations

import numpy as np

SPLIT_NAMES = ('train', 'validation', 'test')
# The test images appear three times: as distributed, without overlay, and with a wrong class's
# logo.
TEST_VARIANTS = {'test': 'test', 'test_clean': 'clean', 'test_attacked': 'attacked'}


def stratified_split(
  labels: np.ndarray, fractions=(0.7, 0.2, 0.1), seed: int = 0
) -> dict[str, np.ndarray]:
  """Indices of each split.

  Every class is divided in the given proportions (largest remainder rounding).

  The same labels and seed always give the same indices. A class with fewer images than splits is
  rejected, since it could not appear in each of them.
  """
  labels = np.asarray(labels)
  fractions = np.asarray(fractions, dtype=np.float64)
  if (
    fractions.shape != (len(SPLIT_NAMES),)
    or np.any(fractions <= 0)
    or abs(fractions.sum() - 1.0) > 1e-6
  ):
    raise ValueError(
      f'split fractions must be {len(SPLIT_NAMES)} positive numbers summing to 1, got {fractions}'
    )
  rng = np.random.default_rng(seed)
  parts: dict[str, list[np.ndarray]] = {name: [] for name in SPLIT_NAMES}
  for label in np.unique(labels):
    members = rng.permutation(np.flatnonzero(labels == label))
    if len(members) < len(SPLIT_NAMES):
      raise ValueError(
        f'class {label} has {len(members)} images; each class needs at least '
        f'{len(SPLIT_NAMES)} to appear in every split'
      )
    exact = fractions * len(members)
    counts = np.floor(exact).astype(int)
    # Hand the leftover images to the splits with the largest remainders, then make sure none is
    # empty.
    for k in np.argsort(-(exact - counts), kind='stable')[: len(members) - counts.sum()]:
      counts[k] += 1
    for k in np.flatnonzero(counts == 0):
      counts[k] += 1
      counts[np.argmax(counts)] -= 1
    for name, chunk in zip(SPLIT_NAMES, np.split(members, np.cumsum(counts)[:-1])):
      parts[name].append(chunk)
  return {name: np.sort(np.concatenate(chunks)) for name, chunks in parts.items()}
