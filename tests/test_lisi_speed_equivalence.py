"""The fast kernels give the values of the plain implementations they replaced.

LISI: the compiled per-row binary search (kernels reused by squaring, square roots and
geometric means instead of ``exp``) against the vectorised numpy search it replaced.
Silhouettes: the closed-form cosine cluster sums against pairwise distances.
"""

from __future__ import annotations

import numpy as np
import pytest

from metrics.knn import Metric, Neighbors, knn, normalize_rows
from metrics.lisi import lisi_distances, lisi_kernel, lisi_samples
from metrics.silhouette import cluster_distance_sums, silhouette_samples


def _reference_kernel(neighbors: Neighbors, perplexity: float, tol: float = 1e-5, max_iter: int = 50) -> np.ndarray:
    """The numpy kernel this module used before: every row's bisection at once, ``exp`` at every step."""
    D = lisi_distances(neighbors)
    finite = np.isfinite(D)
    with np.errstate(invalid="ignore"):
        D = D - np.where(finite, D, np.inf).min(axis=1, keepdims=True)

    def entropy(D, beta):
        with np.errstate(invalid="ignore"):
            P = np.exp(-D * beta[:, None])
            sumP = P.sum(axis=1)
            safe = np.where(sumP > 0, sumP, 1.0)
            H = np.where(sumP > 0, np.log(safe) + beta * np.nansum(np.where(P > 0, D * P, 0.0), axis=1) / safe, 0.0)
        return H, P / safe[:, None]

    m = D.shape[0]
    beta, betamin, betamax = np.ones(m), np.full(m, -np.inf), np.full(m, np.inf)
    H, P = entropy(D, beta)
    for _ in range(max_iter):
        Hdiff = H - np.log(perplexity)
        active = np.abs(Hdiff) > tol
        if not active.any():
            break
        pos = Hdiff > 0
        new_beta = np.where(pos, np.where(np.isinf(betamax), beta * 2, (beta + betamax) / 2),
                            np.where(np.isinf(betamin), beta / 2, (beta + betamin) / 2))
        betamin = np.where(active & pos, beta, betamin)
        betamax = np.where(active & ~pos, beta, betamax)
        beta = np.where(active, new_beta, beta)
        idx = np.flatnonzero(active)
        H[idx], P[idx] = entropy(D[idx], beta[idx])
    return np.where(finite, P, 0.0)


def _reference_lisi(neighbors: Neighbors, labels: np.ndarray, P: np.ndarray) -> np.ndarray:
    codes = np.unique(labels, return_inverse=True)[1].ravel()
    out = np.empty(len(codes))
    for i, (idx, w) in enumerate(zip(neighbors.indices, P)):
        per_label = np.bincount(codes[idx[idx >= 0]], weights=w[idx >= 0], minlength=codes.max() + 1)
        s = (per_label**2).sum()
        out[i] = 1.0 / s if s > 0 else np.nan
    return out


def _clustered(n=600, d=12, seed=0):
    rng = np.random.default_rng(seed)
    stage = rng.integers(0, 4, size=n)
    X = (rng.normal(size=(4, d))[stage] * 2 + rng.normal(size=(n, d))).astype(np.float32)
    return X, stage, rng.choice(["human", "robot_a", "robot_b"], size=n)


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_lisi_kernel_matches_numpy_search(metric):
    X, stage, emb = _clustered()
    X[5] = X[6]  # a duplicate: a zero distance after the shift
    nb = knn(X, None, 45, metric)
    ref = _reference_kernel(nb, 15.0)
    P = lisi_kernel(nb)
    assert P.dtype == np.float32 and P.shape == nb.indices.shape
    np.testing.assert_allclose(P, ref, atol=1e-6)
    for labels in (emb, stage):
        np.testing.assert_allclose(lisi_samples(nb, labels, kernel=P), _reference_lisi(nb, labels, ref), rtol=1e-5)


def test_lisi_missing_neighbours_and_input_types():
    X, stage, emb = _clustered(n=200)
    nb = knn(X, None, 30, "l2")
    idx, dist = nb.indices.copy(), nb.distances.copy()
    idx[3, 20:] = -1  # fewer neighbours than k
    dist[3, 20:] = np.inf
    idx[7] = -1  # none at all: a vanishing kernel, nan LISI
    dist[7] = np.inf
    nb = Neighbors(idx, dist, Metric.L2)
    ref = _reference_kernel(nb, 10.0)
    P = lisi_kernel(nb)
    np.testing.assert_allclose(P, ref, atol=1e-6)
    assert np.all(P[3, 20:] == 0) and np.all(P[7] == 0)
    lisi = lisi_samples(nb, emb, kernel=P)
    assert np.isnan(lisi[7]) and np.isfinite(np.delete(lisi, 7)).all()
    np.testing.assert_allclose(lisi, _reference_lisi(nb, emb, ref), rtol=1e-5)
    # float64 distances and int32 indices (e.g. a graph read back from a cache) give the same kernel
    nb64 = Neighbors(idx.astype(np.int32), dist.astype(np.float64), Metric.L2)
    np.testing.assert_allclose(lisi_kernel(nb64), P, atol=1e-7)


def test_lisi_tight_search_tolerance():
    X, stage, emb = _clustered(n=300)
    nb = knn(X, None, 30, "cosine")
    np.testing.assert_allclose(lisi_kernel(nb, tol=1e-10, max_iter=200), _reference_kernel(nb, 10.0, 1e-10, 200),
                               atol=1e-6)


def test_cosine_cluster_sums_match_pairwise_distances():
    X, stage, emb = _clustered(n=500)
    X[10] = 0.0  # a zero row: cosine distance 1 to every other row
    Z = normalize_rows(X).astype(np.float64)
    D = 1.0 - Z @ Z.T
    np.fill_diagonal(D, 0.0)
    codes = np.unique(emb, return_inverse=True)[1]
    ref = np.stack([D[:, codes == c].sum(axis=1) for c in range(3)], axis=1)
    np.testing.assert_allclose(cluster_distance_sums(X, codes, 3, "cosine"), ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("between", ["nearest", "mean_other"])
def test_cosine_silhouette_matches_pairwise(between):
    from sklearn.metrics import silhouette_samples as sk_silhouette

    X, stage, emb = _clustered(n=700)
    fast = silhouette_samples(X, stage, "cosine", between)
    Z = normalize_rows(X)
    if between == "nearest":
        np.testing.assert_allclose(fast, sk_silhouette(X, stage, metric="cosine"), atol=1e-5)
    else:
        D = 1.0 - Z.astype(np.float64) @ Z.T.astype(np.float64)
        np.fill_diagonal(D, 0.0)
        for i in range(0, 700, 37):
            own = stage == stage[i]
            a = D[i, own].sum() / (own.sum() - 1)
            b = D[i, ~own].mean()
            assert fast[i] == pytest.approx((b - a) / max(a, b), abs=1e-5)


def test_lisi_rejects_indices_past_the_labels():
    X, stage, emb = _clustered(n=100)
    nb = knn(X, None, 30, "l2")
    with pytest.raises(ValueError, match="points to row"):
        lisi_samples(nb.subset(slice(0, 50)), emb[:50])
