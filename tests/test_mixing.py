"""Mixing metrics: hand cases, agreement with brute-force numpy / scipy, invariants, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chi2

from metrics.knn import Neighbors, knn
from metrics.lisi import clisi, ilisi, lisi_samples
from metrics.mixing import (bras, embodiment_probe_acc, kbet, kbet_test, knn_embodiment_mixing, knn_mixing_samples,
                            silhouette_embodiment)
from metrics.silhouette import silhouette_samples


def _twins(n=300, dim=8, seed=0):
    """One set of latents, its rows split at random between two embodiments (by episode): perfect mixing."""
    rng = np.random.default_rng(seed)
    stage = np.tile(np.repeat(np.arange(3), 10), n // 30)  # episodes of 30 frames, 3 stages each
    base = rng.normal(size=(3, dim)) * 4
    X = (base[stage] + rng.normal(size=(n, dim))).astype(np.float32)
    groups = np.arange(n) // 30
    episode_emb = rng.permutation(np.array(["human", "robot"] * (n // 60)))
    emb = episode_emb[groups]
    return X, emb, stage.astype(str), groups


def _separated(n=150, dim=8, seed=0):
    X, emb, stage, groups = _twins(n, dim, seed)
    X = X.copy()
    X[emb == "robot", 0] += 40.0
    return X, emb, stage, groups


def _brute_lisi(D, labels_nb, perplexity):
    """One row of LISI with scipy root-finding of the kernel precision (independent of the binary search)."""
    from scipy.optimize import brentq

    def H(beta):
        P = np.exp(-(D - D.min()) * beta)
        P /= P.sum()
        return -(P * np.log(np.where(P > 0, P, 1))).sum() - np.log(perplexity)

    beta = brentq(H, 1e-8, 1e4)
    P = np.exp(-(D - D.min()) * beta)
    P /= P.sum()
    simpson = sum(P[labels_nb == lab].sum() ** 2 for lab in np.unique(labels_nb))
    return 1.0 / simpson


def test_lisi_matches_brute_force_root_finding():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(120, 5)).astype(np.float32)
    labels = rng.choice(["a", "b", "c"], size=120)
    nb = knn(X, None, 30, "l2")
    lisi = lisi_samples(nb, labels, tol=1e-9, max_iter=200)
    for i in range(0, 120, 17):
        D = np.sqrt(nb.distances[i].astype(np.float64))
        ref = _brute_lisi(D, labels[nb.indices[i]], 10.0)
        assert lisi[i] == pytest.approx(ref, rel=1e-4)


def test_lisi_hand_cases():
    # all neighbours share one label -> 1; equidistant neighbours split evenly between 2 labels -> 2
    idx = np.array([[1, 2, 3, 4, 5, 6]] * 1 + [[0, 2, 3, 4, 5, 6]] * 6)
    dist = np.ones(idx.shape, dtype=np.float32)
    nb = Neighbors(idx, dist, knn.__globals__["Metric"].L2)
    same = np.array(["a"] * 7)
    half = np.array(["a", "a", "a", "a", "b", "b", "b"])
    assert lisi_samples(nb, same, perplexity=2)[0] == pytest.approx(1.0)
    assert lisi_samples(nb, half, perplexity=2)[0] == pytest.approx(2.0)


def test_perfect_mixing_and_separation():
    X, emb, stage, groups = _twins(n=600)
    nb = knn(X, None, 90, "l2")
    assert ilisi(nb, emb) > 0.8  # random splits fluctuate: perplexity 30 gives ~0.9, not 1
    assert kbet(nb, emb) > 0.8
    assert knn_embodiment_mixing(nb, emb) == pytest.approx(1.0, abs=0.1)
    assert silhouette_embodiment(X, emb, stage) > 0.95
    assert bras(X, emb, stage) > 0.95
    assert embodiment_probe_acc(X, emb, groups) < 0.65

    Xs, emb, stage, groups = _separated(n=600)
    nb = knn(Xs, None, 90, "l2")
    assert ilisi(nb, emb) == pytest.approx(0.0, abs=1e-6)
    assert kbet(nb, emb) == 0.0
    assert knn_embodiment_mixing(nb, emb) == 0.0
    assert silhouette_embodiment(Xs, emb, stage) < 0.2
    assert bras(Xs, emb, stage) < 0.2
    assert embodiment_probe_acc(Xs, emb, groups) == 1.0


def test_kbet_matches_scipy_formula():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(80, 4)).astype(np.float32)
    emb = rng.choice(["h", "r"], size=80, p=[0.3, 0.7])
    nb = knn(X, None, 10, "l2")
    res = kbet_test(nb, emb)
    freq = np.array([(emb == "h").mean(), (emb == "r").mean()])
    for i in range(80):
        obs = np.array([(emb[nb.indices[i]] == "h").sum(), (emb[nb.indices[i]] == "r").sum()])
        exp = freq * 10
        stat = ((obs - exp) ** 2 / exp).sum()
        assert res.statistic[i] == pytest.approx(stat)
        assert res.p_value[i] == pytest.approx(chi2.sf(stat, 1))
    assert res.acceptance_rate == pytest.approx((res.p_value >= 0.05).mean())


def test_knn_mixing_hand_case():
    # 4 samples, 2 per embodiment; each sample's single neighbour is of the other embodiment
    idx = np.array([[2], [3], [0], [1]])
    nb = Neighbors(idx, np.zeros((4, 1), np.float32), knn.__globals__["Metric"].L2)
    emb = np.array(["h", "h", "r", "r"])
    s = knn_mixing_samples(nb, emb)
    np.testing.assert_allclose(s.observed, 1.0)
    np.testing.assert_allclose(s.expected, 2 / 3)
    assert knn_embodiment_mixing(nb, emb) == pytest.approx(1.5)


def test_bras_mean_other_matches_brute_force():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(60, 3))
    lab = rng.choice(["a", "b", "c"], size=60)
    D = np.sqrt(((X[:, None] - X[None]) ** 2).sum(-1))
    sil = silhouette_samples(X.astype(np.float32), lab, "l2", "mean_other")
    for i in range(60):
        same = (lab == lab[i])
        a = D[i, same].sum() / (same.sum() - 1)
        b = D[i, ~same].mean()
        assert sil[i] == pytest.approx((b - a) / max(a, b), abs=1e-4)


def test_row_permutation_changes_nothing():
    X, emb, stage, groups = _separated(n=120)
    X[:, 1] += np.random.default_rng(0).normal(size=len(X)) * 3
    perm = np.random.default_rng(5).permutation(len(X))
    a = knn(X, None, 20, "cosine")
    b = knn(X[perm], None, 20, "cosine")
    assert ilisi(a, emb) == pytest.approx(ilisi(b, emb[perm]), abs=1e-9)
    assert clisi(a, stage) == pytest.approx(clisi(b, stage[perm]), abs=1e-9)
    assert kbet(a, emb) == pytest.approx(kbet(b, emb[perm]))
    assert knn_embodiment_mixing(a, emb) == pytest.approx(knn_embodiment_mixing(b, emb[perm]))
    assert silhouette_embodiment(X, emb, stage) == pytest.approx(silhouette_embodiment(X[perm], emb[perm], stage[perm]), abs=1e-6)


def test_one_embodiment_is_a_clear_error():
    X, emb, stage, groups = _twins(n=60)
    nb = knn(X, None, 5, "l2")
    one = np.array(["robot"] * len(X))
    for fn in (lambda: kbet(nb, one), lambda: knn_embodiment_mixing(nb, one), lambda: ilisi(nb, one),
               lambda: silhouette_embodiment(X, one, stage), lambda: embodiment_probe_acc(X, one, groups)):
        with pytest.raises(ValueError, match="at least 2 embodiments"):
            fn()


def test_probe_needs_two_episodes_per_embodiment():
    X, emb, stage, _ = _twins(n=60)
    groups = np.where(emb == "human", 0, 1)
    with pytest.raises(ValueError, match="at least 2 episodes of every embodiment"):
        embodiment_probe_acc(X, emb, groups)


def test_matches_scib_metrics_reference():
    """Frozen scib-metrics 0.5 values (tests/fixtures/make_scib_reference.py) on the same data and graph."""
    import json
    from pathlib import Path

    from metrics.conservation import silhouette_stage
    from metrics.knn import Metric

    fx = json.loads((Path(__file__).parent / "fixtures" / "scib_reference.json").read_text())
    ref = fx["reference"]
    X = np.array(fx["X"], dtype=np.float32)
    emb, stage = np.array(fx["embodiment"]), np.array(fx["stage"])
    X64 = X.astype(np.float64)
    d2 = ((X64[:, None, :] - X64[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d2, np.inf)
    idx = np.argsort(d2, axis=1, kind="stable")[:, : fx["k"]]
    nb = Neighbors(idx, np.take_along_axis(d2, idx, axis=1).astype(np.float32), Metric.L2)
    assert ilisi(nb, emb) == pytest.approx(ref["ilisi"], abs=1e-3)
    assert clisi(nb, stage) == pytest.approx(ref["clisi"], abs=1e-3)
    assert kbet(nb.top(fx["kbet_k"]), emb) == pytest.approx(ref["kbet"], abs=1e-3)
    assert silhouette_embodiment(X, emb, stage, "l2") == pytest.approx(ref["silhouette_batch"], abs=1e-3)
    assert silhouette_stage(X, stage, "l2") == pytest.approx(ref["silhouette_label"], abs=1e-3)
    assert bras(X, emb, stage, "cosine") == pytest.approx(ref["bras"], abs=1e-3)
    # the graph agrees with our exact FAISS search
    np.testing.assert_array_equal(knn(X, None, fx["k"], "l2").indices[:, :10], idx[:, :10])
