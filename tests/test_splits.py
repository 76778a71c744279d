import numpy as np
import pytest

from xaijax.data.defects import GC10_CLASS_COUNTS
from xaijax.data.splits import stratified_split


def test_stratified_proportions_per_class_and_disjoint():
  labels = np.repeat(np.arange(10), GC10_CLASS_COUNTS)
  parts = stratified_split(labels, (0.7, 0.2, 0.1), seed=3)
  everything = np.concatenate(list(parts.values()))
  assert len(everything) == len(labels) and len(np.unique(everything)) == len(labels)
  for label, count in enumerate(GC10_CLASS_COUNTS):
    for name, fraction in zip(('train', 'validation', 'test'), (0.7, 0.2, 0.1)):
      in_split = np.sum(labels[parts[name]] == label)
      assert abs(in_split - fraction * count) <= 1, (label, name, in_split)


def test_split_is_deterministic_and_seeded():
  labels = np.repeat(np.arange(4), [30, 12, 7, 50])
  a, b = stratified_split(labels, seed=1), stratified_split(labels, seed=1)
  c = stratified_split(labels, seed=2)
  for name in a:
    np.testing.assert_array_equal(a[name], b[name])
  assert any(not np.array_equal(a[name], c[name]) for name in a)


def test_tiny_classes_still_reach_every_split():
  labels = np.repeat(np.arange(3), [3, 4, 5])
  parts = stratified_split(labels, seed=0)
  for name, indices in parts.items():
    assert set(labels[indices]) == {0, 1, 2}, name


def test_bad_fractions_and_too_small_classes_are_errors():
  with pytest.raises(ValueError, match='sum'):
    stratified_split(np.zeros(10), (0.5, 0.2, 0.1))
  with pytest.raises(ValueError, match='at least 3'):
    stratified_split(np.array([0, 0, 1, 1, 1]))
