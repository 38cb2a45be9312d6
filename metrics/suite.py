"""The alignment-metrics suite on arrays: one kNN graph, subsampling, episode bootstrap, nulls, scopes.

``run_suite(X, labels, config)`` is pure (arrays in, a :class:`SuiteResult` out).
It searches ONE exact FAISS kNN graph at the largest k and hands slices of it to
every kNN metric; runs O(n^2) and model-fitting metrics on a stratified subsample
(embodiment x task x stage) above ``max_samples``; gives every metric whose intervals are
calibrated a 95% interval from replicates over episodes (:mod:`metrics.intervals`; clipped to the
metric's range, :data:`metrics.ranges.BOUNDS`), every
metric a null baseline (embodiment labels shuffled within stage for mixing metrics, stage
labels shuffled within task for conservation metrics, both by (episode, stage) runs); and
reports the same metrics per stage or per task with ``by=`` (values and nulls: per-scope intervals
miss their coverage, :data:`metrics.calibration.NO_SCOPE_INTERVAL`). Everything it had to decide is
said in ``SuiteResult.notes``.

Metrics are entries of :data:`~metrics.spec.REGISTRY`; a family adds itself with
:func:`~metrics.spec.register`. The types (labels, configuration, results) live in
:mod:`metrics.spec` and are importable from here too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from metrics import bootstrap as bs
from metrics.calibration import NO_SCOPE_INTERVAL
from metrics.graph import approximate_note, build_graph
from metrics.intervals import Replicates
from metrics.knn import Metric, Neighbors
from metrics.notes import undefined_note
from metrics.spec import (REGISTRY, Better, By, Context, Family, Kind, Labels, MetricInputError, MetricsConfig,
                          MetricSpec, MetricValue, Null, SuiteResult, check_inputs)
from metrics.subsample import strata_keys, stratified_subsample

__all__ = ["available", "human_metrics", "run_suite"]

log = logging.getLogger(__name__)

NULL_SEED_OFFSET = 7919  # the nulls' shuffles draw from default_rng(config.seed + NULL_SEED_OFFSET)


def _stage_notes(labels: Labels, ctx: Context) -> None:
    for stage in dict.fromkeys(labels.stage.tolist()):
        embs = np.unique(labels.embodiment[labels.stage == stage])
        if len(embs) < 2:
            ctx.note(f"stage '{stage}' is present in embodiment '{embs[0]}' only: it is excluded from "
                     "within-stage mixing, transfer and paired metrics")


# ---------------------------------------------------------------------------- running


def _selected(config: MetricsConfig) -> list[MetricSpec]:
    if config.metrics is not None:
        unknown = [m for m in config.metrics if m not in REGISTRY]
        if unknown:
            raise MetricInputError(f"unknown metric(s) {', '.join(unknown)}; available: {', '.join(REGISTRY)}")
    specs = [s for s in REGISTRY.values()
             if (config.families is None or s.family in config.families)
             and (s.name in config.metrics if config.metrics is not None else s.default)]
    if not specs:
        raise MetricInputError(f"no metric selected (families={config.families}, metrics={config.metrics})")
    return specs


class _States:
    """Prepared states, shared by specs with the same ``prepare`` and label set."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._store: dict[tuple, Any] = {}

    def get(self, spec: MetricSpec, labels: Labels, rows: np.ndarray | None, tag: str) -> Any:
        key = (spec.prepare, tag)
        if key not in self._store:
            self._store[key] = spec.prepare(self.ctx, labels, rows)
        return self._store[key]


def _safe(fn: Callable[[], float], ctx: Context, name: str, scope: str | None = None) -> float:
    try:
        return float(fn())
    except ValueError as exc:
        ctx.note(undefined_note(name, "not computed", str(exc), scope))
        return float("nan")


