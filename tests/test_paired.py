"""Paired similarity: invariances, reference formulas, chance levels."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import ortho_group

from metrics import paired as P


def _data(m=200, d=16, seed=0):
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(m, 4))
    return (latent @ rng.normal(size=(4, d)) + 0.3 * rng.normal(size=(m, d))).astype(np.float32), rng


def _gram_cka_reference(A, B, debiased):
    """Kornblith et al.'s Gram-matrix CKA (center_gram(unbiased=...) + cka), transcribed in numpy."""
    def center(K, unbiased):
        K = K.copy()
        n = K.shape[0]
        if unbiased:
            np.fill_diagonal(K, 0)
            means = K.sum(0) / (n - 2)
            means -= means.sum() / (2 * (n - 1))
            K -= means[:, None]
            K -= means[None, :]
            np.fill_diagonal(K, 0)
        else:
            means = K.mean(0)
            means -= means.mean() / 2
            K -= means[:, None]
            K -= means[None, :]
        return K
    A, B = A.astype(np.float64), B.astype(np.float64)
    K, L = center(A @ A.T, debiased), center(B @ B.T, debiased)
    return (K.ravel() @ L.ravel()) / (np.linalg.norm(K) * np.linalg.norm(L))


def test_rotated_scaled_translated_copy_is_identical():
    A, _ = _data()
    Q = ortho_group.rvs(16, random_state=1)
    B = (3.7 * A @ Q + 5.0).astype(np.float32)
    assert P.cka_linear(A, B) == pytest.approx(1.0, abs=1e-6)
    assert P.cka_debiased(A, B) == pytest.approx(1.0, abs=1e-6)
    assert P.procrustes_angular(A, B) == pytest.approx(0.0, abs=2e-3)   # arccos near 1 amplifies float error
    assert P.svcca(A, B) == pytest.approx(1.0, abs=1e-6)
    assert P.mutual_knn(A, (A @ Q).astype(np.float32), k=10) == pytest.approx(1.0)


def test_isotropic_scaling_invariance_and_symmetry():
    A, rng = _data()
    B = (A @ rng.normal(size=(16, 8)) + rng.normal(size=(200, 8))).astype(np.float32)
    for f in (P.cka_linear, P.cka_debiased, P.procrustes_angular, P.svcca):
        assert f(A, B) == pytest.approx(f(10 * A, 0.1 * B), rel=1e-5, abs=1e-6), f.__name__
        assert f(A, B) == pytest.approx(f(B, A), rel=1e-5, abs=1e-6), f.__name__
    assert P.mutual_knn(A, B) == P.mutual_knn(10 * A, 0.1 * B)


@pytest.mark.parametrize("debiased", [False, True])
def test_cka_agrees_with_gram_reference(debiased):
    A, rng = _data(m=60, d=7)
    B = (A[:, :5] ** 2 + rng.normal(size=(60, 5))).astype(np.float32)
    f = P.cka_debiased if debiased else P.cka_linear
    assert f(A, B) == pytest.approx(_gram_cka_reference(A, B, debiased), rel=1e-9, abs=1e-12)
    # wide matrices (d > m) go through the SVD reduction and give the same value
    W = np.random.default_rng(2).normal(size=(20, 50))
    V = W @ np.random.default_rng(3).normal(size=(50, 40))
    assert f(W, V) == pytest.approx(_gram_cka_reference(W, V, debiased), rel=1e-9, abs=1e-12)


def test_independent_random_matrices_score_low():
    rng = np.random.default_rng(5)
    A = rng.normal(size=(500, 10))
    B = rng.normal(size=(500, 10))
    assert P.cka_linear(A, B) < 0.05
    assert abs(P.cka_debiased(A, B)) < 0.02
    assert P.procrustes_angular(A, B) > 1.2
    assert P.svcca(A, B) < 0.15
    assert P.mutual_knn(A, B, k=10) < 0.1


def test_svcca_dimension_cap_keeps_chance_below_one_on_few_pairs():
    rng = np.random.default_rng(0)
    A, B = rng.normal(size=(60, 64)), rng.normal(size=(60, 64))
    assert P.svcca(A, B, max_dims=1000) > 0.8          # the plain 99 % rule overfits on 60 rows
    assert P.svcca(A, B) < 0.5                          # default cap m // 4 = 15 directions
    assert P.svcca(A, A + 0.5 * rng.normal(size=A.shape)) > 0.75
    with pytest.raises(ValueError, match="max_dims must be >= 1"):
        P.svcca(A, B, max_dims=0)


def test_procrustes_against_scipy_orthogonal_procrustes():
    from scipy.linalg import orthogonal_procrustes
    A, rng = _data(m=40, d=6)
    B = A + 0.5 * rng.normal(size=A.shape)
    a = A - A.mean(0); a /= np.linalg.norm(a)
    b = B - B.mean(0); b /= np.linalg.norm(b)
    R, _ = orthogonal_procrustes(a, b)
    assert P.procrustes_angular(A, B) == pytest.approx(np.arccos(np.sum((a @ R) * b)), abs=1e-6)


def test_mutual_knn_brute_force():
    rng = np.random.default_rng(7)
    A, B = rng.normal(size=(30, 5)), rng.normal(size=(30, 5))
    def neigh(X):
        Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
        S = Xn @ Xn.T
        np.fill_diagonal(S, -np.inf)
        return np.argsort(-S, axis=1)[:, :4]
    na, nb = neigh(A), neigh(B)
    expected = [len(set(na[i]) & set(nb[i])) / 4 for i in range(30)]
    np.testing.assert_allclose(P.mutual_knn_samples(A, B, k=4), expected)


def test_paired_scores_and_small_inputs():
    A, rng = _data(m=8, d=3)
    s = P.paired_scores(A, A + 0.01 * rng.normal(size=A.shape), k=10)
    assert np.isnan(s["mutual_knn"]) and s["n_pairs"] == 8 and s["cka_linear"] > 0.99


def test_invalid_inputs():
    A = np.zeros((5, 3))
    with pytest.raises(ValueError, match="row-aligned A and B.*got 5 and 4 rows.*matched_pairs"):
        P.cka_linear(A, np.zeros((4, 3)))
    with pytest.raises(ValueError, match="needs 2-D arrays"):
        P.svcca(A[0], A)
    with pytest.raises(ValueError, match="mutual_knn needs at least 11 paired rows; got 5"):
        P.mutual_knn(A, A, k=10)
    bad = np.ones((5, 3)); bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="A contains NaN"):
        P.cka_debiased(bad, A)
    with pytest.raises(ValueError, match="constant across rows"):
        P.procrustes_angular(np.ones((5, 3)), np.random.default_rng(0).normal(size=(5, 3)))
