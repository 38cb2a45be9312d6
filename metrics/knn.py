"""One k-nearest-neighbour graph, computed once and sliced for every metric.

``knn(query, reference, k, metric)`` owns the two details every caller would
otherwise repeat: L2-normalisation for cosine, and dropping self-matches when the
query set is the reference set. Metrics receive a :class:`Neighbors` and never
search by themselves (as scib-metrics' ``NeighborsResults``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import Enum

import faiss
import numpy as np

_SEARCH_BLOCK = 16384  # query rows per FAISS call: bounds the (block, k) buffers


class Metric(str, Enum):
    """Distance used for neighbours: cosine (on L2-normalised rows) or squared Euclidean."""

    COSINE = "cosine"
    L2 = "l2"


@dataclass(frozen=True)
class Neighbors:
    """A kNN graph: ``indices (n, k)`` into the reference rows and ``distances (n, k)``.

    Distances are ``1 - cosine similarity`` for cosine and squared Euclidean for l2,
    ascending along each row. ``indices`` is -1 where fewer than k neighbours exist.
    ``note`` says how the graph was searched when not exactly (an approximate index and
    its measured recall, see :func:`metrics.graph.build_graph`); it travels with the
    graph, through caches, to every output built on it.
    """

    indices: np.ndarray
    distances: np.ndarray
    metric: Metric
    note: str = ""

    @property
    def k(self) -> int:
        return int(self.indices.shape[1])

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def top(self, k: int) -> Neighbors:
        """The first ``k`` neighbours of every row (the graph is searched once, at the largest k)."""
        if k > self.k:
            raise ValueError(f"asked for {k} neighbours but the graph holds {self.k}; search with a larger k")
        return Neighbors(self.indices[:, :k], self.distances[:, :k], self.metric, self.note)

    def subset(self, rows: np.ndarray) -> Neighbors:
        """The neighbour lists of some query rows (indices still point into the reference)."""
        return Neighbors(self.indices[rows], self.distances[rows], self.metric, self.note)


def normalize_rows(X: np.ndarray) -> np.ndarray:
    """Float32 copy of ``X`` with unit-length rows (zero rows stay zero)."""
    X = np.array(X, dtype=np.float32, copy=True)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    np.divide(X, norms, out=X, where=norms > 0)
    return X


def prepare(X: np.ndarray, metric: Metric | str) -> np.ndarray:
    """Rows as FAISS expects them for ``metric``: contiguous float32, normalised for cosine."""
    metric = Metric(metric)
    if metric is Metric.COSINE:
        return normalize_rows(X)
    return np.ascontiguousarray(X, dtype=np.float32)


def flat_index(d: int, metric: Metric | str) -> faiss.Index:
    """An empty exact FAISS index (flat: every search compares against every row).

    Parameters
    ----------
    d : int
        Dimension of the rows.
    metric : "cosine" or "l2"
        Cosine searches inner products (of rows :func:`prepare` normalised), l2 squared
        Euclidean distances.

    Returns
    -------
    faiss.Index
        ``IndexFlatIP`` for cosine, ``IndexFlatL2`` for l2. :func:`metrics.index.new_index`
        builds its exact kinds and its IVF quantisers with it.
    """
    return faiss.IndexFlatIP(d) if Metric(metric) is Metric.COSINE else faiss.IndexFlatL2(d)


def exact_index(reference: np.ndarray, metric: Metric | str) -> faiss.Index:
    """An exact FAISS index over already-prepared reference rows (:func:`flat_index`, filled)."""
    index = flat_index(reference.shape[1], metric)
    index.add(reference)
    return index


def search(index: faiss.Index, query: np.ndarray, k: int, metric: Metric | str) -> tuple[np.ndarray, np.ndarray]:
    """Blocked search of prepared query rows; returns (distances, indices) with distances ascending."""
    metric = Metric(metric)
    n = query.shape[0]
    D = np.empty((n, k), dtype=np.float32)
    I = np.empty((n, k), dtype=np.int64)
    for start in range(0, n, _SEARCH_BLOCK):
        d, i = index.search(query[start : start + _SEARCH_BLOCK], k)
        D[start : start + _SEARCH_BLOCK] = d
        I[start : start + _SEARCH_BLOCK] = i
    if metric is Metric.COSINE:
        D = np.where(I >= 0, 1.0 - D, np.inf).astype(np.float32)
    return D, I


def knn(query: np.ndarray, reference: np.ndarray | None = None, k: int = 15,
        metric: Metric | str = Metric.COSINE, *, index: faiss.Index | None = None) -> Neighbors:
    """Exact k nearest neighbours of each query row among the reference rows.

    Parameters
    ----------
    query : (n, d) float array
    reference : (m, d) float array, or None to search ``query`` against itself, in
        which case each row's self-match is dropped (duplicates of a row are kept).
    k : int
        Neighbours per query (excluding self). Must be < m when self-searching.
    metric : "cosine" or "l2"
    index : optional prebuilt FAISS index over the prepared reference (e.g. an
        approximate one for very large stores); exact ``IndexFlat`` otherwise.

    Returns
    -------
    Neighbors
        ``indices (n, k)`` into the reference rows and ascending ``distances (n, k)``.
    """
    metric = Metric(metric)
    self_search = reference is None
    q = prepare(query, metric)
    ref = q if self_search else prepare(reference, metric)
    m = ref.shape[0]
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if k > m - (1 if self_search else 0):
        raise ValueError(
            f"asked for k={k} neighbours but the reference holds only {m - (1 if self_search else 0)} "
            "other samples; lower k or add samples"
        )
    if index is None:
        index = exact_index(ref, metric)
    extra = 1 if self_search else 0
    D, I = search(index, q, k + extra, metric)
    if self_search:
        D, I = _drop_self(D, I, k)
    return Neighbors(I, D, metric)


def _drop_self(D: np.ndarray, I: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Remove each row's own index from its list (or its last entry if self was not found)."""
    n = I.shape[0]
    rows = np.arange(n)[:, None]
    is_self = I == rows
    # rows where self is absent (ties pushed it out) drop their farthest neighbour instead
    missing = ~is_self.any(axis=1)
    is_self[missing, -1] = True
    first = np.argmax(is_self, axis=1)
    keep = np.ones_like(is_self)
    keep[np.arange(n), first] = False
    return D[keep].reshape(n, k), I[keep].reshape(n, k)


def set_threads(n: int | None = None) -> None:
    """Limit FAISS's OpenMP threads (defaults to the machine's CPU count)."""
    faiss.omp_set_num_threads(int(n or os.cpu_count() or 1))
