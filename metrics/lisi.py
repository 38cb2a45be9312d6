"""Local inverse Simpson's index (LISI) on a shared kNN graph: iLISI (mixing) and cLISI (conservation).

Follows Korsunsky et al. 2019 (Harmony) as implemented in scib-metrics
(``lisi_knn``, ``ilisi_knn``, ``clisi_knn``) and scaled to [0, 1] as in Luecken et
al. 2022. Deviations from scib-metrics, all documented per function:

* distances are Euclidean: ``sqrt`` of the graph's squared-l2 distances, or the chord
  distance ``sqrt(2 (1 - cos))`` between unit vectors for cosine graphs (scib's own
  graph builders return Euclidean distances);
* the graph excludes each sample itself (scib's builders include it at distance 0);
* each row's distances are shifted by their minimum before ``exp`` (mathematically
  identical, avoids underflow); rows whose kernel still vanishes give ``nan``
  (scib returns -1 there) and are ignored by the median.

The per-row search and the per-row Simpson index are compiled (numba, parallel over
row blocks, cached on disk); the search evaluates ``exp`` once per neighbour and gets
every later kernel from earlier ones (see :func:`_kernel_row`), the same trajectory of
precisions as scib's search.
"""

from __future__ import annotations

import numba
import numpy as np

from metrics.knn import Metric, Neighbors
from metrics.silhouette import encode

_ROWS = 256  # rows per parallel task of the compiled kernels
_JIT = numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})  # sums may be reordered; inf, nan kept


def lisi_distances(neighbors: Neighbors) -> np.ndarray:
    """Euclidean neighbour distances (float64) from a graph's stored distances; ``inf`` for missing neighbours."""
    D = np.asarray(neighbors.distances, dtype=np.float64)
    D = np.maximum(D, 0.0)
    D = np.sqrt(2.0 * D) if neighbors.metric is Metric.COSINE else np.sqrt(D)
    return np.where(neighbors.indices >= 0, D, np.inf)


@_JIT
def _advance(dst: np.ndarray, src: np.ndarray, bound: np.ndarray, D: np.ndarray, mode: int) -> tuple[float, float]:
    """``dst``: the kernel at the next precision from the kernel ``src`` at the current one.

    ``mode`` 0: precision doubled (``src ** 2``); 1: halved (``sqrt(src)``); 2: the mean of
    the current one and a bound's (``sqrt(src * bound)``). Returns ``sum(dst)`` and
    ``sum(D * dst)``. One branch-free loop per mode, so that it vectorises.
    """
    s = 0.0
    sd = 0.0
    if mode == 0:
        for j in range(dst.shape[0]):
            e = src[j] * src[j]
            dst[j] = e
            s += e
            sd += D[j] * e
    elif mode == 1:
        for j in range(dst.shape[0]):
            e = np.sqrt(src[j])
            dst[j] = e
            s += e
            sd += D[j] * e
    else:
        for j in range(dst.shape[0]):
            e = np.sqrt(src[j] * bound[j])
            dst[j] = e
            s += e
            sd += D[j] * e
    return s, sd


