"""The shared kNN graph agrees with brute-force numpy and drops self-matches."""

from __future__ import annotations

import numpy as np
import pytest

from metrics.knn import Metric, knn


def _brute(q, r, k, metric):
    if metric == "cosine":
        qn = q / np.linalg.norm(q, axis=1, keepdims=True)
        rn = r / np.linalg.norm(r, axis=1, keepdims=True)
        d = 1 - qn @ rn.T
    else:
        d = ((q[:, None, :] - r[None, :, :]) ** 2).sum(-1)
    return np.argsort(d, axis=1, kind="stable")[:, :k], np.sort(d, axis=1)[:, :k]


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_matches_brute_force(metric):
    rng = np.random.default_rng(0)
    q = rng.normal(size=(50, 8)).astype(np.float32)
    r = rng.normal(size=(200, 8)).astype(np.float32)
    nb = knn(q, r, 7, metric)
    idx, dist = _brute(q.astype(np.float64), r.astype(np.float64), 7, metric)
    np.testing.assert_array_equal(nb.indices, idx)
    np.testing.assert_allclose(nb.distances, dist, rtol=1e-4, atol=1e-4)
    assert nb.metric is Metric(metric)


def test_self_search_drops_self_and_slices():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(100, 5)).astype(np.float32)
    nb = knn(X, None, 10, "l2")
    assert not (nb.indices == np.arange(100)[:, None]).any()
    idx, _ = _brute(X.astype(np.float64), X.astype(np.float64), 11, "l2")
    np.testing.assert_array_equal(nb.indices, idx[:, 1:])
    np.testing.assert_array_equal(nb.top(3).indices, nb.indices[:, :3])
    with pytest.raises(ValueError, match="graph holds 10"):
        nb.top(11)


def test_too_few_samples():
    X = np.zeros((5, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="only 4 other samples"):
        knn(X, None, 5)
