"""Temporal alignment: identical, reversed, shuffled and time-warped trajectories; the episode-pair driver."""

from __future__ import annotations

import numpy as np
import pytest

from metrics import temporal as T
from tests.conftest import synthetic_meta


def _trajectory(t, d=8, seed=0, speed=1.0):
    """A smooth curve through R^d, sampled at t frames (faster speed covers it in fewer frames)."""
    rng = np.random.default_rng(seed)
    freqs, phases = rng.uniform(0.3, 1.0, size=d), rng.uniform(0, 2 * np.pi, size=d)
    s = np.linspace(0, 1, t)[:, None] * 3.0
    return (np.c_[np.sin(freqs * s + phases), s] + 0.0).astype(np.float32)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_identical_reversed_shuffled(metric):
    U = _trajectory(60)
    assert T.kendall_tau(U, U, metric) == pytest.approx(1.0)
    assert T.cycle_consistency(U, U, metric=metric) == 1.0
    assert T.kendall_tau(U, U[::-1].copy(), metric) == pytest.approx(-1.0)
    assert T.cycle_consistency(U, U[::-1].copy(), metric=metric) == 1.0
    perm = np.random.default_rng(1).permutation(60)
    assert abs(T.kendall_tau(U, U[perm], metric)) < 0.25
    np.testing.assert_array_equal(T.nearest_frames(U, U[perm], metric), np.argsort(perm))


def test_time_warp_keeps_order_and_noise_breaks_cycles():
    U, V = _trajectory(90), _trajectory(30)     # the same path at a third of the frame rate
    assert T.kendall_tau(U, V, "l2") > 0.95
    assert T.cycle_consistency(V, U, tolerance=0, metric="l2") == 1.0
    rng = np.random.default_rng(2)
    noise = rng.normal(size=(60, 9)).astype(np.float32)
    assert T.cycle_consistency(_trajectory(60), noise, metric="l2") < 0.3


def test_cycle_tolerance_hand_computed():
    U = np.array([[0.0], [1.0], [2.0], [10.0]], dtype=np.float32)
    V = np.array([[1.1], [9.0]], dtype=np.float32)
    # u0 -> v0 -> u1 (1 frame off), u1 -> v0 -> u1, u2 -> v0 -> u1 (1 off), u3 -> v1 -> u3
    np.testing.assert_array_equal(T.cycle_consistency_samples(U, V, 0, "l2"), [False, True, False, True])
    assert T.cycle_consistency(U, V, 1, "l2") == 1.0
    assert np.isnan(T.kendall_tau(U[:3], V, "l2"))      # every frame matches v0: tau undefined


def test_episode_alignment_driver():
    meta = synthetic_meta(n_episodes=3, frames=25)
    # each row's latent: the task's trajectory at the row's progress; shuffle rows to test frame ordering
    X = np.zeros((len(meta), 9), dtype=np.float32)
    for task, seed in (("pick", 0), ("push", 1)):
        curve = _trajectory(101, seed=seed)
        rows = (meta["task"] == task).to_numpy()
        X[rows] = curve[np.round(meta["progress"].to_numpy()[rows] * 100).astype(int)]
    order = np.random.default_rng(0).permutation(len(meta))
    meta, X = meta.iloc[order].reset_index(drop=True), X[order]
    cols = [meta[c].to_numpy() for c in ("embodiment", "task", "episode", "frame")]
    res = T.episode_alignment(X, *cols, metric="l2")
    assert res.n_pairs_total == 2 * 3 * 3 and len(res.pairs) == 18
    assert res.tau == pytest.approx(1.0) and res.cycle == 1.0
    assert set(res.per_task()) == {"pick", "push"} and res.summary()["n_pairs"] == 18
    assert (res.pairs["n_a"] == 25).all()
    capped = T.episode_alignment(X, *cols, max_pairs=5, seed=3, metric="l2")
    assert len(capped.pairs) == 5 and capped.n_pairs_total == 18
    again = T.episode_alignment(X, *cols, max_pairs=5, seed=3, metric="l2")
    np.testing.assert_array_equal(capped.pairs, again.pairs)
    # reversing the robot episodes' frame order gives tau = -1
    emb, task, ep, frame = cols
    rev = np.where(emb == "robot", -frame, frame)
    assert T.episode_alignment(X, emb, task, ep, rev, metric="l2").tau == pytest.approx(-1.0)
    # a task of one embodiment only is skipped and reported
    task2 = np.where((emb == "human") & (task == "push"), "wave", task)
    res2 = T.episode_alignment(X, emb, task2, ep, frame, metric="l2")
    assert res2.skipped_tasks == (("push", "robot"), ("wave", "human")) and set(res2.pairs["task"]) == {"pick"}


def test_invalid_inputs():
    U = _trajectory(10)
    with pytest.raises(ValueError, match="same width; got 9 and 8"):
        T.kendall_tau(U, U[:, :8])
    with pytest.raises(ValueError, match="U must be a 2-D"):
        T.kendall_tau(U[0], U)
    with pytest.raises(ValueError, match="tolerance must be >= 0"):
        T.cycle_consistency(U, U, tolerance=-1)
    X = np.zeros((4, 2), dtype=np.float32)
    cols = [np.array(["human"] * 4), np.array(["t"] * 4), np.zeros(4, int), np.arange(4)]
    with pytest.raises(ValueError, match="no samples of embodiment 'robot'; present: \\['human'\\]"):
        T.episode_alignment(X, *cols)
    with pytest.raises(ValueError, match="'frame' 1-D with one entry per row"):
        T.episode_alignment(X, *cols[:3], np.arange(3))
    with pytest.raises(ValueError, match="max_pairs must be >= 1"):
        T.episode_alignment(X, *cols, max_pairs=0)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_nearest_frames_agree_with_brute_force_across_blocks(metric, monkeypatch):
    monkeypatch.setattr(T, "_BLOCK", 7)
    rng = np.random.default_rng(4)
    U, V = rng.normal(size=(30, 5)).astype(np.float32), rng.normal(size=(23, 5)).astype(np.float64)
    u, v = U.astype(np.float64), V
    if metric == "cosine":
        u, v = u / np.linalg.norm(u, axis=1, keepdims=True), v / np.linalg.norm(v, axis=1, keepdims=True)
        dist = -(u @ v.T)
    else:
        dist = ((u[:, None] - v[None]) ** 2).sum(-1)
    forward, back = T._nearest_both(U, V, metric)
    np.testing.assert_array_equal(forward, dist.argmin(1))
    np.testing.assert_array_equal(back, dist.argmin(0))
    np.testing.assert_array_equal(T.cycle_consistency_samples(U, V, 0, metric),
                                  dist.argmin(0)[dist.argmin(1)] == np.arange(30))