@_JIT
def _kernel_row(dist: np.ndarray, idx: np.ndarray, scale: float, logU: float, tol: float, max_iter: int,
                D: np.ndarray, E: np.ndarray, lo: np.ndarray, hi: np.ndarray, out: np.ndarray) -> None:
    """One row of :func:`lisi_kernel`: scib's binary search of the precision ``beta``, on shifted distances.

    ``exp(-D beta)`` is evaluated once, at ``beta = 1``; every later ``beta`` is twice, half or
    the mean of earlier ones, so its kernel is the square, square root or geometric mean of
    kernels already known (``lo`` at ``betamin``, ``hi`` at ``betamax``): the same search
    with no further ``exp`` (rounding equivalent to perturbing distances by ~1e-16).
    """
    k = dist.shape[0]
    dmin = np.inf
    for j in range(k):
        D[j] = np.sqrt(max(np.float64(dist[j]), 0.0) * scale) if idx[j] >= 0 else np.inf
        dmin = min(dmin, D[j])
    if dmin == np.inf:  # no neighbours: a vanishing kernel (nan LISI)
        out[:] = 0.0
        return
    s = 0.0
    sd = 0.0
    for j in range(k):  # shifted by the row minimum (H is unchanged); missing neighbours weigh 0
        D[j] = D[j] - dmin if D[j] < np.inf else 0.0
        E[j] = np.exp(-D[j]) if idx[j] >= 0 else 0.0
        s += E[j]
        sd += D[j] * E[j]
    beta, betamin, betamax = 1.0, -np.inf, np.inf
    for _ in range(max_iter):
        Hdiff = np.log(s) + beta * sd / s - logU  # s >= 1: the nearest neighbour weighs exp(0)
        if abs(Hdiff) <= tol:
            break
        if Hdiff > 0:  # the kernel at beta becomes the one at betamin; its buffer is reused
            betamin, lo, E = beta, E, lo
            if betamax == np.inf:
                beta, mode = beta * 2, 0
            else:
                beta, mode = (beta + betamax) / 2, 2
            s, sd = _advance(E, lo, hi, D, mode)
        else:
            betamax, hi, E = beta, E, hi
            if betamin == -np.inf:
                beta, mode = beta / 2, 1
            else:
                beta, mode = (beta + betamin) / 2, 2
            s, sd = _advance(E, hi, lo, D, mode)
    for j in range(k):
        out[j] = E[j] / s


