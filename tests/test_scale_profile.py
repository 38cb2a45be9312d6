"""The mixing scale profile (metrics.scale, `probe metrics --scales`): kNN embodiment mixing at several k."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import assert_refused, clustered_latents, synthetic_meta
from metrics import bootstrap as bs
from metrics.knn import Metric, Neighbors
from metrics.mixing import knn_embodiment_mixing
from metrics.scale import check_scales, mixing_scale_profile, suite_scale_profile
from metrics.spec import MetricsConfig
from metrics.suite import run_suite
from probe.cli import main
from probe.errors import ConfigError
from probe.latents import Latents
from probe.measure.suite import evaluate, labels_of
from probe.store.writer import write_store


def brute_force_knn(X: np.ndarray, k: int, metric: str) -> Neighbors:
    """Exact kNN in float64 numpy, self excluded (the reference the FAISS graph is checked against)."""
    X = np.asarray(X, dtype=np.float64)
    if metric == "cosine":
        Z = X / np.linalg.norm(X, axis=1, keepdims=True)
        D = 1.0 - Z @ Z.T
    else:
        sq = np.square(X).sum(axis=1)
        D = sq[:, None] + sq[None, :] - 2.0 * X @ X.T
    np.fill_diagonal(D, np.inf)
    idx = np.argsort(D, axis=1, kind="stable")[:, :k]
    return Neighbors(idx, np.take_along_axis(D, idx, axis=1), Metric(metric))


def shared_clusters(offset: float, clusters: int = 6, size: int = 60, d: int = 8, run: int = 4, seed: int = 0):
    """Clusters that both embodiments visit; within each, the embodiments are two blobs ``offset`` apart (unit
    noise): separate up close, shared at the scale of a cluster (2 * size rows). Runs of ``run`` consecutive
    rows of one blob; clusters alternate between two stages."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(clusters, d)) * 20
    direction = rng.normal(size=d)
    direction /= np.linalg.norm(direction)
    X, emb, stage = [], [], []
    for c in range(clusters):
        for name, sign in (("human", -0.5), ("robot", 0.5)):
            X.append(centers[c] + sign * offset * direction + rng.normal(size=(size, d)))
            emb += [name] * size
            stage += [f"s{c % 2}"] * size
    n = clusters * 2 * size
    return np.concatenate(X).astype(np.float32), np.array(emb), np.array(stage), np.arange(n) // run


# ------------------------------------------------------------------------------------------------ metrics.scale


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_value_at_each_k_is_knn_mixing_on_an_exact_brute_force_graph(metric):
    meta = synthetic_meta(n_episodes=3, frames=12)
    X = clustered_latents(meta, shift=2.0, noise=1.0)
    emb, stage = meta["embodiment"].to_numpy(), meta["stage"].to_numpy()
    runs = bs.runs(meta["episode"].to_numpy(), stage)
    ks = [1, 4, 15, 33, 90]
    profile = mixing_scale_profile(X, emb, stage, runs, ks, metric, permutations=5)
    assert [p.k for p in profile.points] == ks and profile.n == len(X)
    reference = brute_force_knn(X, max(ks), metric)
    values = [p.value for p in profile.points]
    expected = [knn_embodiment_mixing(reference.top(k), emb) for k in ks]
    np.testing.assert_allclose(values, expected, rtol=0, atol=1e-12)
    assert len(set(np.round(values, 6))) == len(ks)  # the ks really differ: a profile of one k would fail
    for p in profile.points:
        assert p.ratio == pytest.approx(p.value / p.null)


def test_shared_coarse_structure_rises_with_k_to_about_1_at_a_clusters_size():
    X, emb, stage, runs = shared_clusters(offset=4.0)
    cluster = 2 * 60  # rows of both embodiments in one cluster
    ks = [5, 15, 30, 60, cluster - 1, 300]
    profile = mixing_scale_profile(X, emb, stage, runs, ks, "l2", permutations=20)
    ratios = {p.k: p.ratio for p in profile.points}
    assert ratios[5] < 0.25 and ratios[15] < 0.3  # locally separate
    assert ratios[5] < ratios[15] < ratios[30] < ratios[60] < ratios[cluster - 1]  # rising with the scale
    assert abs(ratios[cluster - 1] - 1) < 0.1 and abs(ratios[300] - 1) < 0.1  # shared at a cluster's size
    for p in profile.points:  # runs are short and spread: the null is near chance at every k
        assert 0.85 < p.null < 1.1, p


