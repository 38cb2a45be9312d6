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
"""

from __future__ import annotations

import numpy as np

from metrics.knn import Metric, Neighbors
from metrics.silhouette import encode

_ROWS = 16384  # rows per vectorised perplexity search


def lisi_distances(neighbors: Neighbors) -> np.ndarray:
    """Euclidean neighbour distances (float64) from a graph's stored distances; ``inf`` for missing neighbours."""
    D = np.asarray(neighbors.distances, dtype=np.float64)
    D = np.maximum(D, 0.0)
    D = np.sqrt(2.0 * D) if neighbors.metric is Metric.COSINE else np.sqrt(D)
    return np.where(neighbors.indices >= 0, D, np.inf)


def _entropy(D: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Entropy ``H`` and normalised Gaussian kernel ``P`` of each row at precision ``beta``."""
    with np.errstate(invalid="ignore"):
        P = np.exp(-D * beta[:, None])
        sumP = P.sum(axis=1)
        safe = np.where(sumP > 0, sumP, 1.0)
        H = np.where(sumP > 0, np.log(safe) + beta * np.nansum(np.where(P > 0, D * P, 0.0), axis=1) / safe, 0.0)
    P /= safe[:, None]
    return H, P


def _perplexity_kernel(D: np.ndarray, perplexity: float, tol: float, max_iter: int) -> tuple[np.ndarray, np.ndarray]:
    """Binary search of each row's precision so the kernel entropy equals log(perplexity) (as scib)."""
    m = D.shape[0]
    logU = np.log(perplexity)
    beta = np.ones(m)
    betamin = np.full(m, -np.inf)
    betamax = np.full(m, np.inf)
    H, P = _entropy(D, beta)
    Hdiff = H - logU
    for _ in range(max_iter):
        active = np.abs(Hdiff) > tol
        if not active.any():
            break
        pos = Hdiff > 0
        new_min = np.where(pos, beta, betamin)
        new_max = np.where(pos, betamax, beta)
        new_beta = np.where(pos, np.where(np.isinf(betamax), beta * 2, (beta + betamax) / 2),
                            np.where(np.isinf(betamin), beta / 2, (beta + betamin) / 2))
        betamin = np.where(active, new_min, betamin)
        betamax = np.where(active, new_max, betamax)
        beta = np.where(active, new_beta, beta)
        idx = np.flatnonzero(active)
        H_a, P_a = _entropy(D[idx], beta[idx])
        H[idx], P[idx] = H_a, P_a
        Hdiff = H - logU
    return H, P


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
    n = len(neighbors)
    out = np.empty((n, neighbors.k), dtype=np.float32)
    for start in range(0, n, _ROWS):
        D = lisi_distances(neighbors.subset(slice(start, start + _ROWS)))
        finite = np.isfinite(D)
        D = D - np.where(finite, D, np.inf).min(axis=1, keepdims=True)
        _, P = _perplexity_kernel(D, perplexity, tol, max_iter)
        out[start : start + len(D)] = np.where(finite, P, 0.0)
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
    out = np.empty(n)
    for start in range(0, n, _ROWS):
        idx = neighbors.indices[start : start + _ROWS]
        w = P[start : start + _ROWS]
        m = idx.shape[0]
        nb_codes = np.where(idx >= 0, codes[np.maximum(idx, 0)], 0)
        flat = (np.arange(m)[:, None] * L + nb_codes).ravel()
        per_label = np.bincount(flat, weights=w.ravel(), minlength=m * L).reshape(m, L)
        simpson = (per_label**2).sum(axis=1)
        with np.errstate(divide="ignore"):
            out[start : start + m] = np.where(simpson > 0, 1.0 / np.where(simpson > 0, simpson, 1.0), np.nan)
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
