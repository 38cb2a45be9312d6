"""The suite: one graph, subsampling, episode bootstrap, nulls, scopes, bad input."""

from __future__ import annotations

import numpy as np
import pytest

import metrics.graph as graph_module
from probe import columns as C
from conftest import clustered_latents, synthetic_meta
from metrics.bootstrap import centred_interval, episode_bootstrap_weights, null_embodiment, null_stage
from metrics.subsample import strata_keys, stratified_subsample
from metrics.spec import Kind, Labels, MetricInputError, MetricsConfig, REGISTRY
from metrics.suite import run_suite

FAST = dict(k=20, bootstrap=4, null_repeats=1, bootstrap_samples=200, families=("mixing", "conservation"))


def _labels(meta):
    return Labels(meta["embodiment"].to_numpy(), meta["stage"].to_numpy(), meta["task"].to_numpy(),
                  C.episode_keys(meta))


@pytest.fixture(scope="module")
def small():
    meta = synthetic_meta(n_episodes=4, frames=15)
    return meta, _labels(meta)


def test_mixed_vs_separated_and_null_baselines(small):
    meta, labels = small
    mixed = run_suite(clustered_latents(meta, noise=1.0), labels, MetricsConfig(**FAST))
    apart = run_suite(clustered_latents(meta, shift=40.0, noise=1.0), labels, MetricsConfig(**FAST))
    m, a = mixed.metrics, apart.metrics
    for name in ("ilisi", "kbet", "knn_embodiment_mixing", "silhouette_embodiment", "bras"):
        assert m[name].value > a[name].value + 0.3, name
        assert a[name].value < a[name].null, name  # separated embodiments score below chance
    assert a["embodiment_probe_acc"].value == 1.0 and m["embodiment_probe_acc"].value < 0.8
    # stages are conserved in both: values well above the shuffled-stage null
    for name in ("clisi", "silhouette_stage", "stage_nmi", "stage_ari"):
        assert m[name].value > m[name].null + 0.2, name
    for v in m.values():  # every metric has a finite value, and an interval unless it says why it has none
        assert np.isfinite(v.value)
        assert (np.isfinite(v.ci_lo) and v.ci_lo <= v.ci_hi) or v.interval_note.startswith("not calibrated")


def test_one_graph_searched_once(small, monkeypatch):
    meta, labels = small
    calls = []
    real = graph_module.knn

    def counting(*args, **kwargs):
        calls.append(kwargs.get("k", args[2] if len(args) > 2 else None))
        return real(*args, **kwargs)

    monkeypatch.setattr(graph_module, "knn", counting)  # where the suite's graph is searched
    run_suite(clustered_latents(meta), labels, MetricsConfig(**FAST, by="stage", intervals="reweight"))
    assert calls == [20]
    calls.clear()  # refit intervals: one more graph per replicate, of its episode subsample, never of all rows
    run_suite(clustered_latents(meta), labels, MetricsConfig(**FAST, by="stage"))
    assert calls == [20] * (1 + FAST["bootstrap"])


def test_row_permutation_changes_nothing(small):
    meta, labels = small
    X = clustered_latents(meta, shift=2.0, noise=1.5)
    perm = np.random.default_rng(0).permutation(len(X))
    cfg = MetricsConfig(k=20, bootstrap=0, null_repeats=0, families=("mixing", "conservation", "retrieval"))
    a = run_suite(X, labels, cfg).metrics
    b = run_suite(X[perm], labels.take(perm), cfg).metrics
    for name, spec in REGISTRY.items():
        if name in a and spec.kind is not Kind.FIT:
            assert a[name].value == pytest.approx(b[name].value, abs=1e-6), name


def test_scopes_by_stage_and_task(small):
    meta, labels = small
    X = clustered_latents(meta)
    res = run_suite(X, labels, MetricsConfig(**FAST, by="stage"))
    assert set(res.scopes) == {"reach", "grasp", "lift"}
    assert np.isfinite(res.scopes["grasp"]["ilisi"].value) and np.isnan(res.scopes["grasp"]["stage_nmi"].value)
    out = res.to_dict()
    assert set(out["per_stage"]["lift"]["kbet"]) == {"value", "ci", "null"}
    res = run_suite(X, labels, MetricsConfig(**{**FAST, "families": None}, by="task", metrics=("stage_nmi", "kbet")))
    assert set(res.scopes) == {"pick", "push"}
    assert res.scopes["pick"]["stage_nmi"].value > 0.5
    assert list(res.metrics) == ["kbet", "stage_nmi"]


def test_subsample_is_reported(small):
    meta, labels = small
    res = run_suite(clustered_latents(meta), labels, MetricsConfig(**FAST, max_samples=100))
    assert res.subsampled == 100 and res.to_dict()["subsampled"] == 100
    assert any("stratified subsample of 100 of 240" in n for n in res.notes)