def test_fully_mixed_embodiments_score_about_1_at_every_k():
    X, emb, stage, runs = shared_clusters(offset=0.0)
    profile = mixing_scale_profile(X, emb, stage, runs, [3, 10, 30, 100, 300], "cosine", permutations=20)
    for p in profile.points:
        assert abs(p.ratio - 1) < 0.1 and abs(p.value - 1) < 0.1, p
    # the same latents with the embodiments moved apart: no longer ~1 (the test can fail)
    far = mixing_scale_profile(*shared_clusters(offset=8.0), [3, 10], "cosine", permutations=5)
    assert all(p.ratio < 0.2 for p in far.points)


def test_at_the_suites_k_the_profile_is_the_suites_knn_mixing_and_null():
    meta = synthetic_meta(n_episodes=4, frames=15)
    X = clustered_latents(meta, noise=1.0, shift=2.0)
    labels = labels_of(Latents(X, meta, "x"))
    config = MetricsConfig(k=20, bootstrap=0, null_repeats=3, permutations=30, metrics=("knn_embodiment_mixing",))
    suite = run_suite(X, labels, config).metrics["knn_embodiment_mixing"]
    profile = suite_scale_profile(X, labels, config, [config.mixing_k, 60])
    at15 = profile.points[0]
    assert at15.k == 15 and at15.value == pytest.approx(suite.value, abs=1e-12)
    assert at15.null == pytest.approx(suite.null, abs=1e-12) and 0 < at15.null < 1
    assert profile.points[1].value != pytest.approx(suite.value)


def test_the_profile_runs_on_the_suites_subsample_above_max_samples():
    meta = synthetic_meta(n_episodes=4, frames=15)
    X = clustered_latents(meta, noise=1.0, shift=2.0)
    labels = labels_of(Latents(X, meta, "x"))
    profile = suite_scale_profile(X, labels, MetricsConfig(max_samples=100, null_repeats=2, permutations=0), [5, 20])
    assert profile.n == 100 and "subsample of 100 of 240 samples" in profile.notes[0]
    with pytest.raises(ValueError, match="k=100 neighbours need more than 100 rows, but only 100 are measured"):
        suite_scale_profile(X, labels, MetricsConfig(max_samples=100), [5, 100])


def test_bad_ks_are_refused_and_a_k_above_an_embodiments_rows_is_noted():
    X, emb, stage, runs = shared_clusters(offset=4.0, clusters=2, size=20)  # 80 rows, 40 per embodiment
    for ks, message in (([0], "k must be >= 1, got 0"), ([5, 80], "k=80 neighbours need more than 80 rows, but only "
                                                                   "80 are measured; give neighbourhood sizes below 80"),
                        ([2.5], "whole numbers"), ([True], "whole numbers"), ([], "no neighbourhood size")):
        with pytest.raises(ValueError, match=message):
            mixing_scale_profile(X, emb, stage, runs, ks, "l2")
    assert check_scales([50, 5, 50], 80) == (5, 50)
    profile = mixing_scale_profile(X, emb, stage, runs, [5, 50, 79], "l2", permutations=3)
    assert [p.k for p in profile.points] == [5, 50, 79]
    (note,) = profile.notes
    assert "k=50, 79 exceed the 40 rows of embodiment 'human'" in note
    assert profile.points[-1].value > 0.4  # bounded away from 0 there, as the note says; not clipped
    assert not mixing_scale_profile(X, emb, stage, runs, [5, 39], "l2", permutations=3).notes


def test_no_permutations_no_null_and_no_ratio():
    X, emb, stage, runs = shared_clusters(offset=4.0, clusters=2, size=20)
    profile = mixing_scale_profile(X, emb, stage, runs, [5], "l2", permutations=0)
    assert np.isnan(profile.points[0].null) and np.isnan(profile.points[0].ratio)
    assert profile.to_records() == [{"k": 5, "value": profile.points[0].value, "null": None, "ratio": None}]


# ------------------------------------------------------------------------------------------- probe metrics --scales

