"""Coverage: threshold calibration, ranking of uncovered stages and transfer-carrying clips, CLI, bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from conftest import clustered_latents, synthetic_meta
from probe import columns as C
from probe.cli import main
from probe.measure.coverage import calibrate_threshold, coverage, nearest_counts, other_episode_nn, rank_groups
from probe.errors import ConfigError, MetricError
from probe.latents import Latents
from probe.store.writer import write_store


@pytest.fixture
def gap_latents():
    """Human data lacks the push/lift stage entirely; everything else is covered."""
    meta = synthetic_meta(n_episodes=4, frames=20)
    X = clustered_latents(meta, dim=16, noise=0.3)
    keep = ~((meta[C.EMBODIMENT] == "human") & (meta[C.TASK] == "push") & (meta[C.STAGE] == "lift")).to_numpy()
    return Latents(X[keep], meta[keep].reset_index(drop=True), "trunk")


def test_other_episode_nn_matches_brute_force():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 5)).astype(np.float32)
    X[1::2] = X[0::2] + 0.01  # near-duplicate pairs inside each episode force the fallback path
    episodes = np.repeat(np.arange(6), 10)
    for metric in ("cosine", "l2"):
        d, i = other_episode_nn(X, episodes, metric, k=1)
        if metric == "cosine":
            Y = X / np.linalg.norm(X, axis=1, keepdims=True)
            full = 1 - Y @ Y.T
        else:
            full = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)
        full[episodes[:, None] == episodes[None, :]] = np.inf
        np.testing.assert_array_equal(i, full.argmin(axis=1))
        np.testing.assert_allclose(d, full.min(axis=1), rtol=1e-4, atol=1e-5)
        assert (episodes[i] != episodes).all()


def test_calibrate_threshold_and_rank_groups_by_hand():
    assert calibrate_threshold(np.arange(101.0), 0.95) == pytest.approx(95.0)
    assert calibrate_threshold(np.array([1.0, np.inf, 3.0]), 1.0) == 3.0
    with pytest.raises(ConfigError, match="quantile must lie in"):
        calibrate_threshold(np.ones(3), 1.5)
    groups = pd.DataFrame({"stage": ["a", "a", "b", "b", "c"]})
    ranked = rank_groups(np.array([0.1, 0.9, 0.2, 0.3, 0.5]), 0.4, groups, pd.Series({"a": 3, "b": 0}))
    assert list(ranked["stage"]) == ["c", "a", "b"]  # share beyond: c 1.0, a 0.5, b 0.0
    assert list(ranked["share_beyond"]) == [1.0, 0.5, 0.0] and list(ranked["rank"]) == [1, 2, 3]
    assert list(ranked["reference_samples"]) == [0, 3, 0]
    np.testing.assert_array_equal(nearest_counts(np.array([2, 2, 0, -1]), 4), [1, 0, 2, 0])


def test_missing_human_stage_ranks_first(gap_latents):
    res = coverage(gap_latents)
    top = res.stages.iloc[0]
    assert (top[C.TASK], top[C.STAGE]) == ("push", "lift")
    assert top["share_beyond"] == 1.0 and top["reference_samples"] == 0 and top["nn_same_stage"] == 0.0
    covered = res.stages.iloc[1:]
    assert (covered["share_beyond"] < 0.5).all() and (covered["nn_same_stage"] == 1.0).all()
    assert res.tasks.iloc[0][C.TASK] == "push"
    assert "collect more human data for task 'push', stage 'lift'" in res.advice()[0]
    # threshold is the 95% quantile of human -> other human episode distances
    human = gap_latents.of("human")
    d, _ = other_episode_nn(human.X, human.episode_keys(), "cosine")
    assert res.threshold == pytest.approx(np.quantile(d, 0.95))
    assert res.samples["beyond"].sum() == (res.samples["nn_distance"] > res.threshold).sum()


def test_transfer_counts_only_covered_states(gap_latents):
    res = coverage(gap_latents)
    n_covered = int((~res.samples["beyond"]).sum())
    assert res.episodes["nearest_to"].sum() == n_covered == res.clips["nearest_to"].sum()
    assert (np.diff(res.clips["nearest_to"]) <= 0).all()
    # every clip's count equals the covered robot states whose nearest human sample lies in it
    samples = res.samples[~res.samples["beyond"]]
    human = gap_latents.of("human").meta.set_index(C.SAMPLE_ID)
    nn = human.loc[samples["nn_sample_id"], [C.EPISODE, C.STAGE]].value_counts()
    top = res.clips.iloc[0]
    assert nn[(top[C.EPISODE], top[C.STAGE])] == top["nearest_to"]


def test_identical_embodiments_are_fully_covered():
    meta = synthetic_meta(n_episodes=4, frames=20)
    X = clustered_latents(meta, dim=16, noise=0.3)
    n = len(meta) // 2
    X[n:] = X[:n]  # robot episodes are copies of human episodes
    res = coverage(Latents(X, meta, "l"), metric="l2")
    assert res.share_beyond == 0.0 and (res.samples["nn_distance"] == 0).all()


def test_embodiment_without_samples_lists_the_others(gap_latents):
    with pytest.raises(ConfigError, match=r"embodiment 'humanoid' has no samples; .*robot \(160 samples\), human \(136 samples\)"):
        coverage(gap_latents, a="humanoid")


def test_single_human_episode_cannot_calibrate():
    meta = synthetic_meta(n_episodes=1, frames=10, tasks=("pick",))
    lat = Latents(clustered_latents(meta, dim=8), meta, "l")
    with pytest.raises(MetricError, match="single episode.*at least two episodes"):
        coverage(lat)


def test_cli_writes_json_and_csv(gap_latents, tmp_path, capsys):
    store = write_store(tmp_path / "s", gap_latents.meta, {"trunk": np.asarray(gap_latents.X)})
    out = tmp_path / "cov" / "coverage.json"
    assert main(["coverage", str(store.path), "--out", str(out), "--csv"]) == 0
    printed = capsys.readouterr().out
    assert "push" in printed and "collect more human data" in printed
    payload = json.loads(out.read_text())
    assert payload["stages"][0]["task"] == "push" and payload["stages"][0]["stage"] == "lift"
    assert payload["threshold"]["quantile"] == 0.95 and "another episode" in payload["threshold"]["calibration"]
    assert payload["fingerprint"] == store.fingerprint
    stages = pd.read_csv(out.with_name("coverage.stages.csv"))
    assert list(stages.columns[:3]) == ["rank", "task", "stage"] and len(stages) == 6
    assert sorted(p.name for p in out.parent.iterdir()) == sorted(
        ["coverage.json"] + [f"coverage.{n}.csv" for n in ("stages", "tasks", "episodes", "clips", "samples")])
    assert main(["coverage", str(store.path), "--b", "cyborg"]) == 2
    assert "embodiment 'cyborg' has no samples" in capsys.readouterr().err


def test_no_clip_is_said_to_carry_transfer_when_no_robot_state_is_covered(tmp_path, capsys):
    meta = synthetic_meta(n_episodes=4, frames=20)
    X = clustered_latents(meta, dim=16, noise=0.3, shift=1000.0)  # robot latents far from every human one
    res = coverage(Latents(X, meta, "trunk"))
    assert res.share_beyond == 1.0 and (res.clips["nearest_to"] == 0).all()
    advice = res.advice()
    assert not any("carrying the most transfer" in line for line in advice)
    assert advice[-1] == (f"no human clip carries transfer yet: every one of the {len(res.samples)} robot states lies "
                          "beyond the threshold, so none has a human match")
    store = write_store(tmp_path / "s", meta, {"trunk": X})
    assert main(["coverage", str(store.path)]) == 0
    printed = capsys.readouterr().out
    assert "to 0 robot states" not in printed and "no human clip carries transfer yet" in printed
    # with some states covered, the top clip is named with its count
    top = coverage(Latents(clustered_latents(meta, dim=16, noise=0.3), meta, "trunk")).advice()[-1]
    assert top.startswith("the human clip carrying the most transfer is") and "covered robot states" in top


def test_without_layer_the_stores_last_layer_is_used_and_said_off_stdout_for_json(gap_latents, tmp_path, capsys):
    X = np.asarray(gap_latents.X)
    store = write_store(tmp_path / "s", gap_latents.meta, {"vision": X[:, ::-1].copy(), "trunk": X})
    assert main(["coverage", str(store.path), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["stages"][0]["stage"] == "lift"  # stdout stays JSON
    assert captured.err.strip() == "layer trunk (the store's last of 2: vision, trunk; --layer picks another)"
    assert main(["coverage", str(store.path), "--layer", "vision"]) == 0
    assert "picks another" not in capsys.readouterr().out  # a named layer needs no note


def test_cli_tables_hide_no_value_at_80_columns_and_say_what_next(tmp_path, capsys, monkeypatch):
    from probe.console import console

    tasks = ("pick the cup and place it on the plate", "push the block to the target")
    meta = synthetic_meta(n_episodes=4, frames=20, tasks=tasks, stages=("reach", "release", "retreat"))
    store = write_store(tmp_path / "s", meta, {"trunk": clustered_latents(meta, dim=16, noise=0.3)})
    monkeypatch.setattr(console, "width", 80)
    assert main(["coverage", str(store.path), "--layer", "trunk"]) == 0
    lines = capsys.readouterr().out.splitlines()
    tables = "\n".join(line for line in lines if line[:1] in "┏┃┡│└")
    assert "…" not in tables and max(map(len, tables.splitlines())) <= 80
    for stage in ("reach", "release", "retreat"):  # Rich alone cut the stage column to 'mo…' / 're…'
        assert f" {stage} " in tables
    result = coverage(store.latents("trunk"))
    for _, r in result.stages.iterrows():
        assert f"{r['median_distance']:.4f}" in tables and f"{r['share_beyond']:.0%}" in tables
    steps = [s.strip() for s in lines[lines.index("next:") + 1:]]
    assert steps[0].startswith(f"probe coverage {store.path} --layer trunk --out coverage.json --csv")
    assert steps[1].startswith(f"probe index {store.path} --layer trunk --embodiment human")
    assert steps[2].startswith(f"probe serve --start-layer trunk {store.path}")
