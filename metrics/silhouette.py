"""Silhouette widths computed in row blocks: float32, never an n x n matrix.

Shared by :mod:`metrics.mixing` (silhouette of embodiments within stages, BRAS)
and :mod:`metrics.conservation` (silhouette of stages). Follows
``sklearn.metrics.silhouette_samples`` and scib-metrics' chunked JAX version,
including the BRAS ``between="mean_other"`` variant (Rautenstrauch & Ohler 2025).
"""

from __future__ import annotations

from enum import Enum

import numpy as np

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


def cluster_distance_sums(X: np.ndarray, codes: np.ndarray, n_codes: int, metric: Metric | str,
                          block: int = _BLOCK) -> np.ndarray:
    """``(n, L)`` sums of distances from each row to all rows of each cluster, computed block-wise."""
    metric = Metric(metric)
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
    """Silhouette width of every sample, computed in float32 row blocks.

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
