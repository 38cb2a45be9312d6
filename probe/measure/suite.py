"""Alignment metrics of stores and latents: store/Latents -> metrics suite -> records, tables, JSON.

The pure suite (:mod:`metrics.suite`) works on arrays; this module is its I/O edge:
it opens stores, turns each layer into arrays and labels, names the outputs (store,
layer, checkpoint step) and writes JSON / CSV atomically.

    >>> records = evaluate("stores/step-000400", layers="all", config=MetricsConfig(by="stage"))
    >>> frame = metrics_frame(records)  # long form: store, layer, step, metric, value, ci_lo, ci_hi, null, scope
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np
import pandas as pd

from metrics.scale import check_scales, suite_scale_profile
from metrics.spec import REGISTRY, Better, Labels, MetricInputError, MetricsConfig, check_inputs
from metrics.suite import run_suite
from probe import columns as C
from probe.atomic import atomic_file, write_json
from probe.cache.directory import keep_within, touch
from probe.errors import ConfigError, MetricError
from probe.cache.graphs import shared_graph
from probe.latents import Latents
from probe.measure.selection import check_stores, select, selected_rows, selection_note
from probe.progress import drawn
from probe.store.series import describe, unique_labels
from probe.store.store import Store, open_store
from probe.validate import FileKind, close_matches, csv_with_columns, json_with_keys

__all__ = [
    "evaluate",
    "evaluate_latents",
    "interactive_config",
    "labels_of",
    "metrics_frame",
    "write_metrics_json",
    "write_metrics_csv",
    "FRAME_COLUMNS",
]

log = logging.getLogger(__name__)

Source = Union[str, Path, Store, Latents]
FRAME_COLUMNS = ["store", "layer", "step", "metric", "value", "ci_lo", "ci_hi", "null", "scope", "family", "better"]
#: the files ``probe metrics --out`` / ``--csv`` write: only these are replaced (``overwrite``)
METRICS_JSON = FileKind("metrics JSON", json_with_keys("store", "layer", "metrics", listed=True))
METRICS_CSV = FileKind("metrics table", csv_with_columns(*FRAME_COLUMNS))


def labels_of(latents: Latents) -> Labels:
    """The suite's label arrays from a :class:`Latents`' metadata (episode keys unique across datasets)."""
    meta = latents.meta
    return Labels(
        embodiment=meta[C.EMBODIMENT].astype(str).to_numpy(),
        stage=meta[C.STAGE].astype(str).to_numpy(),
        task=meta[C.TASK].astype(str).to_numpy(),
        episode=latents.episode_keys(),
        progress=meta[C.PROGRESS].to_numpy(dtype=np.float64),
        frame=meta[C.FRAME].to_numpy(dtype=np.int64),
        stage_progress=meta[C.STAGE_PROGRESS].to_numpy(dtype=np.float64),
    )


def evaluate_latents(latents: Latents, config: MetricsConfig | None = None, *, store: str = "",
                     step: Any = None, fingerprint: str | None = None, cache_dir: str | Path | None = None,
                     progress: bool = False, embodiments: Sequence[str] | None = None) -> dict[str, Any]:
    """Metrics of one :class:`Latents` as a JSON-ready record.

    Returns ``{"store", "layer", "step", "n", "k", "subsampled", "metrics": {NAME: {"value",
    "ci", "null"}}, "per_stage"|"per_task": {...}, "notes": [...]}``. With the store's
    ``fingerprint`` and a ``cache_dir`` the kNN graph comes from (or goes to) the cache
    shared with layouts (:func:`probe.cache.graphs.shared_graph`). ``embodiments`` (checked by
    :func:`probe.measure.selection.check_stores`) keeps only their rows, before anything is computed; the
    record's ``embodiments`` names them (None: every embodiment).

    Raises
    ------
    MetricError
        When the metrics cannot be computed on these latents (one embodiment, constant
        latents, too few samples ...); the message names the store and layer.
    """
    config = config or MetricsConfig()
    where = f"store '{store}', layer '{latents.layer}'" if store else f"layer '{latents.layer}'"
    kept = ""
    if embodiments is not None:
        embodiments = list(check_stores(embodiments, [latents], config))
        kept = selection_note(latents, embodiments)
        latents = select(latents, embodiments)
        if fingerprint is not None:  # the graph of the kept rows, cached apart from the store's
            fingerprint = f"{fingerprint}|embodiments={','.join(sorted(embodiments))}"
    # a selection without the human passed check_selection: no selected metric needs one
    check_embodiments(latents, config.human if embodiments is None or config.human in embodiments else None, where)
    try:
        labels = labels_of(latents)
        graph = None
        if fingerprint is not None and cache_dir is not None:
            check_inputs(latents.X, labels)  # before searching (and caching) a graph of bad latents
            graph = shared_graph(latents.X, fingerprint=fingerprint, layer=latents.layer, k=config.k,
                                 metric=config.metric, index=config.index.value, cache_dir=cache_dir)
        result = run_suite(latents.X, labels, config, graph=graph, progress=drawn(progress))
    except MetricInputError as exc:
        raise MetricError(f"{where}: {exc}") from exc
    record: dict[str, Any] = {"store": store, "layer": latents.layer, "step": step, "embodiments": embodiments}
    record.update(result.to_dict())
    record["notes"] = ([kept] if kept else []) + record["notes"]
    for note in result.notes:
        log.info("%s: %s", where, note)
    return record


def check_embodiments(latents: Latents, human: str | None, where: str) -> None:
    """Refuse latents without rows, or without the human embodiment (``--human``; None: none needed)."""
    if len(latents) == 0:
        raise MetricError(f"{where}: the store is empty (0 rows); nothing to measure, extract or import "
                          "samples first")
    present = sorted(latents.meta[C.EMBODIMENT].astype(str).unique())
    # one embodiment: the suite's own error says more
    if human is not None and human not in present and len(present) > 1:
        raise MetricError(f"{where}: no samples of the human embodiment '{human}'; the store holds "
                          f"{', '.join(present)}: name one of them with --human")


def _open(source: Source) -> Store | Latents:
    if isinstance(source, (Store, Latents)):
        return source
    return open_store(source)


def _layers_of(store: Store, layers: str | Sequence[str] | None) -> list[str]:
    if layers is None or layers == "all":
        return store.layers
    names = [layers] if isinstance(layers, str) else list(layers)
    for name in names:
        store.layer_info(name)  # raises LayerNotFoundError with close matches
    return names


def interactive_config() -> MetricsConfig:
    """A lighter configuration for interactive views (the demo, the dashboard): every family, per
    stage, 10 fast (reweighted) interval replicates and one null permutation (the default: 30 replicates
    that recompute every metric, 3 nulls); see :mod:`metrics.intervals`."""
    return MetricsConfig(by="stage", bootstrap=10, null_repeats=1, intervals="reweight")


@functools.cache
def _metrics_code() -> str:
    """A hash of the ``metrics`` package's source: cached records computed by other code are not reused."""
    import metrics

    digest = hashlib.sha256()
    for file in sorted(Path(metrics.__file__).parent.glob("*.py")):
        digest.update(file.name.encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()[:16]


def _cache_file(cache_dir: Path, store: Store, layer: str, config: MetricsConfig,
                embodiments: Sequence[str] | None = None) -> Path:
    chosen = {"embodiments": list(embodiments)} if embodiments is not None else {}
    settings = json.dumps(dataclasses.asdict(config) | chosen, sort_keys=True, default=str)
    key = hashlib.sha256(json.dumps([store.fingerprint, layer, settings, _metrics_code()]).encode()).hexdigest()[:24]
    return cache_dir / "metrics" / f"{key}.json"


def _cached_record(cache_dir: Path | None, store: Store, layer: str, config: MetricsConfig,
                   compute: Any, embodiments: Sequence[str] | None = None) -> dict[str, Any]:
    """A record from the cache (keyed by store fingerprint, layer and config), or computed and cached."""
    if cache_dir is None:
        return compute()
    file = _cache_file(Path(cache_dir), store, layer, config, embodiments)
    if file.is_file():
        try:
            record = json.loads(file.read_text(encoding="utf-8"))
            record["store"] = str(store.path)
            touch(file)
            return record
        except ValueError:
            log.info("ignoring unreadable metrics cache %s", file)
    record = compute()
    file.parent.mkdir(parents=True, exist_ok=True)
    write_json(file, record)
    keep_within(file.parent, keep=file)
    return record


def evaluate(sources: Source | Sequence[Source], layers: str | Sequence[str] | None = "all",
             config: MetricsConfig | None = None, *, progress: bool = False,
             cache_dir: str | Path | None = None, scales: Sequence[int] | None = None,
             embodiments: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Metrics of every requested layer of every store (or of given :class:`Latents`).

    Parameters
    ----------
    sources : a store path, an opened :class:`Store`, a :class:`Latents`, or a list of them
    layers : a layer name, a list of names, or "all" / None for every layer of each store
        (ignored for :class:`Latents`, which carry their layer)
    config : :class:`MetricsConfig` (k, metric, bootstrap, max_samples, seed, families, by ...)
    progress : show progress bars
    cache_dir : if given, records are cached there as JSON, keyed by the store's
        fingerprint, the layer and the configuration, so a second call is instant
    scales : neighbourhood sizes k: each record also gets ``scale_profile`` (and ``scale_profile_notes``),
        kNN embodiment mixing at each k with its null (:func:`scale_profile`; computed anew, never cached).
        A k at or above a store's measured rows is refused before any metric is computed
    embodiments : keep only the samples of these embodiments (at least two; the human among them when a
        selected metric compares with it) in every store, before anything is computed; a name a store does
        not hold is refused before any work (:mod:`probe.measure.selection`). None: every embodiment

    Returns
    -------
    list of records, one per (store, layer), as :func:`evaluate_latents`.

    Raises
    ------
    StoreError, LayerNotFoundError, MetricError
    """
    if isinstance(sources, (str, Path, Store, Latents)):
        sources = [sources]
    if not sources:
        raise ConfigError("no store given; pass at least one store path")
    config = config or MetricsConfig()
    records = []
    stores: list[tuple[Store, list[dict[str, Any]]]] = []  # each store's records, labelled below
    opened_sources = [_open(source) for source in sources] if scales or embodiments is not None else sources
    if embodiments is not None:
        embodiments = check_stores(embodiments, opened_sources, config)
    if scales:
        for opened in opened_sources:
            check_scales_fit(opened, scales, config, embodiments)
    for source in opened_sources:
        opened = _open(source)  # opened above already when checks needed it (then returned as it is)
        if isinstance(opened, Latents):
            records.append(evaluate_latents(opened, config, progress=progress, embodiments=embodiments))
            if scales:
                kept = opened if embodiments is None else select(opened, embodiments)
                records[-1].update(scale_profile(kept, scales, config))
            continue
        stores.append((opened, []))
        for layer in _layers_of(opened, layers):
            log.info("metrics of %s, layer %s", opened.path, layer)
            latents = opened.latents(layer) if scales else None  # loaded once for the metrics and the profile

            def compute(opened: Store = opened, layer: str = layer, latents: Latents | None = latents) -> dict[str, Any]:
                return evaluate_latents(latents if latents is not None else opened.latents(layer), config,
                                        store=str(opened.path), fingerprint=opened.fingerprint, cache_dir=cache_dir,
                                        progress=progress, embodiments=embodiments)

            records.append(_cached_record(cache_dir, opened, layer, config, compute, embodiments))
            if latents is not None:  # added to the returned record only: the cached one stays as it was
                kept = latents if embodiments is None else select(latents, embodiments)
                records[-1].update(scale_profile(kept, scales, config, store=str(opened.path)))
            stores[-1][1].append(records[-1])
    # the step and label of each checkpoint as the report has them (probe.store.series: one labelling rule)
    for cp, (_, mine) in zip(unique_labels([describe(s) for s, _ in stores]), stores):
        for rec in mine:
            rec["step"], rec["checkpoint"] = cp.step, cp.label
    return records


def scale_profile(latents: Latents, scales: Sequence[int], config: MetricsConfig, *,
                  store: str = "") -> dict[str, Any]:
    """``{"scale_profile": [{"k", "value", "null", "ratio"}, ...], "scale_profile_notes": [...]}``: kNN
    embodiment mixing at each k of ``scales`` with the suite's null, on the rows the suite measures
    (:func:`metrics.scale.suite_scale_profile`). A view beside the metrics: verdicts use the headline metrics."""
    where = f"store '{store}', layer '{latents.layer}'" if store else f"layer '{latents.layer}'"
    try:
        profile = suite_scale_profile(latents.X, labels_of(latents), config, scales)
    except ValueError as exc:
        raise MetricError(f"{where}: scale profile: {exc}") from exc
    return {"scale_profile": profile.to_records(), "scale_profile_notes": list(profile.notes)}


def check_scales_fit(source: Store | Latents, scales: Sequence[int], config: MetricsConfig,
                     embodiments: Sequence[str] | None = None) -> None:
    """Refuse, before any work, a neighbourhood size at or above the rows the profile of ``source`` measures
    (those of the selected ``embodiments``)."""
    n = selected_rows(source, embodiments)
    rows = min(n, config.max_samples)
    try:
        check_scales(scales, rows)  # the profile's own rule, on the rows it will measure
    except ValueError as exc:
        where = f"layer '{source.layer}'" if isinstance(source, Latents) else f"store '{source.path}'"
        sub = f" (of its {n} rows, the --max-samples subsample keeps {rows})" if rows < n else ""
        raise ConfigError(f"--scales: {where}{sub}: {exc}") from None


def metrics_frame(records: Sequence[dict[str, Any]] | dict[str, Any]) -> pd.DataFrame:
    """Long-form table of records: one row per (store, layer, scope, metric).

    Columns: store, layer, step, metric, value, ci_lo, ci_hi, null, scope ("overall",
    or the stage / task name), family, better.
    """
    if isinstance(records, dict):
        records = [records]
    rows = []
    for rec in records:
        scopes: list[tuple[str, dict]] = [("overall", rec["metrics"])]
        for key in ("per_stage", "per_task"):
            scopes += list(rec.get(key, {}).items())
        for scope, values in scopes:
            for name, v in values.items():
                spec = REGISTRY.get(name)
                ci = v.get("ci") or [None, None]
                rows.append({"store": rec.get("store", ""), "layer": rec.get("layer", ""), "step": rec.get("step"),
                             "metric": name, "value": v.get("value"), "ci_lo": ci[0], "ci_hi": ci[1],
                             "null": v.get("null"), "scope": scope,
                             "family": spec.family.value if spec else "",
                             "better": spec.better.value if spec else ""})
    frame = pd.DataFrame(rows, columns=FRAME_COLUMNS)
    for col in ("value", "ci_lo", "ci_hi", "null"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    return frame


def write_metrics_json(path: str | Path, records: Sequence[dict[str, Any]], *, overwrite: bool = True) -> Path:
    """Write records atomically: one object for one record, a list for several. ``null`` stands for nan.
    An existing file is replaced only with ``overwrite`` and when it is a metrics JSON (:data:`METRICS_JSON`)."""
    payload: Any = records[0] if len(records) == 1 else list(records)
    return write_json(path, payload, overwrite=overwrite, kind=METRICS_JSON)


def write_metrics_csv(path: str | Path, records: Sequence[dict[str, Any]], *, overwrite: bool = True) -> Path:
    """Write the long-form :func:`metrics_frame` of records as CSV, atomically. An existing file is replaced
    only with ``overwrite`` and when it is a metrics table (:data:`METRICS_CSV`)."""
    with atomic_file(path, overwrite=overwrite, kind=METRICS_CSV) as tmp:
        metrics_frame(records).to_csv(tmp, index=False)
    return Path(path)


def better_arrow(name: str) -> str:
    """"↑" when higher is better, "↓" when lower is, "" for unknown metrics."""
    spec = REGISTRY.get(name)
    if spec is None:
        return ""
    return "↑" if spec.better is Better.HIGHER else "↓"


# -- the report's use of the suite: defaults, names, gates ----------------------------------------


NOT_AVAILABLE = "metrics not available: the metrics suite (probe.measure.suite) is not installed in this build"


def known_metric_names() -> list[str]:
    """Metric names the suite computes."""
    from metrics.suite import available

    return list(available())


def default_eval_config(bootstrap: int | None = None, metrics: Sequence[str] | None = None, seed: int = 0) -> Any:
    """The suite's configuration for reports: per-stage values on; ``bootstrap`` replicates and a
    subset of ``metrics`` if given (unknown names are refused, listing the known ones)."""
    kwargs: dict[str, Any] = {"by": "stage", "seed": seed}
    if bootstrap is not None:
        kwargs["bootstrap"] = bootstrap
    if metrics:
        check_metric_names(list(metrics), "--metrics")  # unknown names, with the nearest
        kwargs["metrics"] = tuple(dict.fromkeys(metrics))
    if bootstrap is not None and bootstrap < 0:
        raise ConfigError(f"--bootstrap must be 0 (no intervals) or a positive number of replicates, got {bootstrap}")
    try:
        return MetricsConfig(**kwargs)
    except MetricInputError as exc:
        raise ConfigError(f"invalid metrics option: {exc}") from exc


def check_fail_under(fail_under: Sequence[tuple[str, float]], flag: str = "--fail-under") -> None:
    """Refuse unknown metric names of a gate (``flag``) before any work, listing the known ones."""
    check_metric_names([name for name, _ in fail_under], flag, purpose="cannot gate on metrics")


def check_metric_names(names: Sequence[str], flag: str = "--metrics", *, purpose: str = "cannot compute them") -> None:
    """Refuse unknown metric ``names`` given with ``flag`` before any work: the closest known names, then all."""
    if not names:
        return
    known = known_metric_names()
    if not known:
        raise ConfigError(f"{flag} {names[0]}: {NOT_AVAILABLE}; {purpose}")
    for name in names:
        if name not in known:
            near = close_matches(name, known, n=3)
            hint = f" (did you mean {', '.join(near)}?)" if near else ""
            raise ConfigError(f"{flag} names unknown metric '{name}'{hint}; known metrics: {', '.join(known)}")


def compute_metrics(store: Store, layers: Sequence[str], eval_config: Any = None,
                    cache_dir: Path | None = None, embodiments: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The suite's records for one store, cached in ``cache_dir``, of the selected ``embodiments`` (None: all)."""
    config = eval_config if eval_config is not None else default_eval_config()
    return list(evaluate(store, list(layers), config, cache_dir=cache_dir, embodiments=embodiments))