@pytest.mark.parametrize("index, name", [("hnsw", "HNSW"), ("ivf", "IVF-flat")])
def test_approximate_index_agrees_with_exact_and_says_its_recall(small, index, name):
    import re

    meta, labels = small
    X = clustered_latents(meta, shift=1.0, noise=1.0)
    cfg = dict(k=20, bootstrap=0, null_repeats=0, metrics=("ilisi", "kbet", "clisi"))
    exact = run_suite(X, labels, MetricsConfig(**cfg)).metrics
    approx = run_suite(X, labels, MetricsConfig(**cfg, index=index))
    note = next(n for n in approx.notes if name in n)
    recall = float(re.search(r"recall@20 ([0-9.]+) against exact search on 240 sampled rows", note).group(1))
    assert 0.8 <= recall <= 1.0
    for metric in exact:
        assert approx.metrics[metric].value == pytest.approx(exact[metric].value, abs=0.02)


def test_an_approximate_graphs_measured_recall_reaches_the_notes_through_the_graph_cache(tmp_path, monkeypatch):
    """The recall an approximate index measured is part of the graph: cached with it, and noted by every
    suite run on it (report, dashboard and demo hand the suite a cached graph)."""
    import re

    import metrics.graph
    from probe.cache.graphs import shared_graph

    monkeypatch.setattr(metrics.graph, "IVF_NPROBE", 1)  # one of 51 lists: far from exact
    meta = synthetic_meta(n_episodes=40, frames=15)  # 2,400 rows
    X = clustered_latents(meta, noise=3.0)
    built = shared_graph(X, fingerprint="f", layer="l", k=10, index="ivf", cache_dir=tmp_path)
    recall = float(re.search(r"nprobe=1\) index, not exact search: recall@10 ([0-9.]+)", built.note).group(1))
    assert recall < 0.95
    cached = shared_graph(X, fingerprint="f", layer="l", k=10, index="ivf", cache_dir=tmp_path)
    assert cached.note == built.note and cached.indices is not built.indices  # read back from the file
    res = run_suite(X, _labels(meta), MetricsConfig(k=10, index="ivf", bootstrap=0, null_repeats=0,
                                                    metrics=("ilisi",)), graph=cached)
    assert built.note in res.notes


def test_graph_recall_counts_shared_neighbours():
    from metrics.knn import Metric, Neighbors, knn
    from metrics.graph import graph_recall

    X = np.random.default_rng(0).normal(size=(200, 8)).astype(np.float32)
    exact = knn(X, None, 5, "l2")
    assert graph_recall(X, exact, Metric.L2) == (200, 1.0)
    half = exact.indices.copy()
    half[:, 2:] = (half[:, 2:] + 1) % 200  # 2 of 5 kept (shifted ids are almost never true neighbours)
    rows, recall = graph_recall(X, Neighbors(half, exact.distances, Metric.L2), Metric.L2)
    assert rows == 200 and 0.4 <= recall < 0.6


# ------------------------------------------------------------------ bad input


def test_one_embodiment_only(small):
    meta, labels = small
    robot = (meta["embodiment"] == "robot").to_numpy()
    with pytest.raises(MetricInputError, match="only one is present \\(robot\\)"):
        run_suite(clustered_latents(meta)[robot], labels.take(robot), MetricsConfig(**FAST))


def test_stage_in_one_embodiment_is_noted(small):
    meta, labels = small
    stage = labels.stage.copy()
    stage[(labels.embodiment == "robot") & (stage == "lift")] = "robot_only"
    res = run_suite(clustered_latents(meta), labels.replace(stage=stage), MetricsConfig(**FAST))
    assert any("stage 'robot_only' is present in embodiment 'robot' only" in n for n in res.notes)
    assert np.isfinite(res.metrics["stage_transfer_acc_robot_to_human"].value)


def test_fewer_samples_than_k_lowers_k(small):
    meta, labels = small
    rows = np.r_[0:8, 120:128]
    res = run_suite(clustered_latents(meta)[rows], labels.take(rows),
                    MetricsConfig(k=90, bootstrap=0, null_repeats=0, metrics=("ilisi", "kbet")))
    assert res.k == 15 and any("k=15 instead of 90" in n for n in res.notes)
    with pytest.raises(MetricInputError, match="at least 4 samples"):
        run_suite(clustered_latents(meta)[[0, 120, 1]], labels.take([0, 120, 1]), MetricsConfig(**FAST))


def test_constant_and_nan_latents(small):
    meta, labels = small
    X = np.ones((len(meta), 8), dtype=np.float32)
    with pytest.raises(MetricInputError, match="constant latents"):
        run_suite(X, labels, MetricsConfig(**FAST))
    X = clustered_latents(meta)
    X[3, 2] = np.nan
    with pytest.raises(MetricInputError, match="NaN or Inf"):
        run_suite(X, labels, MetricsConfig(**FAST))


