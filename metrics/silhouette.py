"""Silhouette widths from per-cluster distance sums, never an n x n matrix.

Cosine sums come in closed form from per-cluster sums of the unit rows (float64,
O(n d L)); Euclidean ones from float32 row blocks of distances (O(n^2 d)).

Shared by :mod:`metrics.mixing` (silhouette of embodiments within stages, BRAS)
and :mod:`metrics.conservation` (silhouette of stages). Follows
``sklearn.metrics.silhouette_samples`` and scib-metrics' chunked JAX version,
including the BRAS ``between="mean_other"`` variant (Rautenstrauch & Ohler 2025).
"""

from __future__ import annotations

import functools
from enum import Enum

import numpy as np
from threadpoolctl import ThreadpoolController

from metrics.knn import Metric, normalize_rows

_BLOCK = 1024  # query rows per distance block: a (1024, n) float32 buffer (80 MB at n = 20k)


class Between(str, Enum):
    """How the distance from a sample to the *other* clusters is summarised."""

    NEAREST = "nearest"  # standard silhouette: mean distance to the nearest other cluster
    MEAN_OTHER = "mean_other"  # BRAS: mean distance to all samples of all other clusters


def encode(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes ``0..L-1`` of ``labels`` and the sorted unique label values."""
    uniques, codes = np.unique(np.asarray(labels), return_inverse=True)
    return codes.astype(np.int64).ravel(), uniques


def _prepare(X: np.ndarray, metric: Metric) -> tuple[np.ndarray, np.ndarray]:
    if metric is Metric.COSINE:
        Z = normalize_rows(X)
    else:  # centring reduces cancellation in |a|^2 + |b|^2 - 2ab
        Z = np.asarray(X, dtype=np.float32)
        Z = (Z - Z.mean(axis=0, dtype=np.float64).astype(np.float32)).astype(np.float32)
    sq = np.einsum("ij,ij->i", Z, Z, dtype=np.float32)
    return np.ascontiguousarray(Z), sq


def distance_block(A: np.ndarray, a_sq: np.ndarray, B: np.ndarray, b_sq: np.ndarray, metric: Metric) -> np.ndarray:
    """Distances between prepared row blocks: cosine distance, or Euclidean (not squared) for l2."""
    G = A @ B.T  # float32 GEMM
    if metric is Metric.COSINE:
        D = 1.0 - G
        np.maximum(D, 0.0, out=D)
        return D
    G *= -2.0
    G += a_sq[:, None]
    G += b_sq[None, :]
    np.maximum(G, 0.0, out=G)
    return np.sqrt(G, out=G)


def _unit_rows(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Float64 rows of ``X`` scaled to unit length (zero rows stay zero) and their squared norms (1 or 0)."""
    Z = np.array(X, dtype=np.float64)
    norms = np.sqrt(np.einsum("ij,ij->i", Z, Z))
    np.divide(Z, norms[:, None], out=Z, where=norms[:, None] > 0)
    return Z, (norms > 0).astype(np.float64)


@functools.cache
def _blas() -> ThreadpoolController:
    """The process's BLAS thread pools, inspected once (``threadpool_limits`` re-inspects on every call)."""
    return ThreadpoolController()


def _cosine_cluster_sums(X: np.ndarray, codes: np.ndarray, n_codes: int, block: int = 8192) -> np.ndarray:
    """:func:`cluster_distance_sums` under the cosine distance ``1 - z_i . z_j`` of the unit rows ``z``."""
    n = X.shape[0]
    whole = _unit_rows(X) if n <= block else None  # one block: its unit rows are made once

    def unit(start: int) -> tuple[np.ndarray, np.ndarray]:
        return whole if whole is not None else _unit_rows(X[start : start + block])

    S = np.zeros((n_codes, X.shape[1]))  # per-cluster sums of the unit rows, float64
    freq = np.bincount(codes, minlength=n_codes).astype(np.float64)
    sums = np.empty((n, n_codes))
    # thin products (L columns): one BLAS thread, which never waits for a descheduled sibling
    with _blas().limit(limits=1, user_api="blas"):
        for start in range(0, n, block):
            S += np.eye(n_codes)[codes[start : start + block]].T @ unit(start)[0]
        for start in range(0, n, block):
            Z, sq = unit(start)
            part = freq[None, :] - Z @ S.T
            part[np.arange(len(Z)), codes[start : start + block]] -= 1.0 - sq  # not the row itself
            sums[start : start + block] = np.maximum(part, 0.0)  # rounding of near-duplicate rows
    return sums


def cluster_distance_sums(X: np.ndarray, codes: np.ndarray, n_codes: int, metric: Metric | str,
                          block: int = _BLOCK) -> np.ndarray:
    """``(n, L)`` sums of distances from each row to all other rows of each cluster, computed block-wise.

    Cosine distances are linear in the other row, so their sums need no pairwise
    distances: ``sum_j (1 - z_i . z_j) = n_c - z_i . S_c`` with ``S_c`` the sum of the
    cluster's unit rows, in float64, O(n d L) instead of O(n^2 d); each row's distance
    to itself is left out (0 for unit rows, as scikit-learn). Euclidean distances are
    summed from float32 distance blocks.
    """
    metric = Metric(metric)
    if metric is Metric.COSINE:
        return _cosine_cluster_sums(X, codes, n_codes)
    Z, sq = _prepare(X, metric)
    onehot = np.zeros((Z.shape[0], n_codes), dtype=np.float32)
    onehot[np.arange(Z.shape[0]), codes] = 1.0
    sums = np.empty((Z.shape[0], n_codes), dtype=np.float64)
    for start in range(0, Z.shape[0], block):
        D = distance_block(Z[start : start + block], sq[start : start + block], Z, sq, metric)
        sums[start : start + block] = D @ onehot
    return sums


def silhouette_samples(X: np.ndarray, labels: np.ndarray, metric: Metric | str = Metric.L2,
                       between: Between | str = Between.NEAREST, block: int = _BLOCK) -> np.ndarray:
    """Silhouette width of every sample (cosine in closed form, Euclidean in float32 row blocks).

    Parameters
    ----------
    X : (n, d) float array
    labels : (n,) int or str array with 2 <= #labels <= n - 1
    metric : "l2" (Euclidean, as scikit-learn's default) or "cosine"
    between : "nearest" (standard) or "mean_other" (BRAS)

    Returns
    -------
    (n,) float64 array in [-1, 1]; 0 for samples alone in their cluster (as scikit-learn).
    """
    between = Between(between)
    codes, uniques = encode(labels)
    n, L = codes.shape[0], len(uniques)
    if X.shape[0] != n:
        raise ValueError(f"X has {X.shape[0]} rows but labels has {n}; they must be row-aligned")
    if not 2 <= L <= n - 1:
        raise ValueError(f"silhouette needs 2 <= number of labels <= n - 1, got {L} labels for {n} samples")
    sums = cluster_distance_sums(X, codes, L, metric, block)
    freq = np.bincount(codes, minlength=L).astype(np.float64)
    rows = np.arange(n)
    own = freq[codes]
    intra = np.divide(sums[rows, codes], own - 1, out=np.zeros(n), where=own > 1)
    if between is Between.NEAREST:
        other = sums / freq[None, :]
        other[rows, codes] = np.inf
        inter = other.min(axis=1)
    else:
        inter = (sums.sum(axis=1) - sums[rows, codes]) / (n - own)
    denom = np.maximum(intra, inter)
    sil = np.divide(inter - intra, denom, out=np.zeros(n), where=denom > 0)
    sil[own <= 1] = 0.0
    return sil