def null_labels(spec: MetricSpec, labels: Labels, rng: np.random.Generator, cache: dict) -> Labels:
    """Labels shuffled for the spec's null; the run structure is computed once per suite (``cache``)."""
    if spec.null is Null.FRAME:
        frame = labels.frame if labels.frame is not None else np.arange(len(labels))
        return labels.replace(frame=bs.shuffle_within(frame, labels.episode, rng))
    key = ("shuffler", spec.null)
    if key not in cache:
        run_keys = cache["runs"] if "runs" in cache else bs.runs(labels.episode, labels.stage)
        cache[key] = (bs.RunShuffler(labels.embodiment, run_keys, labels.stage) if spec.null is Null.EMBODIMENT
                      else bs.RunShuffler(labels.stage, run_keys, labels.task))
    shuffled = cache[key](rng)
    return labels.replace(embodiment=shuffled) if spec.null is Null.EMBODIMENT else labels.replace(stage=shuffled)


def _tested(spec: MetricSpec, config: MetricsConfig) -> bool:
    """Whether the metric gets a permutation p-value: headline kNN-graph mixing and conservation metrics."""
    return (config.permutations > 0 and spec.headline is not None and spec.kind is Kind.GRAPH
            and spec.family in (Family.MIXING, Family.CONSERVATION))


def _greater(spec: MetricSpec) -> bool:
    """The p-value's alternative: conservation beats shuffled stages; mixing falls short of shuffled embodiments."""
    return (spec.family is Family.CONSERVATION) == (spec.better is Better.HIGHER)


