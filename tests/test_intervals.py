"""Intervals describe the estimate printed beside them; permutation p-values test against the null."""

from __future__ import annotations

import numpy as np
import pytest

from metrics import bootstrap as bs
from metrics.spec import REGISTRY, MetricsConfig
from metrics.suite import run_suite
from probe.latents import Latents
from probe.measure.suite import labels_of
from tests.conftest import clustered_latents, synthetic_meta


def _structured(kind: str, seed: int = 0):
    """Latents of two embodiments: aligned, offset, rotated, or random (no shared structure)."""
    meta = synthetic_meta(n_episodes=6, frames=20)
    X = clustered_latents(meta, dim=16, seed=seed)
    robot = (meta["embodiment"] == "robot").to_numpy()
    rng = np.random.default_rng(seed + 100)
    if kind == "offset":
        X[robot] += 3.0
    elif kind == "rotated":
        q, _ = np.linalg.qr(rng.normal(size=(16, 16)))
        X[robot] = X[robot] @ q.astype(np.float32)
    elif kind == "random":
        X[robot] = rng.normal(size=(int(robot.sum()), 16)).astype(np.float32)
    return Latents(X, meta, kind)


@pytest.mark.parametrize("kind", ["aligned", "offset", "rotated", "random"])
def test_no_estimate_lies_outside_its_own_interval(kind):
    lat = _structured(kind)
    res = run_suite(lat.X, labels_of(lat), MetricsConfig(k=30, bootstrap=12, null_repeats=1, permutations=19,
                                                         bootstrap_samples=300))
    with_ci = 0
    for name, v in res.metrics.items():
        lo, hi = REGISTRY[name].bounds  # the declared range is right (up to rounding: LISI of 1.0000000006)
        assert np.isnan(v.value) or lo - 1e-6 <= v.value <= hi + 1e-6, (name, v.value, (lo, hi))
        if np.isfinite(v.ci_lo):
            with_ci += 1
            assert lo - 1e-6 <= v.ci_lo <= v.value <= v.ci_hi <= hi + 1e-6, (name, v)
            assert v.interval and not v.interval_note, name
        elif REGISTRY[name].uncalibrated:  # no interval, and the record says why
            assert v.to_dict()["ci"] is None and v.interval_note.startswith("not calibrated: coverage"), name
            assert name not in res.replicates  # nor replicates: comparisons cannot read an uncalibrated spread
    assert with_ci >= 3
    for scope in res.scopes.values():
        for name, v in scope.items():
            if np.isfinite(v.ci_lo):
                assert v.ci_lo <= v.value <= v.ci_hi, (name, v)


def test_every_metric_declares_its_range():
    from metrics.ranges import BOUNDS

    assert set(BOUNDS) == set(REGISTRY)
    for name, spec in REGISTRY.items():
        assert spec.bounds == BOUNDS[name] and spec.bounds[0] < spec.bounds[1], name
    assert REGISTRY["retrieval_precision_at_1_human_to_robot"].bounds == (0.0, 1.0)
    assert REGISTRY["procrustes_angular"].bounds == (0.0, np.pi / 2)
    assert REGISTRY["knn_embodiment_mixing"].bounds == (0.0, np.inf)


def test_intervals_are_clipped_to_the_metrics_range():
    reps = np.linspace(0.8, 1.0, 30)
    free, clipped = bs.centred_interval(reps, 0.97, 0.95), bs.centred_interval(reps, 0.97, 0.95, bounds=(0.0, 1.0))
    assert free.hi > 1.0 and clipped.hi == 1.0 and clipped.lo == free.lo
    low = bs.centred_interval(reps, 0.02, 0.95, bounds=(0.0, 1.0))
    assert low.lo == 0.0 and low.hi == pytest.approx(0.02 + (free.hi - 0.97))
    # an estimate a rounding error past its range stays inside its interval
    over = bs.centred_interval(reps, 1.0 + 1e-12, 0.95, bounds=(0.0, 1.0))
    assert over.lo < 1.0 + 1e-12 <= over.hi
    # in a suite run: P@1 near 0, where estimate - t x sd would fall below 0 (overall and, with all_intervals,
    # per stage), stays in [0, 1] and still contains the estimate
    from scipy.stats import t

    lat = _structured("random")
    name = "retrieval_precision_at_1_human_to_robot"
    res = run_suite(lat.X, labels_of(lat), MetricsConfig(k=30, bootstrap=8, null_repeats=0, permutations=0,
                                                         metrics=(name,), by="stage", all_intervals=True))
    v = res.metrics[name]
    reps, scale = res.replicates[name]
    half = t.ppf(0.975, bs.interval_df(len(reps), res.df)) * scale * np.std(reps, ddof=1)
    assert v.value - half < 0.0 and v.ci_lo == 0.0 <= v.value <= v.ci_hi == pytest.approx(v.value + half)
    assert "clipped to the metric's range" in v.interval
    scoped = [scope[name] for scope in res.scopes.values()]
    assert all(np.isfinite(sv.ci_lo) and 0.0 <= sv.ci_lo <= sv.value <= sv.ci_hi <= 1.0 for sv in scoped)
    assert any(sv.ci_lo == 0.0 < sv.ci_hi for sv in scoped)