def test_single_stage_gives_nan_conservation_with_note(small):
    meta, labels = small
    one = labels.replace(stage=np.array(["all"] * len(labels)))
    res = run_suite(clustered_latents(meta), one, MetricsConfig(**FAST))
    for name in ("clisi", "silhouette_stage", "stage_nmi", "stage_ari", "stage_transfer_acc_robot_to_human"):
        assert np.isnan(res.metrics[name].value)
    assert any("single stage" in n for n in res.notes)
    assert np.isfinite(res.metrics["ilisi"].value)


def test_bad_config_and_unknown_metric(small):
    meta, labels = small
    with pytest.raises(MetricInputError, match="bootstrap must be >= 0"):
        MetricsConfig(bootstrap=-1)
    with pytest.raises(MetricInputError, match=r"unknown metric\(s\) ilsi, kbt; available: ilisi, "):
        run_suite(clustered_latents(meta), labels, MetricsConfig(metrics=("ilsi", "kbt")))  # a list, not a repr
    with pytest.raises(MetricInputError, match=r"unknown metric family 'mixng' \(did you mean mixing\?\); "
                                               r"families: mixing, conservation, paired"):
        MetricsConfig(families=("mixng",))
    assert MetricsConfig(families=("mixing", "retrieval")).families[1].value == "retrieval"


# ------------------------------------------------------------------ building blocks


def test_stratified_subsample_keeps_shares_and_small_strata():
    strata = np.array([0] * 900 + [1] * 90 + [2] * 10)
    rows = stratified_subsample(strata, 100, seed=0)
    assert len(rows) == 100 and np.all(np.diff(rows) > 0)
    assert np.bincount(strata[rows]).tolist() == [90, 9, 1]
    assert len(stratified_subsample(strata, 5000)) == 1000
    keys = strata_keys(np.array(["a", "a", "b"]), np.array([1, 2, 1]))
    assert len(np.unique(keys)) == 3


def test_episode_bootstrap_resamples_whole_episodes_within_embodiment():
    episodes = np.repeat(np.arange(6), 5)
    emb = np.where(episodes < 2, "human", "robot")
    for w in episode_bootstrap_weights(episodes, emb, 20, seed=1):
        per_episode = w.reshape(6, 5)
        assert (per_episode == per_episode[:, :1]).all()  # frames of an episode move together
        assert per_episode[:2, 0].sum() == 2 and per_episode[2:, 0].sum() == 4
    ci = centred_interval(np.arange(101.0), 50.0)  # estimate +- t(100) * sd
    assert ci == pytest.approx((50.0 - 1.984 * np.std(np.arange(101.0), ddof=1),
                                50.0 + 1.984 * np.std(np.arange(101.0), ddof=1)), rel=1e-3)


def test_nulls_permute_runs_and_keep_proportions():
    rng = np.random.default_rng(0)
    episodes = np.repeat(np.arange(20), 9)
    stage = np.tile(np.repeat(["a", "b", "c"], 3), 20)
    emb = np.where(episodes < 8, "human", "robot")
    task = np.where(episodes % 2 == 0, "pick", "push")
    shuffled = null_embodiment(emb, stage, episodes, rng)
    for s in "abc":
        assert (shuffled[stage == s] == "human").sum() == (emb[stage == s] == "human").sum()
    runs = shuffled.reshape(20, 3, 3)
    assert (runs == runs[:, :, :1]).all()  # one label per (episode, stage) run
    assert not np.array_equal(shuffled, emb)
    st = null_stage(stage, task, episodes, rng)
    assert sorted(st.tolist()) == sorted(stage.tolist()) and not np.array_equal(st, stage)


def test_paired_distribution_retrieval_temporal_families(small):
    meta, labels = small
    labels = labels.replace(progress=meta["progress"].to_numpy(), frame=meta["frame"].to_numpy(),
                            stage_progress=meta["stage_progress"].to_numpy())
    cfg = MetricsConfig(**{**FAST, "bootstrap": 2, "families": ("paired", "distribution", "retrieval", "temporal")})
    mixed = run_suite(clustered_latents(meta, noise=1.0), labels, cfg).metrics
    apart = run_suite(clustered_latents(meta, shift=40.0, noise=1.0), labels, cfg).metrics
    assert {s.family.value for s in REGISTRY.values() if s.name in mixed} == {"paired", "distribution", "retrieval",
                                                                              "temporal"}
    for name in ("mmd_rbf", "frechet_distance", "sliced_wasserstein"):
        assert apart[name].value > 5 * mixed[name].value, name
        assert mixed[name].value < apart[name].null * 5, name
    assert mixed["cka_linear"].value > 0.9
    assert mixed["retrieval_precision_at_1_robot_to_human"].value > mixed["retrieval_precision_at_1_robot_to_human"].null
    assert mixed["retrieval_map_at_r_human_to_robot"].value > 0.8
    assert mixed["kendall_tau"].value > mixed["kendall_tau"].null + 0.3  # frame order shuffled: tau near 0
