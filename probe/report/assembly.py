"""Assembling a report: :func:`collect` computes everything the report shows into :class:`ReportData`.

Stores are opened and checked, metrics computed per checkpoint and layer, layouts
projected (warm-started along each series), retrieval examples and coverage gaps
picked and the ``--fail-under`` gates checked, all before anything is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from probe import figures as F
from probe.errors import ConfigError
from probe.progress import track
from probe.cache.directory import default_cache_dir
from probe.projection.layout import Layout
from probe.projection.project import project
from probe.store.series import (Checkpoint, default_layer, describe, order_checkpoints, resolve_layers,
                                unique_labels)
from probe.report.config import ReportConfig
from probe.report.examples import coverage_gaps, retrieval_examples
from probe.report.gates import (baseline_record, check_gate_ranges, check_interval_gates, fail_under_checks,
                                load_baseline, max_drop_checks)
from probe.measure.compare import compare_records
from probe.measure.selection import check_stores
from probe.measure.suite import (NOT_AVAILABLE, check_fail_under, compute_metrics, default_eval_config,
                                 known_metric_names)
from probe.store.media import check_data_roots
from probe.store.store import open_store


def _headline_order() -> tuple[str, ...]:
    """The headline metrics in headline order (:func:`metrics.spec.headline_metrics`)."""
    from metrics import suite  # noqa: F401  (importing the suite registers every metric)
    from metrics.spec import headline_metrics

    return headline_metrics()


@dataclass
class ReportData:
    """Everything the report shows, computed before anything is written."""

    checkpoints: list[Checkpoint]
    layers: list[str]
    headline: str
    records: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # (store label, layer) -> record
    layouts: dict[tuple[str, str], Layout] = field(default_factory=dict)
    examples: list[F.RetrievalExample] = field(default_factory=list)
    coverage: pd.DataFrame | None = None
    coverage_summary: dict[str, Any] | None = None
    coverage_notes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    metrics_available: bool = False
    failures: list[dict[str, Any]] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)
    comparisons: list[dict[str, Any]] = field(default_factory=list)  # consecutive checkpoints, headline layer
    embodiments: tuple[str, ...] | None = None  # the embodiments the metrics measure (--embodiments), None: all
    detail: Checkpoint | None = None  # measured at every layer, with retrieval examples and coverage (--detail)
    intervals: dict[str, Any] = field(default_factory=dict)  # how the metrics' 95% intervals were made

    @property
    def detailed(self) -> Checkpoint:
        """The checkpoint the per-layer sections, retrieval examples and coverage gaps describe (``--detail``;
        default: the last one)."""
        return self.detail if self.detail is not None else self.checkpoints[-1]

    def record(self, cp: Checkpoint, layer: str) -> dict[str, Any] | None:
        return self.records.get((cp.label, layer))

    def metric_names(self) -> list[str]:
        """Every metric the records hold: the headline metrics in headline order, then the others sorted."""
        headline = self.headline_metrics()
        seen = {n for r in self.records.values() for n in r.get("metrics", {})}
        return headline + sorted(seen - set(headline))

    def headline_metrics(self) -> list[str]:
        """The headline metrics the records hold, in headline order."""
        seen = {n for r in self.records.values() for n in r.get("metrics", {})}
        return [n for n in _headline_order() if n in seen] if seen else []


def collect(store_paths: Sequence[str | Path], config: ReportConfig = ReportConfig(), *,
            progress: bool = False) -> ReportData:
    """Open the stores and compute metrics, layouts, retrieval examples, coverage and threshold checks."""
    if not store_paths:
        raise ConfigError("a report needs at least one store")
    check_fail_under(config.fail_under)
    check_fail_under(config.max_drop, "--max-drop")
    check_gate_ranges(config.fail_under, config.max_drop)
    check_interval_gates(config.fail_under, config.gate, config.max_drop)
    baseline = load_baseline(config.baseline) if config.baseline is not None else None
    stores = [open_store(p) for p in store_paths]
    check_data_roots(dict(config.data_roots), stores)
    chosen = None if config.embodiments is None else check_stores(config.embodiments, stores, config.eval_config)
    layers, notes = resolve_layers(stores, config.layers)
    headline = config.headline_layer
    if headline is None:  # the one default-layer rule, said in the report's notes
        headline, note = default_layer(layers, whose="the selected layers'", option="--headline-layer",
                                       what="headline layer")
        notes = notes + ([note] if note else [])
    if headline not in layers:
        raise ConfigError(f"headline layer '{headline}' is not among the selected layers: {', '.join(layers)}")
    if baseline is not None:
        baseline_record(baseline, headline)  # a baseline without this layer fails before any work
    cps = unique_labels(order_checkpoints([describe(s) for s in stores]))
    data = ReportData(cps, layers, headline, notes=notes, embodiments=chosen,
                      detail=detail_checkpoint(cps, config.detail))
    detail = data.detailed
    if chosen is not None:
        data.notes.append(f"metrics measure embodiments {', '.join(chosen)} only (--embodiments); layouts, retrieval "
                          "examples and coverage show every embodiment")
    dataset_sets = {cp.datasets for cp in cps}
    if len(dataset_sets) > 1:
        data.notes.append("the stores come from DIFFERENT datasets, so differences between them mix model changes "
                          "with data changes: " + "; ".join(f"{cp.label}: {', '.join(cp.datasets)}" for cp in cps))
    fps = [cp.store.fingerprint for cp in cps]
    if len(set(fps)) < len(fps):
        data.notes.append("some stores are identical copies (same fingerprint)")

    data.metrics_available = bool(known_metric_names())
    if not data.metrics_available:
        data.notes.append(NOT_AVAILABLE)
    cache = Path(config.cache_dir) if config.cache_dir is not None else default_cache_dir()
    eval_config = config.eval_config
    if data.metrics_available:
        eval_config = eval_config if eval_config is not None else default_eval_config()
        data.intervals = interval_settings(eval_config)
    # every checkpoint at the headline layer (metric-vs-step curves), every layer of the detailed one (vs-layer curves)
    for cp in track(cps, desc="metrics", enabled=progress and data.metrics_available):
        wanted = layers if cp is detail else [headline]
        for rec in compute_metrics(cp.store, wanted, eval_config, cache, chosen):
            data.records[(cp.label, str(rec.get("layer")))] = rec

    steps = [(cp, headline) for cp in cps] + [(detail, layer) for layer in layers if layer != headline]
    previous: dict[str, Layout] = {}
    for cp, layer in track(steps, desc="layouts", enabled=progress):
        chain = cp.series if layer == headline else f"{cp.label}/layers"
        prev = previous.get(chain) or (data.layouts.get((detail.label, headline)) if layer != headline else None)
        layout = project(cp.store.latents(layer), config.projection, fingerprint=cp.store.fingerprint,
                         cache_dir=cache, previous=prev)
        data.layouts[(cp.label, layer)] = layout
        previous[chain] = layout
    if any(l.sampled for l in data.layouts.values()):
        first = next(l for l in data.layouts.values() if l.sampled)
        data.notes.append(f"layouts show a stratified sample (by embodiment, task, stage) of {len(first)} of "
                          f"{first.n_total} points per store (--max-points); metrics use every point")

    if config.retrieval_queries:
        data.examples, more = retrieval_examples(detail.store, headline, config.retrieval_queries,
                                                 config.retrieval_k, config.projection.metric,
                                                 data_roots=dict(config.data_roots))
        data.notes += more
    data.coverage, data.coverage_summary, data.coverage_notes = coverage_gaps(detail.store, headline,
                                                                              config.projection.metric)

    records = [(cp.label, str(cp.store.path), data.record(cp, headline)) for cp in cps]
    data.checks = fail_under_checks(records, headline, config.fail_under, config.gate)
    pairs = [(a.label, data.record(a, headline), b.label, data.record(b, headline)) for a, b in zip(cps, cps[1:])
             if a.series == b.series and data.record(a, headline) and data.record(b, headline)]
    data.comparisons = compare_records(pairs)
    if baseline is not None:
        data.checks += max_drop_checks(cps[-1].label, data.record(cps[-1], headline), baseline, headline,
                                       config.max_drop)
    data.failures = [c for c in data.checks if not c["passed"]]
    return data


def detail_checkpoint(cps: Sequence[Checkpoint], detail: str | Path | None) -> Checkpoint:
    """The checkpoint of ``cps`` whose store is ``detail`` (``--detail``), or the last one when None."""
    if detail is None:
        return cps[-1]
    want = Path(detail).resolve()
    for cp in cps:
        if Path(cp.store.path).resolve() == want:
            return cp
    raise ConfigError(f"--detail '{detail}' is not one of the report's stores; give one of: "
                      + ", ".join(str(cp.store.path) for cp in cps))


def interval_settings(config: Any) -> dict[str, Any]:
    """How the suite's 95% intervals were made (:class:`metrics.spec.MetricsConfig`): replicates and mode."""
    return {"replicates": int(config.bootstrap), "mode": str(config.intervals), "level": float(config.ci_level)}