def test_per_stage_intervals_are_withheld_and_the_notes_say_why():
    """Per-stage coverage misses 0.93-0.97 (benchmarks/bench_calibration.py --scopes): values and nulls only."""
    from metrics.calibration import NO_SCOPE_INTERVAL

    lat = _structured("offset")
    names = ("retrieval_precision_at_1_human_to_robot", "retrieval_map_at_r_human_to_robot", "ilisi")
    for by in ("stage", "task"):
        res = run_suite(lat.X, labels_of(lat), MetricsConfig(k=30, bootstrap=8, null_repeats=1, permutations=0,
                                                             metrics=names, by=by))
        assert all(np.isfinite(res.metrics[n].ci_lo) for n in names[:2])
        for scope in res.to_dict()[f"per_{by}"].values():
            for name in names:
                assert scope[name]["ci"] is None and scope[name]["value"] is not None, (by, name)
                assert scope[name]["null"] is not None and set(scope[name]) == {"value", "ci", "null"}
        assert f"no per-{by} interval for {', '.join(names[:2])}: {NO_SCOPE_INTERVAL[by]}" in res.notes
    # overall only: nothing to say
    res = run_suite(lat.X, labels_of(lat), MetricsConfig(k=30, bootstrap=8, null_repeats=0, permutations=0,
                                                         metrics=names))
    assert not any(n.startswith("no per-") for n in res.notes)


def test_uncalibrated_metrics_report_no_interval_and_say_why():
    from metrics.calibration import NO_INTERVAL

    lat = _structured("aligned")
    names = ("ilisi", "kbet", "retrieval_map_at_r_human_to_robot", "procrustes_angular")
    cfg = dict(k=30, bootstrap=8, null_repeats=0, permutations=0, metrics=names, by="stage")
    res = run_suite(lat.X, labels_of(lat), MetricsConfig(**cfg))
    # one declaration: the registry's specs carry NO_INTERVAL's reasons
    assert {n for n, s in REGISTRY.items() if s.uncalibrated} == set(NO_INTERVAL)
    for name in ("ilisi", "kbet"):
        d = res.metrics[name].to_dict()
        assert d["ci"] is None and "interval" not in d and d["interval_note"] == f"not calibrated: {NO_INTERVAL[name]}"
        assert all(np.isnan(scope[name].ci_lo) for scope in res.scopes.values())
    for name in ("retrieval_map_at_r_human_to_robot", "procrustes_angular"):
        d = res.metrics[name].to_dict()
        assert d["ci"] is not None and "interval_note" not in d and "degrees of freedom" in d["interval"]
    assert set(res.replicates) == {"retrieval_map_at_r_human_to_robot", "procrustes_angular"}
    assert any(n.startswith("no interval for ilisi, kbet:") for n in res.notes)
    assert res.to_dict()["replicates"]["df"] == res.df == len(np.unique(lat.meta["episode"])) - 4  # 2 emb x 2 tasks
    # the calibration benchmark measures them all (all_intervals), still saying they are not calibrated
    every = run_suite(lat.X, labels_of(lat), MetricsConfig(**cfg, all_intervals=True)).metrics["ilisi"]
    assert np.isfinite(every.ci_lo) and every.interval_note
    # no replicates at all (--bootstrap 0): nothing to say about calibration
    bare = run_suite(lat.X, labels_of(lat), MetricsConfig(**dict(cfg, bootstrap=0))).metrics["ilisi"]
    assert bare.to_dict() == {"value": bare.value, "ci": None, "null": None}


