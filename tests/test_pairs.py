"""Matched pairs: (task, stage, progress-bin) means, one-sided stages reported, explicit pair ids."""

from __future__ import annotations

import numpy as np
import pytest

from metrics.pairs import group_means, matched_pairs, pairs_by_id, progress_bins
from tests.conftest import clustered_latents, synthetic_meta


def _cols(meta):
    return (meta["embodiment"].to_numpy(), meta["task"].to_numpy(), meta["stage"].to_numpy(),
            meta["stage_progress"].to_numpy())


def test_bins_and_hand_computed_means():
    np.testing.assert_array_equal(progress_bins(np.array([0.0, 0.09, 0.1, 0.55, 0.99, 1.0]), 10), [0, 0, 1, 5, 9, 9])
    X = np.array([[0, 0], [2, 2], [10, 10], [1, 1], [5, 5], [7, 7]], dtype=np.float32)
    emb = np.array(["human", "human", "human", "robot", "robot", "other"])
    task = np.array(["t"] * 6)
    stage = np.array(["s", "s", "s", "s", "s", "s"])
    prog = np.array([0.1, 0.2, 0.9, 0.3, 0.8, 0.5])
    p = matched_pairs(X, emb, task, stage, prog, bins=2)
    np.testing.assert_allclose(p.A, [[1, 1], [10, 10]])       # bin 0: mean of rows 0,1; bin 1: row 2
    np.testing.assert_allclose(p.B, [[1, 1], [5, 5]])         # the "other" embodiment is ignored
    assert p.keys["bin"].tolist() == [0, 1] and p.keys["n_a"].tolist() == [2, 1] and p.keys["n_b"].tolist() == [1, 1]
    assert p.A.dtype == np.float32 and len(p) == 2 and p.excluded == () and p.n_unmatched_bins == 0


def test_rows_are_aligned_on_synthetic_store():
    meta = synthetic_meta(n_episodes=2, frames=30)
    X = clustered_latents(meta, noise=0.0)     # latents depend on (task, stage) only
    p = matched_pairs(X, *_cols(meta), bins=5)
    np.testing.assert_allclose(p.A, p.B, atol=1e-6)
    assert len(p) == 2 * 3 * 5
    assert list(p.keys[["task", "stage"]][:2].tolist()) == [("pick", "grasp"), ("pick", "grasp")]
    grasp = p.rows(p.keys["stage"] == "grasp")
    assert len(grasp) == 2 * 5 and set(grasp.keys["stage"]) == {"grasp"}
    # means agree with a direct per-cell computation
    emb, task, stage, prog = _cols(meta)
    cell = (emb == "robot") & (task == "push") & (stage == "lift") & (progress_bins(prog, 5) == 4)
    row = np.flatnonzero((p.keys["task"] == "push") & (p.keys["stage"] == "lift") & (p.keys["bin"] == 4))[0]
    np.testing.assert_allclose(p.B[row], X[cell].mean(axis=0), rtol=1e-6)
    assert p.keys["n_b"][row] == cell.sum()


def test_stage_of_one_embodiment_is_excluded_and_reported():
    meta = synthetic_meta(n_episodes=2, frames=30)
    meta.loc[(meta["embodiment"] == "human") & (meta["stage"] == "lift"), "stage"] = "wave"
    X = clustered_latents(meta)
    p = matched_pairs(X, *_cols(meta), bins=3)
    keys = {(u.key, u.embodiment) for u in p.excluded}
    assert keys == {(("pick", "wave"), "human"), (("push", "wave"), "human"),
                    (("pick", "lift"), "robot"), (("push", "lift"), "robot")}
    assert all(u.n_samples == 20 for u in p.excluded)
    assert set(p.keys["stage"]) == {"reach", "grasp"} and len(p) == 2 * 2 * 3


def test_unmatched_bins_are_counted():
    X = np.eye(4, dtype=np.float32)
    p = matched_pairs(X, np.array(["human", "human", "robot", "robot"]), np.array(["t"] * 4), np.array(["s"] * 4),
                      np.array([0.0, 0.9, 0.05, 0.5]), bins=10)
    assert len(p) == 1 and p.n_unmatched_bins == 2


def test_pairs_by_id():
    X = np.arange(12, dtype=np.float32).reshape(6, 2)
    emb = np.array(["human", "robot", "human", "robot", "robot", "human"])
    ids = np.array(["p1", "p1", "p2", "p2", "p2", "p3"])
    p = pairs_by_id(X, emb, ids)
    assert p.keys["pair"].tolist() == ["p1", "p2"] and p.keys["n_b"].tolist() == [1, 2]
    np.testing.assert_allclose(p.B[1], X[[3, 4]].mean(axis=0))
    assert [(u.key, u.embodiment, u.n_samples) for u in p.excluded] == [(("p3",), "human", 1)]


def test_group_means_blocks(monkeypatch):
    import metrics.pairs as P
    monkeypatch.setattr(P, "_ROW_BLOCK", 3)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 3)).astype(np.float32)
    g = rng.integers(0, 4, size=20)
    means, counts = group_means(X, g, 5)
    for i in range(4):
        np.testing.assert_allclose(means[i], X[g == i].mean(axis=0), rtol=1e-5)
    assert counts[4] == 0 and not means[4].any()


def test_invalid_inputs():
    X = np.zeros((3, 2), dtype=np.float32)
    emb, t, s = np.array(["human", "robot", "robot"]), np.array(["t"] * 3), np.array(["s"] * 3)
    with pytest.raises(ValueError, match=r"stage_progress must be finite and within \[0, 1\]; got e.g. \[1.5\]"):
        matched_pairs(X, emb, t, s, np.array([0.1, 1.5, 0.2]))
    with pytest.raises(ValueError, match="no samples of embodiment 'human'; present: \\['robot'\\]"):
        matched_pairs(X, np.array(["robot"] * 3), t, s, np.zeros(3))
    with pytest.raises(ValueError, match="'task' must be 1-D with one entry per row of X \\(3\\)"):
        matched_pairs(X, emb, t[:2], s, np.zeros(3))
    with pytest.raises(ValueError, match="bins must be >= 1"):
        matched_pairs(X, emb, t, s, np.zeros(3), bins=0)