@numba.njit(cache=True, nogil=True, parallel=True)
def _kernel_rows(dist: np.ndarray, idx: np.ndarray, scale: float, perplexity: float, tol: float, max_iter: int,
                 out: np.ndarray) -> None:
    n, k = dist.shape
    logU = np.log(perplexity)
    for b in numba.prange((n + _ROWS - 1) // _ROWS):
        D, E, lo, hi = np.empty(k), np.empty(k), np.empty(k), np.empty(k)
        for i in range(b * _ROWS, min(n, (b + 1) * _ROWS)):
            _kernel_row(dist[i], idx[i], scale, logU, tol, max_iter, D, E, lo, hi, out[i])


@numba.njit(cache=True, nogil=True, parallel=True)
def _simpson_rows(idx: np.ndarray, P: np.ndarray, codes: np.ndarray, n_labels: int, out: np.ndarray) -> None:
    """Each row's Simpson index ``sum_l (kernel weight on label l)^2``; ``nan`` LISI where it is 0."""
    n, k = idx.shape
    for b in numba.prange((n + _ROWS - 1) // _ROWS):
        per_label = np.zeros(n_labels)
        for i in range(b * _ROWS, min(n, (b + 1) * _ROWS)):
            per_label[:] = 0.0
            for j in range(k):
                if idx[i, j] >= 0:
                    per_label[codes[idx[i, j]]] += P[i, j]
            simpson = 0.0
            for lab in range(n_labels):
                simpson += per_label[lab] * per_label[lab]
            out[i] = 1.0 / simpson if simpson > 0 else np.nan


def lisi_kernel(neighbors: Neighbors, perplexity: float | None = None, tol: float = 1e-5,
                max_iter: int = 50) -> np.ndarray:
    """Each sample's neighbour weights at the given perplexity (rows sum to 1, 0 for missing neighbours).

    The expensive part of LISI, and independent of labels: compute it once per graph
    and pass it to :func:`lisi_samples` for iLISI, cLISI and every label permutation.

    Parameters
    ----------
    neighbors : Neighbors with ``indices (n, k)``
    perplexity : effective neighbourhood size; default ``floor(k / 3)`` as scib
    tol, max_iter : binary search tolerance and iterations (scib: 1e-5, 50)

    Returns
    -------
    (n, k) float32 Gaussian kernel, calibrated per row so its entropy is log(perplexity).
    """
    if perplexity is None:
        perplexity = float(np.floor(neighbors.k / 3))
    if perplexity < 1:
        raise ValueError(f"LISI needs perplexity >= 1 (k >= 3 neighbours), got k={neighbors.k}")
    dist = neighbors.distances
    if dist.dtype not in (np.float32, np.float64):
        dist = dist.astype(np.float64)
    out = np.empty(neighbors.indices.shape, dtype=np.float32)
    _kernel_rows(np.ascontiguousarray(dist), np.ascontiguousarray(neighbors.indices, dtype=np.int64),
                 2.0 if neighbors.metric is Metric.COSINE else 1.0, float(perplexity), float(tol), int(max_iter), out)
    return out


def lisi_samples(neighbors: Neighbors, labels: np.ndarray, perplexity: float | None = None,
                 tol: float = 1e-5, max_iter: int = 50, *, kernel: np.ndarray | None = None) -> np.ndarray:
    """Per-sample LISI: the effective number of labels in each sample's neighbourhood.

    Parameters
    ----------
    neighbors : Neighbors with ``indices (n, k)`` into the same n samples
    labels : (n,) str or int array (embodiment for iLISI, stage for cLISI)
    perplexity : effective neighbourhood size; default ``floor(k / 3)`` as scib
    tol, max_iter : binary search tolerance and iterations (scib: 1e-5, 50)
    kernel : :func:`lisi_kernel` of ``neighbors`` if already computed (then
        ``perplexity``, ``tol`` and ``max_iter`` are not used)

    Returns
    -------
    (n,) float64 in [1, L] (L = number of labels); ``nan`` where the kernel vanishes.
    Higher means more labels mixed around the sample.
    """
    codes, uniques = encode(labels)
    n, L = len(codes), len(uniques)
    if len(neighbors) != n:
        raise ValueError(f"the graph has {len(neighbors)} rows but labels has {n}; they must be row-aligned")
    P = lisi_kernel(neighbors, perplexity, tol, max_iter) if kernel is None else kernel
    if P.shape != neighbors.indices.shape:
        raise ValueError(f"kernel shape {P.shape} does not match the graph's {neighbors.indices.shape}")
    idx = np.ascontiguousarray(neighbors.indices, dtype=np.int64)
    if idx.size and idx.max() >= n:  # the compiled loop does not check bounds
        raise ValueError(f"the graph points to row {idx.max()} but labels has only {n} rows")
    out = np.empty(n)
    _simpson_rows(idx, np.ascontiguousarray(P), codes, L, out)
    return out


def _weighted_nanmedian(values: np.ndarray, weights: np.ndarray | None) -> float:
    if weights is not None:
        values = np.repeat(values, np.asarray(weights, dtype=np.int64))
    values = values[~np.isnan(values)]
    return float(np.median(values)) if len(values) else float("nan")


def ilisi_score(lisi: np.ndarray, n_labels: int, weights: np.ndarray | None = None) -> float:
    """Scaled iLISI from per-sample LISI: ``(median - 1) / (L - 1)``; ``weights`` are integer row counts."""
    if n_labels < 2:
        raise ValueError(f"iLISI needs at least 2 embodiments, got {n_labels}")
    return (_weighted_nanmedian(lisi, weights) - 1.0) / (n_labels - 1)


def clisi_score(lisi: np.ndarray, n_labels: int, weights: np.ndarray | None = None) -> float:
    """Scaled cLISI from per-sample LISI: ``(L - median) / (L - 1)``; ``weights`` are integer row counts."""
    if n_labels < 2:
        raise ValueError(f"cLISI needs at least 2 stages, got {n_labels}")
    return (n_labels - _weighted_nanmedian(lisi, weights)) / (n_labels - 1)


def ilisi(neighbors: Neighbors, embodiment: np.ndarray, perplexity: float | None = None) -> float:
    """Integration LISI of embodiments, scaled to [0, 1]; higher is better (1 = perfectly mixed).

    Korsunsky et al. 2019; scaled as Luecken et al. 2022 (scib-metrics ``ilisi_knn``):
    ``(median per-sample LISI - 1) / (#embodiments - 1)``. See the module notes for
    deviations (Euclidean/chord distances, self excluded, stable kernel).
    """
    return ilisi_score(lisi_samples(neighbors, embodiment, perplexity), len(np.unique(embodiment)))


def clisi(neighbors: Neighbors, stage: np.ndarray, perplexity: float | None = None) -> float:
    """Cell-type (here: stage) LISI, scaled to [0, 1]; higher is better (1 = stages kept apart).

    Korsunsky et al. 2019; scaled as Luecken et al. 2022 (scib-metrics ``clisi_knn``):
    ``(#stages - median per-sample LISI) / (#stages - 1)``.
    """
    return clisi_score(lisi_samples(neighbors, stage, perplexity), len(np.unique(stage)))