def test_reweight_mode_gives_no_interval_to_reweighted_metrics():
    """Reweighting per-sample values on the fixed graph under-covers: in that mode those metrics say so instead."""
    lat = _structured("offset")
    res = run_suite(lat.X, labels_of(lat), MetricsConfig(k=30, bootstrap=8, null_repeats=0, permutations=0,
                                                         intervals="reweight", bootstrap_samples=300))
    for name, v in res.metrics.items():
        if REGISTRY[name].kind.value != "fit" and np.isfinite(v.value):
            assert np.isnan(v.ci_lo) and v.interval_note.startswith("not calibrated"), name
            if not REGISTRY[name].uncalibrated:
                assert "reweighted on the fixed kNN graph" in v.interval_note, name


def test_permutation_p_values_separate_aligned_from_offset():
    cfg = MetricsConfig(k=30, bootstrap=0, null_repeats=1, permutations=49, metrics=("ilisi", "clisi", "kbet"))
    aligned, offset = _structured("aligned"), _structured("offset")
    pa = run_suite(aligned.X, labels_of(aligned), cfg).metrics
    po = run_suite(offset.X, labels_of(offset), cfg).metrics
    smallest = 1 / 50
    # offset embodiments are less mixed than every shuffle; aligned ones cannot be told from shuffles
    assert po["ilisi"].p == pytest.approx(smallest) and pa["ilisi"].p > 0.05
    # stages are conserved in both, beyond every shuffle of stages
    assert pa["clisi"].p == pytest.approx(smallest) and po["clisi"].p == pytest.approx(smallest)
    assert "p" in po["ilisi"].to_dict() and "p" not in run_suite(
        offset.X, labels_of(offset), MetricsConfig(k=30, bootstrap=0, null_repeats=1, permutations=0,
                                                   metrics=("ilisi",))).metrics["ilisi"].to_dict()


def test_permutation_p_value_counts_the_observed_value():
    null = np.array([0.1, 0.2, 0.3, 0.4])
    assert bs.permutation_p_value(0.05, null, greater=False) == pytest.approx(1 / 5)
    assert bs.permutation_p_value(0.05, null, greater=True) == pytest.approx(5 / 5)
    assert bs.permutation_p_value(0.35, null, greater=True) == pytest.approx(2 / 5)
    assert np.isnan(bs.permutation_p_value(np.nan, null, greater=True))


def test_subsample_weights_keep_whole_episodes_within_strata_without_replacement():
    episodes = np.repeat(np.arange(12), 5)
    strata = np.repeat(np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 2, 2]), 5)
    weights, scale = bs.episode_subsample_weights(episodes, strata, 20, 0.5, seed=3)
    assert scale == pytest.approx(1.0)
    for w in weights:
        assert set(np.unique(w)) <= {0, 1}
        per_episode = w.reshape(12, 5)
        assert (per_episode == per_episode[:, :1]).all()  # whole episodes
        kept = per_episode[:, 0]
        assert kept[:4].sum() == 2 and kept[4:10].sum() == 3 and kept[10:].sum() == 1
    quarter, scale_q = bs.episode_subsample_weights(episodes, np.zeros(60), 5, 0.25, seed=0)
    assert all(w.reshape(12, 5)[:, 0].sum() == 3 for w in quarter)
    assert scale_q == pytest.approx(np.sqrt(0.25 / 0.75))


def test_centred_interval_contains_a_biased_estimate_with_the_replicates_spread():
    from scipy.stats import t

    reps = np.linspace(10.0, 12.0, 101)  # replicates far above the estimate (a statistic biased on fewer rows)
    ci = bs.centred_interval(reps, 1.0, 0.95, scale=0.5)
    assert ci.lo < 1.0 < ci.hi and (ci.lo + ci.hi) / 2 == pytest.approx(1.0)
    assert ci.hi - ci.lo == pytest.approx(2 * t.ppf(0.975, 100) * 0.5 * np.std(reps, ddof=1))
    # the design's degrees of freedom (episodes - strata) and the replicates' combine: 1 / (1/28 + 1/29)
    narrow, wide = bs.centred_interval(reps, 1.0, 0.95, df=1000), bs.centred_interval(reps, 1.0, 0.95, df=5)
    assert narrow.hi - narrow.lo < wide.hi - wide.lo
    assert bs.interval_df(30, 28) == pytest.approx(1 / (1 / 28 + 1 / 29)) and bs.interval_df(30) == 29
    assert np.isnan(bs.centred_interval(np.array([np.nan, 1.0]), 1.0).lo)


def test_design_df_counts_episodes_minus_strata():
    episodes = np.repeat(np.arange(12), 5)
    strata = np.repeat(np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 2, 2]), 5)
    assert bs.design_df(episodes, strata) == 12 - 3
    assert bs.design_df(np.zeros(4), np.zeros(4)) == 1  # never below 1


