"""Spectral relevance analysis (SpRAy; Lapuschkin et al. 2019), as CoRelAy builds it, plus the
number of clusters read off the eigengap (CoRelAy leaves that choice to a person).

    features [N, D] -> k-nearest-neighbour affinity (binary, symmetrised: (A + Aᵀ) / 2)
      -> symmetric normalised Laplacian L = I - D^-1/2 A D^-1/2 -> its smallest eigenpairs
      -> number of clusters k: the largest gap among the smallest eigenvalues
      -> k-means on the first k eigenvectors, rows normalised (Ng, Jordan and Weiss 2001)

CoRelAy's defaults are kept (10 neighbours, 32 eigenpairs, k-means). Where CoRelAy asks `eigsh` for
the largest-magnitude eigenpairs of D^-1/2 A D^-1/2 (which also returns those of strongly negative
eigenvalues, bipartite structure rather than clusters), we take the textbook smallest eigenvalues of
L. Every random step is seeded: small graphs are decomposed densely (no start vector at all), large
ones with a seeded start vector, and k-means with a fixed `random_state`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse
import scipy.sparse.linalg
from sklearn import cluster as sklearn_cluster
from sklearn import neighbors

# Graphs up to this many nodes are decomposed densely (exact, deterministic, milliseconds).
DENSE_LIMIT = 3000


@dataclasses.dataclass
class Clustering:
  """SpRAy's outcome for one group of samples."""

  labels: np.ndarray  # [N] cluster of each sample; cluster 0 is the largest
  eigenvalues: np.ndarray  # ascending eigenvalues of the normalised Laplacian
  num_clusters: int
  eigengap: float  # eigenvalues[k] - eigenvalues[k - 1] at the chosen k
  embedding: np.ndarray  # [N, k] spectral embedding, rows normalised
  eigenmap: np.ndarray  # [N, 2]: the 2nd and 3rd eigenvectors (a Laplacian eigenmap, for figures)


def knn_affinity(features: np.ndarray, neighbours: int) -> scipy.sparse.csr_matrix:
  """Binary k-nearest-neighbour graph over Euclidean distances, symmetrised as (A + Aᵀ) / 2."""
  features = np.asarray(features, np.float64)
  count = len(features)
  if count < 2:
    return scipy.sparse.csr_matrix((count, count))
  graph = neighbors.kneighbors_graph(
    features, n_neighbors=min(neighbours, count - 1), mode='connectivity', include_self=False
  )
  return ((graph + graph.T) / 2.0).tocsr()


def normalized_laplacian(affinity) -> scipy.sparse.csr_matrix:
  """L = I - D^-1/2 A D^-1/2; an isolated node keeps L_ii = 1 (it is its own component)."""
  affinity = scipy.sparse.csr_matrix(affinity, dtype=np.float64)
  degree = np.asarray(affinity.sum(axis=1)).ravel()
  inverse_sqrt = np.zeros_like(degree)
  inverse_sqrt[degree > 0] = 1.0 / np.sqrt(degree[degree > 0])
  scale = scipy.sparse.diags(inverse_sqrt)
  identity = scipy.sparse.identity(affinity.shape[0], format='csr')
  return (identity - scale @ affinity @ scale).tocsr()


def smallest_eigenpairs(laplacian, count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """The `count` smallest eigenvalues (ascending) of a symmetric Laplacian and their eigenvectors.

  Eigenvalues of the normalised Laplacian lie in [0, 2]; the smallest of L are the largest of
  2I - L, which Lanczos finds fast from a seeded start vector.
  """
  size = laplacian.shape[0]
  count = max(1, min(count, size))
  if size <= DENSE_LIMIT or count >= size - 1:
    values, vectors = np.linalg.eigh(laplacian.toarray())
    return values[:count], vectors[:, :count]
  shifted = 2.0 * scipy.sparse.identity(size) - laplacian
  start = np.random.default_rng(seed).uniform(0.5, 1.5, size)
  values, vectors = scipy.sparse.linalg.eigsh(shifted, k=count, which='LA', v0=start)
  order = np.argsort(2.0 - values)
  return (2.0 - values)[order], vectors[:, order]


def eigengap(
  eigenvalues: np.ndarray, max_clusters: int, min_clusters: int = 1
) -> tuple[int, float]:
  """(k, gap): k clusters where the gap between the k-th and (k+1)-th smallest eigenvalue is the
  largest for k in min_clusters ... max_clusters (k connected components give k zero
  eigenvalues)."""
  values = np.sort(np.asarray(eigenvalues, np.float64))
  limit = min(max_clusters, len(values) - 1)
  if limit < 1:
    return 1, 0.0
  first = min(max(1, min_clusters), limit)
  gaps = np.diff(values[: limit + 1])
  k = int(np.argmax(gaps[first - 1 :])) + first
  return k, float(gaps[k - 1])


def spray(
  features: np.ndarray,
  neighbours: int = 10,
  eigenvectors: int = 32,
  max_clusters: int = 8,
  seed: int = 0,
  num_clusters: int = 0,
  min_clusters: int = 1,
) -> Clustering:
  """Cluster samples by their explanation `features` [N, D] into `num_clusters` clusters, or as
  many as the eigengap says (at least `min_clusters`) when it is 0."""
  features = np.asarray(features, np.float64)
  count = len(features)
  if count < 3:
    return Clustering(
      np.zeros(count, np.int32), np.zeros(count), 1, 0.0, np.ones((count, 1)), np.zeros((count, 2))
    )
  laplacian = normalized_laplacian(knn_affinity(features, neighbours))
  values, vectors = smallest_eigenpairs(laplacian, eigenvectors, seed)
  k, gap = eigengap(values, max_clusters, min_clusters)
  if num_clusters:
    k = min(int(num_clusters), count - 1, len(values))
    gap = float(values[k] - values[k - 1]) if k < len(values) else 0.0
  embedding = vectors[:, :k]
  embedding = embedding / np.maximum(np.linalg.norm(embedding, axis=1, keepdims=True), 1e-12)
  if k == 1:
    labels = np.zeros(count, np.int32)
  else:
    labels = sklearn_cluster.KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(
      embedding
    )
  eigenmap = np.zeros((count, 2))
  eigenmap[:, : vectors.shape[1] - 1] = vectors[:, 1:3]
  return Clustering(_largest_first(labels), values, k, gap, embedding, eigenmap)


def _largest_first(labels: np.ndarray) -> np.ndarray:
  """Renumber clusters by size, largest first (ties by their smallest member), so that the numbers
  do not depend on k-means' arbitrary order."""
  clusters = np.unique(labels)
  sizes = [(-np.sum(labels == c), np.flatnonzero(labels == c)[0], c) for c in clusters]
  renumber = {c: new for new, (_, _, c) in enumerate(sorted(sizes))}
  return np.array([renumber[c] for c in labels], np.int32)
