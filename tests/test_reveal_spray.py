"""SpRAy's steps against independent references, and the eigengap on planted clusters."""

import numpy as np
import pytest
import scipy.sparse.csgraph
from sklearn import metrics

from xaijax.reveal import spray


def planted(counts, dimensions=16, spread=0.3, seed=0):
  """Gaussian blobs around far-apart centres: (points, true cluster of each)."""
  rng = np.random.default_rng(seed)
  centres = rng.normal(0.0, 4.0, (len(counts), dimensions))
  labels = np.repeat(np.arange(len(counts)), counts)
  return centres[labels] + rng.normal(0.0, spread, (len(labels), dimensions)), labels


def test_affinity_is_the_symmetrised_binary_knn_graph_of_a_plain_loop():
  points, _ = planted([7, 9], dimensions=3)
  k = 4
  reference = np.zeros((len(points), len(points)))
  for i, point in enumerate(points):
    distances = [
      np.sum((point - other) ** 2) if j != i else np.inf for j, other in enumerate(points)
    ]
    reference[i, np.argsort(distances)[:k]] = 1.0
  reference = (reference + reference.T) / 2
  np.testing.assert_array_equal(spray.knn_affinity(points, k).toarray(), reference)


def test_normalized_laplacian_and_its_spectrum_match_scipy():
  points, _ = planted([12, 15, 9])
  affinity = spray.knn_affinity(points, 5)
  laplacian = spray.normalized_laplacian(affinity)
  reference = scipy.sparse.csgraph.laplacian(affinity.toarray(), normed=True)
  np.testing.assert_allclose(laplacian.toarray(), reference, atol=1e-12)
  values, vectors = spray.smallest_eigenpairs(laplacian, 6)
  np.testing.assert_allclose(values, np.linalg.eigvalsh(reference)[:6], atol=1e-10)
  np.testing.assert_allclose(laplacian @ vectors, vectors * values, atol=1e-9)


def test_the_sparse_solver_agrees_with_the_dense_one(monkeypatch):
  points, _ = planted([40, 30, 50], seed=3)
  laplacian = spray.normalized_laplacian(spray.knn_affinity(points, 10))
  dense, _ = spray.smallest_eigenpairs(laplacian, 8)
  monkeypatch.setattr(spray, 'DENSE_LIMIT', 10)
  sparse, vectors = spray.smallest_eigenpairs(laplacian, 8, seed=1)
  np.testing.assert_allclose(sparse, dense, atol=1e-8)
  np.testing.assert_allclose(laplacian @ vectors, vectors * sparse, atol=1e-7)


@pytest.mark.parametrize('counts', [[60], [50, 35], [30, 45, 25, 40], [20, 25, 30, 22, 28, 24]])
def test_the_eigengap_finds_the_number_of_planted_clusters_and_kmeans_their_members(counts):
  points, truth = planted(counts, seed=len(counts))
  clustering = spray.spray(points, neighbours=10, eigenvectors=32, max_clusters=8, seed=0)
  assert clustering.num_clusters == len(counts)
  assert metrics.adjusted_rand_score(truth, clustering.labels) == 1.0
  sizes = np.bincount(clustering.labels)
  assert list(sizes) == sorted(counts, reverse=True)  # cluster 0 is the largest
  assert clustering.eigengap > 0.1


def test_a_seed_gives_the_same_clusters_every_time():
  points, _ = planted([30, 30, 30], spread=2.5, seed=7)  # overlapping: k-means' start matters
  first = spray.spray(points, seed=5)
  again = spray.spray(points, seed=5)
  np.testing.assert_array_equal(first.labels, again.labels)
  np.testing.assert_array_equal(first.eigenvalues, again.eigenvalues)


def test_eigengap_reads_the_largest_gap_among_the_first_eigenvalues():
  assert spray.eigengap(np.array([0.0, 0.0, 0.0, 0.5, 0.6, 0.9]), 8) == (3, 0.5)
  assert spray.eigengap(np.array([0.0, 0.4, 0.5, 0.55]), 8) == (1, 0.4)
  # A gap beyond max_clusters is not looked at.
  assert spray.eigengap(np.array([0.0, 0.1, 0.15, 0.2, 0.9]), 2) == (1, 0.1)
  assert spray.eigengap(np.array([0.0]), 8) == (1, 0.0)
  # At least min_clusters: the largest gap from there on, the smaller ones before it ignored.
  values = np.array([0.0, 0.5, 0.52, 0.6, 0.61, 0.9])
  assert spray.eigengap(values, 8) == (1, 0.5)
  assert spray.eigengap(values, 8, min_clusters=2) == (5, pytest.approx(0.29))
  assert spray.eigengap(values, 3, min_clusters=2) == (3, pytest.approx(0.08))
  assert spray.eigengap(values, 8, min_clusters=99)[0] == 5  # no more than the values allow


def test_min_clusters_splits_a_class_the_eigengap_keeps_whole():
  points, _ = planted([60], seed=1)
  assert spray.spray(points, seed=0).num_clusters == 1
  split = spray.spray(points, seed=0, min_clusters=4)
  assert split.num_clusters >= 4 and len(np.unique(split.labels)) == split.num_clusters


def test_tiny_groups_are_one_cluster():
  clustering = spray.spray(np.ones((2, 4)))
  assert clustering.num_clusters == 1 and list(clustering.labels) == [0, 0]


def test_a_fixed_number_of_clusters_overrides_the_eigengap():
  points, _ = planted([30, 30, 30], seed=2)
  assert spray.spray(points).num_clusters == 3
  forced = spray.spray(points, num_clusters=5)
  assert forced.num_clusters == 5 and len(np.unique(forced.labels)) == 5