def test_standard_error_interval_covers_a_normal_mean_at_its_level():
    """With replicates of the estimate's own spread (an idealised replication), the interval covers the
    target at about its level; the 2.5% / 97.5% quantiles of 30 replicates would cover about 89%."""
    rng = np.random.default_rng(0)
    hits = pct_hits = 0
    trials = 4000
    for _ in range(trials):
        estimate = rng.normal()
        reps = rng.normal(size=30)  # independent draws of the estimate's distribution around its own value
        ci = bs.centred_interval(reps, estimate, 0.95)
        hits += ci.lo <= 0.0 <= ci.hi
        lo, mid, hi = np.percentile(reps, [2.5, 50, 97.5])
        pct_hits += estimate + lo - mid <= 0.0 <= estimate + hi - mid
    assert 0.94 <= hits / trials <= 0.96
    assert pct_hits / trials < 0.92


def test_permutations_from_the_run_graph_equal_the_metrics_own_prepare():
    """The fast path behind 99-permutation p-values gives the states the metrics' prepare would."""
    from metrics.spec import REGISTRY, Context
    from metrics.graph import build_graph
    from metrics.suite import null_labels

    lat = _structured("offset")
    labels = labels_of(lat)
    config = MetricsConfig(k=30)
    graph = build_graph(lat.X, 30, config.metric, config.index)
    ctx = Context(lat.X, graph, np.arange(len(lat)), np.arange(len(lat)), config, [])
    ctx.cache["runs"] = bs.runs(labels.episode, labels.stage)
    rng = np.random.default_rng(5)
    ones = np.ones(len(lat), dtype=np.int64)
    for _ in range(3):
        for name in ("ilisi", "kbet", "knn_embodiment_mixing", "clisi"):
            spec = REGISTRY[name]
            shuffled = null_labels(spec, labels, rng, ctx.cache)
            fast = spec.score(ctx, spec.permuted(ctx, shuffled), shuffled, ones)
            slow = spec.score(ctx, spec.prepare(ctx, shuffled, None), shuffled, ones)
            assert fast == pytest.approx(slow, abs=1e-6), name


def test_metrics_help_names_every_metric_without_interval():
    """`probe metrics --help` lists the metrics that report no interval, as metrics.families declares them."""
    from metrics.calibration import NO_INTERVAL
    from probe.cli.metrics import NO_INTERVAL_HELP

    assert set(NO_INTERVAL_HELP.split(", ")) == set(NO_INTERVAL)


@pytest.mark.parametrize("beta", [0.5, 0.75, 1.0])
def test_rate_exponent_recovers_the_rate_of_subsample_spreads(beta):
    # subsamples of fraction f spread around the full-sample value with variance c n^-2b (f^-2b - 1)
    rng = np.random.default_rng(3)
    n, c = 400, 2.0

    def spread(f: float) -> float:
        return float(np.std(rng.normal(scale=np.sqrt(c * n ** (-2 * beta) * (f ** (-2 * beta) - 1)), size=20_000),
                            ddof=1))

    assert bs.rate_exponent(spread(0.25), spread(0.5), 0.25, 0.5) == pytest.approx(beta, abs=0.05)
    # beyond the range it is clamped: a spread that grows too little (or too much) at the smaller fraction
    assert bs.rate_exponent(1.0, 1.0, 0.25, 0.5) == 0.5
    assert bs.rate_exponent(10.0, 1.0, 0.25, 0.5) == 1.0
    assert np.isnan(bs.rate_exponent(1.0, 0.0, 0.25, 0.5))


def test_rate_scale_is_the_root_n_finite_population_scale_at_one_half():
    for f in (0.1, 0.25, 0.5):
        assert bs.rate_scale(f, 0.5) == pytest.approx(np.sqrt(f / (1 - f)))
    assert bs.rate_scale(0.5, 1.0) == pytest.approx(np.sqrt(1 / 3))  # a 1/n statistic: half-samples overstate it
    assert bs.rate_scale(0.5, 1.0) < bs.rate_scale(0.5, 0.75) < bs.rate_scale(0.5, 0.5)