def run_suite(X: np.ndarray, labels: Labels, config: MetricsConfig | None = None, *,
              graph: Neighbors | None = None, progress: bool = False) -> SuiteResult:
    """Compute the selected metrics with intervals, nulls and scopes.

    Parameters
    ----------
    X : (n, d) float32 latents (a memory map is fine)
    labels : row-aligned :class:`Labels`
    config : :class:`MetricsConfig` (defaults if None)
    graph : the kNN graph of ``X`` (self excluded, at least ``config.k`` neighbours,
        ``config.metric``, searched with ``config.index``) when the caller already has
        it, e.g. from a cache shared with layouts; searched here when None
    progress : show a progress bar over metrics (tqdm)

    Returns
    -------
    SuiteResult

    Raises
    ------
    MetricInputError
        One embodiment only, fewer than 4 samples, NaN or constant latents, unknown metric.
    """
    config = config or MetricsConfig()
    labels = Labels(**{f: None if getattr(labels, f) is None else np.asarray(getattr(labels, f))
                       for f in labels.__dataclass_fields__})
    check_inputs(X, labels)
    n = X.shape[0]
    notes: list[str] = []
    specs = _selected(config)
    opt_in = [s.name for s in REGISTRY.values() if not s.default and config.metrics is None
              and (config.families is None or s.family in config.families)]
    if opt_in:
        notes.append(f"not computed by default (slow): {', '.join(opt_in)}; name them in metrics (--metrics) to compute")

    k = config.k
    if k > n - 1:
        k = n - 1
        notes.append(f"only {n} samples: the kNN graph uses k={k} instead of {config.k}")
    X32 = np.ascontiguousarray(X, dtype=np.float32)
    if config.metric is Metric.COSINE:
        zero = int((np.einsum("ij,ij->i", X32, X32) == 0).sum())
        if zero:
            notes.append(f"{zero} latent vectors are all zeros: they have no direction under cosine distance")
    if graph is None:
        graph = build_graph(X32, k, config.metric, config.index)
    else:
        if len(graph) != n or graph.k < k or Metric(graph.metric) is not config.metric:
            raise MetricInputError(f"the given graph ({len(graph)} rows, k={graph.k}, {Metric(graph.metric).value}) "
                                   f"does not fit {n} rows at k={k}, {config.metric.value}; pass graph=None")
        graph = graph.top(k)
    if graph.note:
        notes.append(graph.note)
    elif not config.index.exact:  # a caller's graph that does not say how it was searched
        notes.append(approximate_note(config.index))

    strata = strata_keys(labels.embodiment, labels.task, labels.stage)
    rows = stratified_subsample(strata, config.max_samples, config.seed)
    boot_rows = rows[stratified_subsample(strata[rows], config.bootstrap_samples, config.seed + 1)]
    subsampled = None
    if len(rows) < n:
        subsampled = len(rows)
        notes.append(f"O(n^2) and fitted metrics ran on a stratified subsample of {len(rows)} of {n} samples "
                     "(embodiment x task x stage)")
    ctx = Context(X32, graph, rows, boot_rows, config, notes)
    ctx.cache["runs"] = bs.runs(labels.episode, labels.stage)  # the units every null shuffles
    _stage_notes(labels, ctx)

    scopes_of: dict[str, np.ndarray] = {}
    if config.by is not None:
        column = labels.stage if config.by is By.STAGE else labels.task
        for value in dict.fromkeys(column.tolist()):
            scopes_of[str(value)] = (column == value).astype(np.int64)

    replicas = Replicates(ctx, labels, config, rows)
    if config.bootstrap:
        methods = {replicas.method(kind) for kind in Kind}
        ctx.note(f"95% intervals from {config.bootstrap} replicates over episodes, centred on each estimate and "
                 "clipped to the metric's range: "
                 + "; ".join(sorted(methods)))
    if config.null_repeats:
        ctx.note(f"null baselines average {config.null_repeats} permutations of (episode, stage) runs: embodiment "
                 "labels shuffled within stage (mixing, paired, distribution), stage labels shuffled within task "
                 "(conservation, retrieval); frame order shuffled within episodes (temporal)")
    if config.permutations:
        ctx.note(f"p-values of {', '.join(s.name for s in specs if _tested(s, config))} from "
                 f"{max(config.permutations, config.null_repeats)} permutations (their null averages all of them): "
                 "mixing metrics test 'less mixed than shuffled embodiments', conservation metrics 'stages "
                 "conserved beyond shuffled stages'; p = (1 + #as extreme) / (1 + #permutations)")

    states = _States(ctx)
    ones = np.ones(n, dtype=np.int64)
    results: dict[str, MetricValue] = {}
    replicates: dict[str, tuple[np.ndarray, float]] = {}
    scoped: dict[str, dict[str, MetricValue]] = {s: {} for s in scopes_of}
    from_tqdm = None
    if progress:
        from tqdm.auto import tqdm as from_tqdm
    iterator = from_tqdm(specs, desc="metrics", leave=False) if from_tqdm else specs

    n_stages = len(np.unique(labels.stage))
    uncalibrated: list[str] = []
    unscoped: list[str] = []  # metrics with an overall interval but, per scope, none (NO_SCOPE_INTERVAL)
    for spec in iterator:
        reason = spec.requires(ctx, labels) if spec.requires else None
        if reason is None and spec.family is Family.CONSERVATION and n_stages < 2:
            reason = "the store has a single stage, so there is nothing to conserve"
        if reason:
            ctx.note(undefined_note(spec.name, "nan", reason))
            results[spec.name] = MetricValue(float("nan"))
            for s in scopes_of:
                scoped[s][spec.name] = MetricValue(float("nan"))
            continue
        main_rows = None if spec.kind is Kind.GRAPH else rows
        try:
            state = states.get(spec, labels, main_rows, "main")
        except ValueError as exc:
            ctx.note(undefined_note(spec.name, "not computed", str(exc)))
            results[spec.name] = MetricValue(float("nan"))
            for s in scopes_of:
                scoped[s][spec.name] = MetricValue(float("nan"))
            continue
        value = _safe(lambda: spec.score(ctx, state, labels, ones), ctx, spec.name)

        # interval: replicates over episodes (metrics.intervals: recomputed on subsamples, or reweighted)
        fitted = spec.kind is Kind.FIT
        scope_masks = scopes_of if config.by in spec.scopes and config.all_intervals else {}
        # a metric whose intervals are not calibrated gets none (nor replicates, which comparisons would read)
        why = replicas.uncalibrated(spec) if config.bootstrap else ""
        withheld = bool(why) and not config.all_intervals
        reps, scope_reps, scale = ([], {}, 1.0) if withheld else replicas.of(spec, state, scope_masks)
        ci = bs.centred_interval(np.array(reps), value, config.ci_level, scale, replicas.df, spec.bounds)
        method = replicas.method(spec.kind, spec.rate) if np.isfinite(ci.lo) else ""
        note = f"not calibrated: {why}" if why else ""
        if withheld and config.bootstrap:
            uncalibrated.append(spec.name)
        elif np.isfinite(ci.lo) and scopes_of and config.by in spec.scopes and not fitted and not config.all_intervals:
            unscoped.append(spec.name)

        # null: shuffled labels, prepared again (graph metrics on all rows, others on the bootstrap subsample)
        null_vals, null_scoped = [], {s: [] for s in scopes_of}
        if spec.null is not Null.NONE:
            rng = np.random.default_rng(config.seed + NULL_SEED_OFFSET)
            null_rows = None if spec.kind is Kind.GRAPH else boot_rows
            repeats = max(config.null_repeats, config.permutations) if _tested(spec, config) else config.null_repeats
            for r in range(repeats):
                nl = null_labels(spec, labels, rng, ctx.cache)
                nstates = _States(ctx)
                try:
                    nstate = (spec.permuted(ctx, nl) if spec.permuted is not None and spec.null is not Null.FRAME
                              else nstates.get(spec, nl, null_rows, f"null{r}"))
                except ValueError as exc:
                    ctx.note(undefined_note(spec.name, "not computed", str(exc), "null"))
                    break
                null_vals.append(_safe(lambda: spec.score(ctx, nstate, nl, ones), ctx, spec.name, "null"))
                if not fitted and r < max(config.null_repeats, 1):
                    for s, mask in scopes_of.items():
                        if config.by in spec.scopes:
                            null_scoped[s].append(_safe(lambda: spec.score(ctx, nstate, nl, mask), ctx,
                                                        spec.name, f"null, {s}"))
        null = float(np.nanmean(null_vals)) if null_vals and not np.all(np.isnan(null_vals)) else float("nan")
        p = (bs.permutation_p_value(value, np.array(null_vals), greater=_greater(spec))
             if _tested(spec, config) else float("nan"))
        results[spec.name] = MetricValue(value, ci.lo, ci.hi, null, p, method, note)
        if len(reps):
            replicates[spec.name] = (np.array(reps, dtype=np.float64), scale)

        # scopes: per-sample metrics reweight, fitted metrics refit on the scope's rows; no interval but with
        # all_intervals (the calibration benchmark): per-scope intervals miss their coverage (NO_SCOPE_INTERVAL)
        for s, mask in scopes_of.items():
            if config.by not in spec.scopes:
                scoped[s][spec.name] = MetricValue(float("nan"))
                continue
            v = _safe(lambda: spec.score(ctx, state, labels, mask), ctx, spec.name, f"{config.by.value} {s}")
            if fitted:
                scoped[s][spec.name] = MetricValue(v)
                continue
            sci = bs.centred_interval(np.array(scope_reps.get(s, [])), v, config.ci_level, scale, replicas.df,
                                      spec.bounds)
            vals = null_scoped[s]
            snull = float(np.nanmean(vals)) if vals and not np.all(np.isnan(vals)) else float("nan")
            scoped[s][spec.name] = MetricValue(v, sci.lo, sci.hi, snull)  # the method is said once, overall
    if uncalibrated:
        ctx.note(f"no interval for {', '.join(uncalibrated)}: their intervals miss 0.93-0.97 coverage of the nominal "
                 "95% in benchmarks/bench_calibration.py (each metric's 'interval_note' says why)")
    if unscoped:
        ctx.note(f"no per-{config.by.value} interval for {', '.join(unscoped)}: {NO_SCOPE_INTERVAL[config.by.value]}")
    if scopes_of and any(s.kind is Kind.FIT for s in specs):
        ctx.note(f"per-{config.by.value} values of fitted metrics are refitted on the {config.by.value}'s rows "
                 "without interval or null")
    return SuiteResult(n, results, scoped, config.by, notes, subsampled, k, config, replicates, replicas.design,
                       replicas.df)


def human_metrics(config: MetricsConfig) -> list[str]:
    """Names of the metrics ``config`` selects that compare the human embodiment (``config.human``) with the
    others: those with a ``requires`` check, each of which asks for the human first
    (:mod:`metrics.family_support`)."""
    return [s.name for s in _selected(config) if s.requires is not None]


def available(families: Iterable[Family] | None = None) -> list[str]:
    """Names of registered metrics (of some families)."""
    fams = None if families is None else {Family(f) for f in families}
    return [name for name, s in REGISTRY.items() if fams is None or s.family in fams]


# Families register themselves in REGISTRY on import.
from metrics import families as _families  # noqa: E402,F401
from metrics import families_matched as _families_matched  # noqa: E402,F401