FAST = ["--families", "mixing", "--bootstrap", "0", "--nulls", "1", "--permutations", "9"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    meta = synthetic_meta(n_episodes=4, frames=15)  # 240 rows
    return write_store(tmp_path_factory.mktemp("s") / "step-000400", meta,
                       {"trunk": clustered_latents(meta, noise=1.0, shift=3.0)}, provenance={"step": 400})


def test_cli_prints_the_profile_and_writes_the_key(store, tmp_path, capsys):
    out = tmp_path / "m.json"
    assert main(["metrics", str(store.path), "--scales", "20,5", *FAST, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "embodiment mixing by neighbourhood size: " in text
    rec = json.loads(out.read_text())
    profile = rec["scale_profile"]
    assert [p["k"] for p in profile] == [5, 20] and set(profile[0]) == {"k", "value", "null", "ratio"}
    assert profile[0]["value"] < profile[1]["value"]  # shifted embodiments mix more among more neighbours
    table = text[text.index("embodiment mixing by neighbourhood size"):]
    for p in profile:
        assert f"│ {p['k']:<2} │ {p['value']:.3f}  │ {p['null']:.3f} │ {p['ratio']:.3f} │" in table, table
        assert p["ratio"] == pytest.approx(p["value"] / p["null"])
    assert rec["scale_profile_notes"] == []
    # without --scales: no such key, and everything else as it was
    plain = tmp_path / "plain.json"
    assert main(["metrics", str(store.path), *FAST, "--out", str(plain)]) == 0
    assert "by neighbourhood size" not in capsys.readouterr().out
    without = json.loads(plain.read_text())
    assert "scale_profile" not in without and "scale_profile_notes" not in without
    del rec["scale_profile"], rec["scale_profile_notes"]
    assert rec == without


@pytest.mark.parametrize("scales, needles", [
    ("0", ["--scales", "'0' is not one"]),
    ("a", ["--scales", "'a' is not one"]),
    ("5,", ["--scales", "'' is not one"]),
    ("5,240", ["--scales: store", "k=240 neighbours need more than 240 rows", "below 240"]),
])
def test_cli_bad_scales_exit_2_in_one_line_and_write_nothing(store, tmp_path, capsys, scales, needles):
    out = tmp_path / "m.json"
    assert_refused(capsys, ["metrics", str(store.path), "--scales", scales, *FAST, "--out", str(out)], *needles)
    assert not out.exists()


def test_cli_max_samples_bounds_the_scales(store, tmp_path, capsys):
    out = tmp_path / "m.json"
    assert_refused(capsys, ["metrics", str(store.path), "--scales", "5,150", "--max-samples", "100", *FAST, "--out",
                            str(out)], "k=150 neighbours", "--max-samples subsample keeps 100", "below 100")
    assert not out.exists()
    assert main(["metrics", str(store.path), "--scales", "5,50", "--max-samples", "100", *FAST, "--out",
                 str(out)]) == 0
    assert "note (scale profile, " in capsys.readouterr().out
    assert "subsample of 100 of 240" in json.loads(out.read_text())["scale_profile_notes"][0]


def test_evaluate_latents_with_scales_and_cached_records_stay_as_they_were(store, tmp_path):
    meta = synthetic_meta(n_episodes=3, frames=12)
    config = MetricsConfig(bootstrap=0, null_repeats=1, permutations=0, families=("mixing",))
    (rec,) = evaluate(Latents(clustered_latents(meta), meta, "emb"), config=config, scales=[3, 10])
    assert [p["k"] for p in rec["scale_profile"]] == [3, 10]
    with pytest.raises(ConfigError, match="layer 'emb': k=144 neighbours need more than 144 rows"):
        evaluate(Latents(clustered_latents(meta), meta, "emb"), config=config, scales=[144])
    first = evaluate(store.path, config=config, cache_dir=tmp_path, scales=[5])
    (cached,) = (tmp_path / "metrics").glob("*.json")
    assert "scale_profile" not in json.loads(cached.read_text())  # the cache key and entry do not change
    again = evaluate(store.path, config=config, cache_dir=tmp_path, scales=[5])
    assert again[0]["scale_profile"] == first[0]["scale_profile"]
    assert "scale_profile" not in evaluate(store.path, config=config, cache_dir=tmp_path)[0]