def test_adaptive_rate_scales_the_stored_replicates_to_the_interval():
    import dataclasses

    lat = _structured("rotated")
    labels = labels_of(lat)
    config = MetricsConfig(k=30, bootstrap=12, null_repeats=0, permutations=0, all_intervals=True,
                           metrics=("knn_embodiment_mixing",))
    base = run_suite(lat.X, labels, config)
    spec = REGISTRY["knn_embodiment_mixing"]
    try:
        REGISTRY[spec.name] = dataclasses.replace(spec, rate="adaptive")
        res = run_suite(lat.X, labels, config)
    finally:
        REGISTRY[spec.name] = spec
    reps, scale = res.replicates[spec.name]
    reps0, scale0 = base.replicates[spec.name]
    np.testing.assert_array_equal(reps, reps0)  # the same replicates at f, rescaled at the estimated rate
    assert bs.rate_scale(0.5, 1.0) - 1e-9 <= scale <= scale0 + 1e-9
    v = res.metrics[spec.name]
    ci = bs.centred_interval(reps, v.value, 0.95, scale, res.df, spec.bounds)
    assert (v.ci_lo, v.ci_hi) == pytest.approx((ci.lo, ci.hi))  # the stored scale is the interval's
    assert v.ci_lo <= v.value <= v.ci_hi and "estimated from the spread" in v.interval


_FRACTION_CFG = dict(k=30, bootstrap=12, null_repeats=0, permutations=0, all_intervals=True,
                     metrics=("knn_embodiment_mixing", "ilisi"))


def test_interval_fraction_is_validated_and_sets_the_share_each_replicate_keeps():
    from metrics.intervals import Replicates
    from metrics.spec import MetricInputError

    for bad in (0, 1, 1.5, -0.2, float("nan"), "0.8", True):
        with pytest.raises(MetricInputError, match="interval_fraction must be a number with 0 < f < 1"):
            MetricsConfig(interval_fraction=bad)
    with pytest.raises(MetricInputError, match="intervals='refit' only"):
        MetricsConfig(interval_fraction=0.8, intervals="reweight")
    lat = _structured("rotated")  # 6 episodes of 20 frames per embodiment x task
    labels = labels_of(lat)
    rows = np.arange(len(labels))
    for f, kept in ((0.9, 5), (0.7, 4), (0.2, 1)):  # round(f x 6) episodes per cell, at least one dropped
        rep = Replicates(None, labels, MetricsConfig(interval_fraction=f, **_FRACTION_CFG), rows)
        assert len(rep.weights) == 12 and rep.fraction == f
        for w in rep.weights:
            per_episode = w.reshape(-1, 20)[:, 0]  # whole episodes: 24 of them, 6 per cell
            assert (w.reshape(-1, 20) == per_episode[:, None]).all()
            assert (per_episode.reshape(4, 6).sum(axis=1) == kept).all()
        assert rep.kept / len(labels) == pytest.approx(kept / 6)
    res = run_suite(lat.X, labels, MetricsConfig(interval_fraction=0.9, **_FRACTION_CFG))
    base = run_suite(lat.X, labels, MetricsConfig(**_FRACTION_CFG))
    reps, scale = res.replicates["knn_embodiment_mixing"]
    assert scale == pytest.approx(np.sqrt(5.0))  # sqrt(f' / (1 - f')) at the share kept, f' = 5/6: no 0.5 cap
    assert base.replicates["knn_embodiment_mixing"][1] == pytest.approx(1.0)
    assert res.design != base.design  # other episodes drawn: not paired with a default run
    v = res.metrics["knn_embodiment_mixing"]
    assert "interval_fraction 0.9: 83.3% of rows" in v.interval and v.ci_lo <= v.value <= v.ci_hi


def test_default_interval_fraction_leaves_results_unchanged():
    from metrics.subsample import strata_keys

    lat = _structured("offset")
    labels = labels_of(lat)
    base = run_suite(lat.X, labels, MetricsConfig(**_FRACTION_CFG))
    none = run_suite(lat.X, labels, MetricsConfig(interval_fraction=None, **_FRACTION_CFG))
    half = run_suite(lat.X, labels, MetricsConfig(interval_fraction=0.5, **_FRACTION_CFG))  # the default's here
    cells = strata_keys(labels.embodiment, labels.task)
    key = bs.design_key(labels.episode, cells, 0, 12, 0.5, len(labels)) + "refit"  # fraction min(0.5, 4000 / n)
    assert base.design == none.design == half.design == key
    assert base.to_dict() == none.to_dict()
    for name in _FRACTION_CFG["metrics"]:
        for other in (none, half):
            np.testing.assert_array_equal(other.replicates[name][0], base.replicates[name][0])
            assert other.replicates[name][1] == base.replicates[name][1]
            assert (other.metrics[name].ci_lo, other.metrics[name].ci_hi) == (base.metrics[name].ci_lo,
                                                                              base.metrics[name].ci_hi)
