"""Conservation metrics and the block-wise silhouette: scikit-learn agreement, chance levels, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import silhouette_samples as sk_silhouette_samples
from sklearn.metrics import silhouette_score

from metrics.conservation import silhouette_stage, stage_ari, stage_cluster_agreement, stage_nmi, stage_transfer_acc
from metrics.knn import knn
from metrics.lisi import clisi
from metrics.silhouette import silhouette_samples


def _stages(n_per=40, n_stages=4, dim=10, seed=0, shift=0.0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_stages, dim)) * 4
    stage = np.tile(np.repeat(np.arange(n_stages), n_per // 2), 2)
    X = centers[stage] + rng.normal(size=(len(stage), dim))
    emb = np.repeat(["human", "robot"], len(stage) // 2)
    X[emb == "robot", 1] += shift
    return X.astype(np.float32), np.array([f"s{s}" for s in stage]), emb


@pytest.mark.parametrize("metric,sk_metric", [("l2", "euclidean"), ("cosine", "cosine")])
def test_silhouette_matches_scikit_learn(metric, sk_metric):
    X, stage, _ = _stages()
    ours = silhouette_samples(X, stage, metric, block=7)  # odd block size exercises the chunking
    ref = sk_silhouette_samples(X.astype(np.float64), stage, metric=sk_metric)
    np.testing.assert_allclose(ours, ref, atol=2e-4)
    assert silhouette_stage(X, stage, metric) == pytest.approx((silhouette_score(X, stage, metric=sk_metric) + 1) / 2,
                                                               abs=2e-4)


def test_singleton_cluster_scores_zero_as_scikit_learn():
    X = np.array([[0, 0], [0, 1], [5, 5], [5, 6], [9, 9]], dtype=np.float32)
    lab = np.array([0, 0, 1, 1, 2])
    np.testing.assert_allclose(silhouette_samples(X, lab), sk_silhouette_samples(X, lab), atol=1e-5)


def test_conserved_stages_score_high_and_shuffled_stages_score_chance():
    X, stage, emb = _stages(n_per=60)
    nb = knn(X, None, 30, "l2")
    assert clisi(nb, stage) > 0.95
    assert silhouette_stage(X, stage) > 0.7
    agreement = stage_cluster_agreement(X, stage)
    assert agreement.nmi > 0.9 and agreement.ari > 0.9
    assert stage_transfer_acc(X, stage, emb, "robot", "human").balanced_accuracy > 0.95

    shuffled = np.random.default_rng(1).permutation(stage)
    assert clisi(nb, shuffled) < 0.5  # chance at perplexity 10 with 4 stages is ~0.4, not 0
    assert silhouette_stage(X, shuffled) == pytest.approx(0.5, abs=0.05)
    assert stage_nmi(X, shuffled) < 0.1
    assert abs(stage_ari(X, shuffled)) < 0.05
    assert stage_transfer_acc(X, shuffled, emb, "robot", "human").balanced_accuracy < 0.45  # chance = 0.25


def test_transfer_uses_only_shared_stages():
    X, stage, emb = _stages()
    stage = stage.copy()
    stage[(emb == "robot") & (stage == "s3")] = "robot_only"
    res = stage_transfer_acc(X, stage, emb, "robot", "human")
    assert res.stages == ["s0", "s1", "s2"]
    assert res.balanced_accuracy > 0.9


def test_one_stage_is_a_clear_error():
    X, stage, emb = _stages()
    one = np.array(["s0"] * len(X))
    nb = knn(X, None, 10, "l2")
    for fn in (lambda: clisi(nb, one), lambda: silhouette_stage(X, one), lambda: stage_nmi(X, one)):
        with pytest.raises(ValueError, match="at least 2 stages"):
            fn()
    with pytest.raises(ValueError, match="at least 2 stages present in both"):
        stage_transfer_acc(X, one, emb, "robot", "human")
    with pytest.raises(ValueError, match="needs samples of both"):
        stage_transfer_acc(X, stage, emb, "robot", "dog")


def test_silhouette_at_20k_rows_in_float32_blocks():
    """The block-wise path at n = 20k: no n x n float64 Gram (the OpenBLAS crash), agrees on a sample."""
    rng = np.random.default_rng(0)
    n, d = 20_000, 64
    lab = rng.integers(0, 5, size=n)
    X = (rng.normal(size=(5, d))[lab] * 2 + rng.normal(size=(n, d))).astype(np.float32)
    sil = silhouette_samples(X, lab, "l2")
    rows = rng.choice(n, size=50, replace=False)
    for i in rows[:5]:
        D = np.sqrt(((X.astype(np.float64) - X[i]) ** 2).sum(1))
        a = D[lab == lab[i]].sum() / ((lab == lab[i]).sum() - 1)
        b = min(D[lab == c].mean() for c in range(5) if c != lab[i])
        assert sil[i] == pytest.approx((b - a) / max(a, b), abs=1e-3)
