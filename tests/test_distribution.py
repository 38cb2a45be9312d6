"""Distribution distances: brute-force MMD, closed-form Fréchet, POT references, identical vs shifted."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.distance import cdist, pdist

from metrics import distribution as D

FIXTURES = Path(__file__).with_name("fixtures")
ot = D._pot()  # POT without its torch backend


def _gauss(n, d=5, shift=0.0, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * scale
    X[:, 0] += shift
    return X.astype(np.float32)


def _mmd_brute(P, Q, sigma):
    P, Q = P.astype(np.float64), Q.astype(np.float64)
    k = lambda a, b: np.exp(-cdist(a, b, "sqeuclidean") / (2 * sigma**2))  # noqa: E731
    Kpp, Kqq, Kpq = k(P, P), k(Q, Q), k(P, Q)
    n, m = len(P), len(Q)
    return ((Kpp.sum() - np.trace(Kpp)) / (n * (n - 1)) + (Kqq.sum() - np.trace(Kqq)) / (m * (m - 1))
            - 2 * Kpq.mean())


def test_mmd_agrees_with_brute_force_numpy(monkeypatch):
    monkeypatch.setattr(D, "_ROW_BLOCK", 16)   # several kernel blocks
    P, Q = _gauss(40, shift=0.7, seed=1), _gauss(55, seed=2)
    Z = np.concatenate([P, Q]).astype(np.float64)
    sigma = float(np.median(pdist(Z)))
    assert D.median_bandwidth(P, Q) == pytest.approx(sigma)
    assert D.mmd_rbf(P, Q) == pytest.approx(_mmd_brute(P, Q, sigma), rel=1e-4, abs=1e-6)
    assert D.mmd_rbf(P, Q, bandwidth=0.5) == pytest.approx(_mmd_brute(P, Q, 0.5), rel=1e-4, abs=1e-6)
    # every permuted split is the brute-force MMD of that split
    rng = np.random.default_rng(0)
    test = D.mmd_pvalue(P, Q, n_permutations=5, seed=3)
    assert test.mmd2 == pytest.approx(_mmd_brute(P, Q, sigma), rel=1e-4, abs=1e-6)
    perm = rng.permutation(95)
    splits = np.zeros((95, 1), dtype=bool); splits[perm[:40], 0] = True
    stat = D._mmd2_stats(P, Q, sigma, splits)[0]
    assert stat == pytest.approx(_mmd_brute(Z[perm[:40]], Z[perm[40:]], sigma), rel=1e-4, abs=1e-6)


def test_identical_distributions_score_near_zero():
    P, Q = _gauss(300, seed=1), _gauss(300, seed=2)
    assert abs(D.mmd_rbf(P, Q)) < 0.01
    test = D.mmd_pvalue(P, Q, n_permutations=100, seed=0)
    assert test.p_value > 0.05 and test.n_permutations == 100
    assert D.frechet_distance(P, Q) < 0.3
    assert D.sliced_wasserstein(P, Q) < 0.2
    assert D.sinkhorn_divergence(P, Q) < 0.6 * D.sinkhorn_divergence(P, _gauss(300, shift=1.0, seed=2))
    assert D.sinkhorn_divergence(P, P) == pytest.approx(0.0, abs=1e-6)
    assert D.sliced_wasserstein(P, P) == pytest.approx(0.0, abs=1e-9)


def test_shifted_distributions_score_larger_and_grow_with_the_shift():
    P = _gauss(300, seed=1)
    scores = [D.distribution_scores(P, _gauss(300, shift=s, seed=2), n_permutations=50) for s in (0.0, 1.0, 3.0)]
    for key in ("mmd2", "frechet", "sliced_wasserstein", "sinkhorn_divergence"):
        assert scores[0][key] < scores[1][key] < scores[2][key], key
    assert scores[1]["mmd_pvalue"] == pytest.approx(1 / 51)   # smallest possible
    assert scores[2]["frechet"] == pytest.approx(9.0, rel=0.15)


def test_frechet_closed_form():
    # diagonal Gaussians: ||mu1 - mu2||^2 + sum (sqrt(a) - sqrt(b))^2, on exact sample moments
    P, Q = _gauss(2000, d=3, seed=1, scale=1.0), _gauss(2000, d=3, shift=2.0, seed=2, scale=2.0)
    mu1, mu2 = P.mean(0).astype(np.float64), Q.mean(0).astype(np.float64)
    c1, c2 = np.cov(P.T.astype(np.float64)), np.cov(Q.T.astype(np.float64))
    from scipy.linalg import sqrtm
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(c1 + c2 - 2 * np.real(sqrtm(c1 @ c2)))
    assert D.frechet_distance(P, Q) == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(4.0 + 3 * (2 - 1) ** 2, rel=0.1)


def test_sliced_wasserstein_in_one_dimension_is_exact_w2():
    P, Q = _gauss(50, d=1, seed=1), _gauss(70, d=1, shift=1.5, seed=2)
    M = ot.dist(P.astype(np.float64), Q.astype(np.float64))
    w2 = np.sqrt(ot.emd2(np.full(50, 1 / 50), np.full(70, 1 / 70), M))
    assert D.sliced_wasserstein(P, Q, n_projections=4) == pytest.approx(w2, rel=1e-6)


def test_sinkhorn_divergence_tends_to_w2_squared_for_small_epsilon():
    P, Q = _gauss(40, d=2, seed=1), _gauss(40, d=2, shift=2.0, seed=2)
    M = ot.dist(P.astype(np.float64), Q.astype(np.float64))
    w2sq = ot.emd2(np.full(40, 1 / 40), np.full(40, 1 / 40), M)
    assert D.sinkhorn_divergence(P, Q, epsilon=0.002) == pytest.approx(w2sq, rel=0.05)


def test_frozen_pot_reference():
    ref = json.loads((FIXTURES / "pot_reference.json").read_text())
    P, Q = np.array(ref["P"], dtype=np.float32), np.array(ref["Q"], dtype=np.float32)
    assert D.sliced_wasserstein(P, Q, n_projections=ref["n_projections"], seed=ref["seed"]) == pytest.approx(
        ref["sliced_wasserstein"], rel=1e-6)
    assert D.sinkhorn_divergence(P, Q, epsilon=ref["epsilon"]) == pytest.approx(ref["sinkhorn_divergence"], rel=1e-5)
    assert D.mmd_rbf(P, Q) == pytest.approx(ref["mmd2_brute_force"], rel=1e-4)
    assert D.frechet_distance(P, Q) == pytest.approx(ref["frechet"], rel=1e-6)


def test_subsampling_is_seeded_and_bounded():
    P, Q = _gauss(500, seed=1), _gauss(500, shift=1.0, seed=2)
    a = D.mmd_rbf(P, Q, max_samples=100, seed=4)
    assert a == D.mmd_rbf(P, Q, max_samples=100, seed=4)
    assert a != D.mmd_rbf(P, Q, max_samples=100, seed=5)
    assert D.subsample(P, 100, np.random.default_rng(0)).shape == (100, 5)
    assert D.mmd_pvalue(P, Q, n_permutations=10, max_samples=100).n_p == 100


def test_invalid_inputs():
    P = _gauss(10)
    with pytest.raises(ValueError, match=r"same width; got \(10, 5\) and \(10, 4\)"):
        D.mmd_rbf(P, P[:, :4])
    with pytest.raises(ValueError, match="at least 2 samples per embodiment; Q has 1"):
        D.mmd_rbf(P, P[:1])
    with pytest.raises(ValueError, match="n_permutations must be >= 1"):
        D.mmd_pvalue(P, P, n_permutations=0)
    bad = P.copy(); bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="P contains NaN or infinite"):
        D.frechet_distance(bad, P)
    with pytest.raises(ValueError, match="epsilon must be > 0"):
        D.sinkhorn_divergence(P, P, epsilon=0)


def test_pot_is_used_without_loading_torch():
    import subprocess
    import sys
    code = ("import sys, numpy as np, metrics.distribution as D\n"
            "x = np.random.default_rng(0).normal(size=(20, 3))\n"
            "D.sliced_wasserstein(x, x + 1); D.sinkhorn_divergence(x, x + 1)\n"
            "assert 'torch' not in sys.modules, 'POT loaded torch'\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


def test_sinkhorn_default_epsilon_in_high_dimension():
    # small epsilon would score two samples of one 128-d Gaussian near their (large) empirical W2^2
    P, Q = _gauss(200, d=128, seed=1), _gauss(200, d=128, seed=2)
    same, shifted = D.sinkhorn_divergence(P, Q), D.sinkhorn_divergence(P, Q + 1.0)
    assert same < 0.05 * shifted
    assert shifted == pytest.approx(128.0, rel=0.15)     # W2^2 of a unit mean shift in every dimension
