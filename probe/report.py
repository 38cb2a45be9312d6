"""The alignment report: one self-contained HTML page, ``metrics.json`` and ``summary.md``.

``build_report(stores, out, config)`` opens the stores (checkpoints), computes the
metrics suite per store and layer (``probe.evaluate``), lays out every checkpoint
with UMAP (warm-started along the series so panels are comparable), picks
retrieval examples and coverage gaps, derives a verdict from the numbers, and
writes the three files atomically. ``--fail-under`` thresholds are checked after
writing; the CLI exits non-zero when one fails so a training pipeline can gate on it.

Verdict rules (documented in :data:`VERDICT_RULES`):

* mixing ratio = value / null of the first available of ``ilisi``,
  ``knn_embodiment_mixing``, ``kbet`` (the null is the value with embodiment labels
  shuffled, i.e. perfect mixing): **shared** when >= 0.8, **partly shared** when
  >= 0.5, **separate** below;
* stage structure is **conserved** when ``stage_transfer_acc_robot_to_human`` (or,
  failing that, ``silhouette_stage`` > 0) beats its null: a space that mixes
  embodiments by collapsing stages is not called shared;
* stages whose per-stage mixing ratio is below 0.5 are listed as where the space
  is not shared; alignment "emerges" at the first training step whose verdict is
  shared.
"""

from __future__ import annotations

import html
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from probe import columns as C
from probe import figures as F
from probe.atomic import atomic_dir
from probe.errors import ConfigError, ProbeError
from probe.progress import track
from probe.projection import Layout, ProjectionConfig, default_cache_dir, project
from probe.store import Store, open_store
from probe.validate import check_output_path, close_matches

log = logging.getLogger(__name__)

MIXING_METRICS = ("ilisi", "knn_embodiment_mixing", "kbet")
STAGE_METRICS = ("stage_transfer_acc_robot_to_human", "silhouette_stage")
HEADLINE = ("ilisi", "kbet", "knn_embodiment_mixing", "silhouette_embodiment", "embodiment_probe_acc", "clisi",
            "silhouette_stage", "stage_transfer_acc_robot_to_human", "retrieval_precision_at_1",
            "retrieval_map_at_r", "cka_linear", "mutual_knn", "mmd_rbf")
SHARED_RATIO = 0.8
PARTLY_RATIO = 0.5
VERDICT_RULES = (
    f"mixing ratio = value / null of the first of {', '.join(MIXING_METRICS)} (null: labels shuffled = perfect "
    f"mixing); shared >= {SHARED_RATIO}, partly shared >= {PARTLY_RATIO}, separate below",
    f"stages conserved when {STAGE_METRICS[0]} beats its null (or {STAGE_METRICS[1]} > 0); a mixed space "
    "whose stages are not conserved is called 'mixed but stages lost', not shared",
    f"stages with a per-stage mixing ratio below {PARTLY_RATIO} are listed as not shared",
    "alignment emerges at the first training step of a series whose verdict is 'shared'",
)
NOT_AVAILABLE = "metrics not available: the metrics suite (probe.evaluate) is not installed in this build"


# ---------------------------------------------------------------- configuration

@dataclass(frozen=True)
class ReportConfig:
    """What ``build_report`` does.

    ``layers``: layer names, or None for every layer all stores share. ``headline_layer``:
    the layer drawn per checkpoint and gated by ``fail_under`` (default: the last
    selected layer). ``fail_under``: ``(metric, threshold)`` pairs.
    """

    layers: tuple[str, ...] | None = None
    headline_layer: str | None = None
    fail_under: tuple[tuple[str, float], ...] = ()
    projection: ProjectionConfig = ProjectionConfig(max_points=5000)
    cache_dir: Path | None = None
    retrieval_queries: int = 3
    retrieval_k: int = 4
    overwrite: bool = False
    eval_config: Any = None

    def __post_init__(self) -> None:
        if self.retrieval_queries < 0 or self.retrieval_k < 1:
            raise ConfigError("retrieval_queries must be >= 0 and retrieval_k >= 1")


def parse_fail_under(items: Sequence[str]) -> tuple[tuple[str, float], ...]:
    """Parse ``METRIC=VALUE`` strings."""
    out = []
    for item in items:
        name, sep, value = item.partition("=")
        try:
            threshold = float(value)
        except ValueError:
            threshold = math.nan
        if not sep or not name.strip() or not math.isfinite(threshold):
            raise ConfigError(f"--fail-under expects METRIC=VALUE with a number, e.g. ilisi=1.5; got {item!r}")
        out.append((name.strip(), threshold))
    return tuple(out)


# ---------------------------------------------------------------- metrics suite adapter

def _evaluate_module() -> Any | None:
    try:
        from probe import evaluate
    except ImportError as exc:
        log.info("metrics suite unavailable: %s", exc)
        return None
    return evaluate


def known_metric_names() -> list[str]:
    """Metric names the suite computes (empty when the suite is not installed)."""
    if _evaluate_module() is None:
        return []
    from metrics.suite import available

    return list(available())


def default_eval_config(bootstrap: int | None = None, metrics: Sequence[str] | None = None) -> Any:
    """The suite's configuration for reports: per-stage values on; ``bootstrap`` replicates and a
    subset of ``metrics`` if given (unknown names are refused, listing the known ones)."""
    from metrics.suite import MetricsConfig

    kwargs: dict[str, Any] = {"by": "stage"}
    if bootstrap is not None:
        kwargs["bootstrap"] = bootstrap
    if metrics:
        known = known_metric_names()
        for name in metrics:
            if name not in known:
                raise ConfigError(f"--metrics names unknown metric '{name}'; known metrics: {', '.join(known)}")
        kwargs["metrics"] = tuple(dict.fromkeys(metrics))
    return MetricsConfig(**kwargs)


def check_fail_under(fail_under: Sequence[tuple[str, float]]) -> None:
    """Refuse unknown metric names before any work, listing the known ones."""
    if not fail_under:
        return
    known = known_metric_names()
    if not known:
        raise ConfigError(f"--fail-under {fail_under[0][0]}: {NOT_AVAILABLE}; cannot gate on metrics")
    for name, _ in fail_under:
        if name not in known:
            near = close_matches(name, known, n=3)
            hint = f" (did you mean {', '.join(near)}?)" if near else ""
            raise ConfigError(f"--fail-under names unknown metric '{name}'{hint}; known metrics: {', '.join(known)}")


def compute_metrics(store: Store, layers: Sequence[str], eval_config: Any = None,
                    cache_dir: Path | None = None) -> list[dict[str, Any]]:
    """The suite's records for one store (empty when the suite is not installed), cached in ``cache_dir``."""
    ev = _evaluate_module()
    if ev is None:
        return []
    config = eval_config if eval_config is not None else default_eval_config()
    return list(ev.evaluate(store, list(layers), config, cache_dir=cache_dir))


# ---------------------------------------------------------------- checkpoints

@dataclass(frozen=True, eq=False)
class Checkpoint:
    """A store in the report: its label, series (recipe) and training step."""

    store: Store
    label: str
    series: str
    step: int | None
    datasets: tuple[str, ...]


def _find(prov: Mapping[str, Any], keys: Sequence[str]) -> Any:
    for scope in (prov, prov.get("checkpoint"), prov.get("config"), prov.get("training")):
        if isinstance(scope, Mapping):
            for key in keys:
                if scope.get(key) is not None:
                    return scope[key]
    return None


def describe(store: Store) -> Checkpoint:
    """Label a store from its provenance: ``<recipe> step <n>`` where known."""
    prov = store.provenance
    step = _find(prov, ("step", "global_step", "train_step"))
    try:
        step = int(step) if step is not None else None
    except (TypeError, ValueError):
        step = None
    series = str(_find(prov, ("recipe", "series", "run")) or "")
    label = " ".join(p for p in (series, f"step {step}" if step is not None else "") if p) or store.name
    datasets = tuple(sorted(store.meta[C.DATASET].astype(str).unique()))
    return Checkpoint(store, label, series, step, datasets)


def order_checkpoints(cps: Sequence[Checkpoint]) -> list[Checkpoint]:
    """Series in order of first appearance, each by training step (stores without a step keep their place)."""
    series = list(dict.fromkeys(c.series for c in cps))
    return sorted(cps, key=lambda c: (series.index(c.series), c.step if c.step is not None else -1))


def resolve_layers(stores: Sequence[Store], layers: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """Selected layers (each checked in every store) and notes about layers left out."""
    notes = []
    if layers is None:
        common = [l for l in stores[0].layers if all(l in s.layers for s in stores)]
        dropped = sorted({l for s in stores for l in s.layers} - set(common))
        if not common:
            raise ConfigError("the stores share no layer; pick stores extracted from the same layers or use --layer")
        if dropped:
            notes.append(f"layers not in every store were left out: {', '.join(dropped)}")
        return common, notes
    for layer in layers:
        for s in stores:
            s.layer_info(layer)  # raises LayerNotFoundError naming the store, the layer and the available ones
    return list(layers), notes


# ---------------------------------------------------------------- reading records

def _entry(record: Mapping[str, Any] | None, name: str) -> dict[str, Any]:
    if not record:
        return {}
    e = record.get("metrics", {}).get(name)
    return dict(e) if isinstance(e, Mapping) else {}


def _value(e: Mapping[str, Any], key: str = "value") -> float:
    try:
        v = float(e.get(key)) if e.get(key) is not None else math.nan
    except (TypeError, ValueError):
        return math.nan
    return v


def _ratio(e: Mapping[str, Any]) -> float:
    v, null = _value(e), _value(e, "null")
    if not (math.isfinite(v) and math.isfinite(null)) or null == 0:
        return math.nan
    return v / null


def fmt(e: Mapping[str, Any], digits: int = 3) -> str:
    """``value [lo, hi]`` or an em dash when missing."""
    v = _value(e)
    if not math.isfinite(v):
        return "—"
    ci = e.get("ci") or []
    if len(ci) == 2 and all(x is not None and math.isfinite(float(x)) for x in ci):
        return f"{v:.{digits}f} [{float(ci[0]):.{digits}f}, {float(ci[1]):.{digits}f}]"
    return f"{v:.{digits}f}"


def _per_stage(record: Mapping[str, Any] | None, name: str) -> dict[str, dict[str, Any]]:
    out = {}
    for stage, d in (record or {}).get("per_stage", {}).items():
        if isinstance(d, Mapping) and isinstance(d.get(name), Mapping):
            out[str(stage)] = dict(d[name])
        elif isinstance(d, Mapping) and isinstance(d.get("metrics"), Mapping) and name in d["metrics"]:
            out[str(stage)] = dict(d["metrics"][name])
    return out


# ---------------------------------------------------------------- verdict

@dataclass(frozen=True)
class Verdict:
    """The verdict for one checkpoint and layer, and why."""

    status: str  # shared | partly shared | mixed but stages lost | separate | unknown
    mixing_metric: str | None
    ratio: float
    stages_conserved: bool | None
    unshared_stages: tuple[str, ...] = ()

    def sentence(self) -> str:
        if self.status == "unknown":
            return "no verdict: mixing metrics were not computed"
        text = f"{self.status} ({self.mixing_metric} at {self.ratio:.0%} of its null"
        if self.stages_conserved is not None:
            text += ", stages conserved" if self.stages_conserved else ", stages NOT conserved"
        text += ")"
        if self.unshared_stages:
            text += f"; not shared in stage(s): {', '.join(self.unshared_stages)}"
        return text


def verdict(record: Mapping[str, Any] | None) -> Verdict:
    """Apply :data:`VERDICT_RULES` to one record of the metrics suite."""
    name = next((m for m in MIXING_METRICS if math.isfinite(_ratio(_entry(record, m)))), None)
    if name is None:
        return Verdict("unknown", None, math.nan, None)
    ratio = _ratio(_entry(record, name))
    conserved: bool | None = None
    transfer = _entry(record, STAGE_METRICS[0])
    if math.isfinite(_value(transfer)) and math.isfinite(_value(transfer, "null")):
        ci = transfer.get("ci") or [None, None]
        lower = _value({"value": ci[0]}) if ci and ci[0] is not None else _value(transfer)
        conserved = bool((lower if math.isfinite(lower) else _value(transfer)) > _value(transfer, "null"))
    elif math.isfinite(_value(_entry(record, STAGE_METRICS[1]))):
        conserved = _value(_entry(record, STAGE_METRICS[1])) > 0
    if ratio >= SHARED_RATIO:
        status = "shared" if conserved is not False else "mixed but stages lost"
    elif ratio >= PARTLY_RATIO:
        status = "partly shared"
    else:
        status = "separate"
    unshared = tuple(s for s, e in _per_stage(record, name).items() if _ratio(e) < PARTLY_RATIO)
    return Verdict(status, name, ratio, conserved, unshared)


# ---------------------------------------------------------------- retrieval examples and frames

def _png(rgb: np.ndarray) -> str:
    """A ``data:image/png`` URI of an RGB uint8 image (zlib PNG encoder: no imaging library needed)."""
    import base64
    import struct
    import zlib

    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def frame_image(store: Store, row: int, width: int = 160) -> str | None:
    """The video frame of a store row as a PNG data URI, or None when the store has no video for it."""
    meta = store.meta
    if C.VIDEO not in meta.columns or C.VIDEO_TIMESTAMP not in meta.columns:
        return None
    video, ts = meta.at[row, C.VIDEO], meta.at[row, C.VIDEO_TIMESTAMP]
    if video is None or (isinstance(video, float) and math.isnan(video)) or str(video) == "":
        return None
    path = Path(str(video))
    if not path.is_absolute():
        path = store.path / path
    try:
        import av

        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            container.seek(max(int((float(ts) - 0.5) / stream.time_base), 0), stream=stream, backward=True)
            chosen = None
            for frame in container.decode(stream):
                chosen = frame
                if frame.pts is not None and float(frame.pts * stream.time_base) >= float(ts) - 1e-3:
                    break
            if chosen is None:
                return None
            height = max(int(round(chosen.height * width / chosen.width)) // 2 * 2, 2)
            return _png(chosen.to_ndarray(format="rgb24", width=width, height=height))
    except Exception as exc:  # a missing or broken video degrades to a caption, and says so in the log
        log.warning("cannot read frame of row %d from '%s': %s", row, path, exc)
        return None


def _caption(meta: pd.DataFrame, row: int) -> str:
    r = meta.iloc[row]
    return f"{r[C.EMBODIMENT]} | {r[C.TASK]} | {r[C.STAGE]} | ep {r[C.EPISODE]} f {r[C.FRAME]}"


def retrieval_examples(store: Store, layer: str, n_queries: int = 3, k: int = 4,
                       metric: str = "cosine") -> tuple[list[F.RetrievalExample], list[str]]:
    """Robot query frames (one per stage, mid-stage) and their top-k human frames in ``layer``."""
    from metrics.knn import knn

    meta = store.meta
    emb = meta[C.EMBODIMENT].astype(str)
    kinds = sorted(emb.unique())
    if len(kinds) < 2:
        return [], ["retrieval examples need two embodiments; this store has one"]
    query_kind = C.ROBOT if C.ROBOT in kinds else kinds[-1]
    q_rows = np.flatnonzero((emb == query_kind).to_numpy())
    r_rows = np.flatnonzero((emb != query_kind).to_numpy())
    qmeta = meta.iloc[q_rows]
    chosen: list[int] = []
    for stage in list(dict.fromkeys(qmeta[C.STAGE].astype(str)))[:n_queries]:
        sub = qmeta[qmeta[C.STAGE].astype(str) == stage]
        first_ep = sub[C.EPISODE].iloc[0]
        sub = sub[sub[C.EPISODE] == first_ep]
        chosen.append(int(sub.index[np.argmin(np.abs(sub[C.STAGE_PROGRESS].to_numpy() - 0.5))]))
    X = store.matrix(layer)
    nb = knn(np.asarray(X[chosen]), np.asarray(X[r_rows]), k=min(k, len(r_rows)), metric=metric)
    examples = []
    for qi, row in enumerate(chosen):
        matches = []
        for j, dist in zip(nb.indices[qi], nb.distances[qi]):
            ref = int(r_rows[j])
            sim = f" | sim {1 - dist:.2f}" if metric == "cosine" else f" | d {dist:.2f}"
            matches.append(F.Thumb(_caption(meta, ref) + sim, frame_image(store, ref), ref))
        examples.append(F.RetrievalExample(F.Thumb(_caption(meta, row), frame_image(store, row), row), matches))
    notes = []
    if not any(e.query.image for e in examples):
        notes.append("the store has no video columns: retrieval examples are shown as labels")
    return examples, notes


# ---------------------------------------------------------------- coverage adapter

def coverage_gaps(store: Store, layer: str, metric: str = "cosine"
                  ) -> tuple[pd.DataFrame | None, dict[str, Any] | None, list[str]]:
    """Robot (task, stage) groups worst covered by human data, from ``probe.coverage`` when installed.

    Returns a ``label`` / ``gap`` table (gap = share of the group's robot states beyond
    the calibrated threshold), the coverage summary for ``metrics.json`` and notes.
    """
    try:
        from probe.coverage import coverage
    except ImportError:
        return None, None, ["coverage not available: probe.coverage is not installed in this build"]
    try:
        result = coverage(store.latents(layer), metric=metric)
    except ProbeError as exc:
        return None, None, [f"coverage not computed: {exc}"]
    stages = result.stages
    frame = pd.DataFrame({"label": (stages[C.TASK].astype(str) + " / " + stages[C.STAGE].astype(str)).to_numpy(),
                          "gap": stages["share_beyond"].astype(float).to_numpy()})
    summary = result.to_dict()
    summary = {k: summary[k] for k in ("a", "b", "layer", "threshold", "share_beyond", "advice", "stages")}
    return frame, summary, [f"coverage: {line}" for line in result.advice()]


# ---------------------------------------------------------------- assembly

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

    def record(self, cp: Checkpoint, layer: str) -> dict[str, Any] | None:
        return self.records.get((cp.label, layer))

    def metric_names(self) -> list[str]:
        seen = {n for r in self.records.values() for n in r.get("metrics", {})}
        return [n for n in HEADLINE if n in seen] + sorted(seen - set(HEADLINE))


def _unique_labels(cps: list[Checkpoint]) -> list[Checkpoint]:
    seen: dict[str, int] = {}
    out = []
    for c in cps:
        label = c.label
        if label in seen:
            label = f"{c.label} ({c.store.name})"
        seen[label] = 1
        out.append(Checkpoint(c.store, label, c.series, c.step, c.datasets))
    return out


def collect(store_paths: Sequence[str | Path], config: ReportConfig = ReportConfig(), *,
            progress: bool = False) -> ReportData:
    """Open the stores and compute metrics, layouts, retrieval examples, coverage and threshold checks."""
    if not store_paths:
        raise ConfigError("a report needs at least one store")
    check_fail_under(config.fail_under)
    stores = [open_store(p) for p in store_paths]
    layers, notes = resolve_layers(stores, config.layers)
    headline = config.headline_layer or layers[-1]
    if headline not in layers:
        raise ConfigError(f"headline layer '{headline}' is not among the selected layers: {', '.join(layers)}")
    cps = _unique_labels(order_checkpoints([describe(s) for s in stores]))
    data = ReportData(cps, layers, headline, notes=notes)
    dataset_sets = {cp.datasets for cp in cps}
    if len(dataset_sets) > 1:
        data.notes.append("the stores come from DIFFERENT datasets, so differences between them mix model changes "
                          "with data changes: " + "; ".join(f"{cp.label}: {', '.join(cp.datasets)}" for cp in cps))
    fps = [cp.store.fingerprint for cp in cps]
    if len(set(fps)) < len(fps):
        data.notes.append("some stores are identical copies (same fingerprint)")

    data.metrics_available = _evaluate_module() is not None
    if not data.metrics_available:
        data.notes.append(NOT_AVAILABLE)
    cache = Path(config.cache_dir) if config.cache_dir is not None else default_cache_dir()
    # every checkpoint at the headline layer (metric-vs-step curves), every layer of the last one (vs-layer curves)
    for cp in track(cps, desc="metrics", enabled=progress and data.metrics_available):
        wanted = layers if cp is cps[-1] else [headline]
        for rec in compute_metrics(cp.store, wanted, config.eval_config, cache):
            data.records[(cp.label, str(rec.get("layer")))] = rec

    steps = [(cp, headline) for cp in cps] + [(cps[-1], layer) for layer in layers if layer != headline]
    previous: dict[str, Layout] = {}
    for cp, layer in track(steps, desc="layouts", enabled=progress):
        chain = cp.series if layer == headline else f"{cp.label}/layers"
        prev = previous.get(chain) or (data.layouts.get((cps[-1].label, headline)) if layer != headline else None)
        layout = project(cp.store.latents(layer), config.projection, fingerprint=cp.store.fingerprint,
                         cache_dir=cache, previous=prev)
        data.layouts[(cp.label, layer)] = layout
        previous[chain] = layout
    if any(l.sampled for l in data.layouts.values()):
        first = next(l for l in data.layouts.values() if l.sampled)
        data.notes.append(f"layouts show a stratified sample (by embodiment, task, stage) of {len(first)} of "
                          f"{first.n_total} points per store (--max-points); metrics use every point")

    if config.retrieval_queries:
        data.examples, more = retrieval_examples(cps[-1].store, headline, config.retrieval_queries,
                                                 config.retrieval_k, config.projection.metric)
        data.notes += more
    data.coverage, data.coverage_summary, data.coverage_notes = coverage_gaps(cps[-1].store, headline,
                                                                              config.projection.metric)

    for name, threshold in config.fail_under:
        from metrics.suite import REGISTRY, Better

        # "fails under" means "is worse than": below for higher-is-better, above for lower-is-better metrics
        lower_better = name in REGISTRY and REGISTRY[name].better is Better.LOWER
        for cp in cps:
            value = _value(_entry(data.record(cp, headline), name))
            ok = value <= threshold if lower_better else value >= threshold
            check = {"metric": name, "threshold": threshold, "store": str(cp.store.path), "checkpoint": cp.label,
                     "layer": headline, "value": value if math.isfinite(value) else None,
                     "better": "lower" if lower_better else "higher",
                     "passed": bool(math.isfinite(value) and ok)}
            data.checks.append(check)
            if not check["passed"]:
                data.failures.append(check)
    return data


# ---------------------------------------------------------------- outputs

def _series_verdicts(data: ReportData) -> list[str]:
    lines = []
    for series in dict.fromkeys(cp.series for cp in data.checkpoints):
        cps = [cp for cp in data.checkpoints if cp.series == series]
        last = cps[-1]
        v = verdict(data.record(last, data.headline))
        line = f"{last.label}, layer {data.headline}: {v.sentence()}"
        emerged = next((cp for cp in cps if verdict(data.record(cp, data.headline)).status == "shared"), None)
        if len(cps) > 1 and v.status != "unknown":
            line += (f"; alignment emerges at {emerged.label}" if emerged is not None
                     else "; no checkpoint of this series reaches a shared space")
        best = max(((layer, _ratio(_entry(data.record(last, layer), v.mixing_metric or ""))) for layer in data.layers),
                   key=lambda t: -1 if not math.isfinite(t[1]) else t[1])
        if len(data.layers) > 1 and math.isfinite(best[1]):
            line += f"; best-mixed layer: {best[0]} ({best[1]:.0%} of null)"
        lines.append(line)
    return lines


def metrics_json(data: ReportData) -> dict[str, Any]:
    """The machine-readable report."""
    def clean(obj: Any) -> Any:
        if isinstance(obj, float):
            return obj if math.isfinite(obj) else None
        if isinstance(obj, dict):
            return {str(k): clean(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [clean(v) for v in obj]
        if isinstance(obj, np.generic):
            return clean(obj.item())
        return obj

    return clean({
        "format": "probe-report", "version": 1,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "layers": data.layers, "headline_layer": data.headline,
        "metrics_available": data.metrics_available,
        "checkpoints": [{"label": cp.label, "store": str(cp.store.path), "fingerprint": cp.store.fingerprint,
                         "series": cp.series, "step": cp.step, "datasets": list(cp.datasets), "n": cp.store.n}
                        for cp in data.checkpoints],
        "verdict": _series_verdicts(data), "verdict_rules": list(VERDICT_RULES),
        "verdicts": [{"checkpoint": cp.label, "layer": layer, **vars(verdict(data.record(cp, layer)))}
                     for cp in data.checkpoints for layer in data.layers if (cp.label, layer) in data.records],
        "records": [{"checkpoint": label, **rec} for (label, _), rec in data.records.items()],
        "layouts": [{"checkpoint": label, "layer": layer, "method": l.method, "trustworthiness": l.trustworthiness,
                     "sampled": l.sampled, "n": len(l), "n_total": l.n_total, "cache_key": l.cache_key}
                    for (label, layer), l in data.layouts.items()],
        "coverage": data.coverage_summary,
        "fail_under": data.checks, "failed": bool(data.failures), "notes": data.notes,
    })


def summary_markdown(data: ReportData) -> str:
    """A Markdown table of the headline metrics, fit to paste in a pull request."""
    names = [n for n in data.metric_names() if n in HEADLINE][:8] or data.metric_names()[:8]
    out = ["## Embodiment alignment report", ""]
    out += [f"- {line}" for line in _series_verdicts(data)] + [""]
    if names:
        out.append("| checkpoint | layer | verdict | " + " | ".join(names) + " |")
        out.append("|---|---|---|" + "---|" * len(names))
        for cp in data.checkpoints:
            rec = data.record(cp, data.headline)
            cells = []
            for n in names:
                e = _entry(rec, n)
                null = _value(e, "null")
                cells.append(fmt(e) + (f" (null {null:.3f})" if math.isfinite(null) else ""))
            out.append(f"| {cp.label} | {data.headline} | {verdict(rec).status} | " + " | ".join(cells) + " |")
        out.append("")
        out.append("Values: estimate [95% interval]; null: value with embodiment labels shuffled.")
    else:
        out.append(f"_{NOT_AVAILABLE}_")
    if data.checks:
        out += ["", "| gate | checkpoint | value | result |", "|---|---|---|---|"]
        for c in data.checks:
            value = "—" if c["value"] is None else f"{c['value']:.3f}"
            out.append(f"| {c['metric']} >= {c['threshold']:g} | {c['checkpoint']} | {value} | "
                       f"{'pass' if c['passed'] else '**FAIL**'} |")
    if data.notes:
        out += [""] + [f"> note: {n}" for n in data.notes]
    return "\n".join(out) + "\n"


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1400px;padding:16px 24px;
color:#222}
h1{font-size:1.6em;margin-bottom:4px}h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}
.verdict{background:#f3f6fb;border-left:5px solid #1F63B5;padding:10px 16px;margin:12px 0}
.verdict li{margin:4px 0}.note{background:#fff7e6;border-left:5px solid #F58518;padding:6px 12px;margin:6px 0}
table{border-collapse:collapse;font-size:13px;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;
text-align:right}th{background:#f5f5f5}td:first-child,th:first-child{text-align:left}
.fail{color:#b00020;font-weight:bold}.pass{color:#137333}.small{color:#666;font-size:12px}
"""


def _figure_html(fig: Any, div_id: str) -> str:
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id,
                       config={"displaylogo": False, "responsive": True})


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _panel_caption(data: ReportData, cp: Checkpoint, layer: str) -> str:
    rec = data.record(cp, layer)
    v = verdict(rec)
    parts = []
    if v.mixing_metric:
        parts.append(f"{v.mixing_metric} {_value(_entry(rec, v.mixing_metric)):.2f} ({v.ratio:.0%} of null)")
    st = _entry(rec, STAGE_METRICS[0])
    if math.isfinite(_value(st)):
        parts.append(f"stage transfer {_value(st):.2f}")
    layout = data.layouts.get((cp.label, layer))
    if layout is not None:
        parts.append(f"trust {layout.trustworthiness:.2f}")
    return " · ".join(parts)


def render_html(data: ReportData) -> str:
    """The self-contained report page (plotly.js inlined once; no network requests)."""
    from plotly.offline import get_plotlyjs

    sections: list[str] = []
    fig_no = [0]

    def fig(figure: Any, name: str) -> str:
        fig_no[0] += 1
        return _figure_html(figure, f"fig-{fig_no[0]}-{name}")

    verdict_items = "".join(f"<li>{html.escape(line)}</li>" for line in _series_verdicts(data))
    sections.append(f"<div class='verdict'><b>Verdict</b><ul>{verdict_items}</ul>"
                    "<details><summary class='small'>how the verdict is derived</summary><ul class='small'>"
                    + "".join(f"<li>{html.escape(r)}</li>" for r in VERDICT_RULES) + "</ul></details></div>")
    sections += [f"<div class='note'>{html.escape(n)}</div>" for n in data.notes]
    if data.checks:
        rows = [[html.escape(f"{c['metric']} >= {c['threshold']:g}"), html.escape(c["checkpoint"]),
                 "—" if c["value"] is None else f"{c['value']:.3f}",
                 "<span class='pass'>pass</span>" if c["passed"] else "<span class='fail'>FAIL</span>"]
                for c in data.checks]
        sections.append("<h2>Gates (--fail-under)</h2>" + _table(["gate", "checkpoint", "value", "result"], rows))

    head_panels = []
    for cp in data.checkpoints:
        layout = data.layouts[(cp.label, data.headline)]
        meta = cp.store.meta.iloc[layout.rows].reset_index(drop=True)
        head_panels.append(F.Panel(cp.label, layout.coords, meta, layout.rows.tolist(),
                                   _panel_caption(data, cp, data.headline)))
    sections.append(f"<h2 id='layouts'>Layouts per checkpoint (layer {html.escape(data.headline)})</h2>"
                    "<p class='small'>UMAP on the metrics' kNN graph, each checkpoint warm-started from the previous "
                    "one so panels are comparable. " + html.escape("; ".join(
                        f"{cp.label}: {data.layouts[(cp.label, data.headline)].note}" for cp in data.checkpoints))
                    + "</p>")
    sections.append(fig(F.small_multiples(head_panels, F.ColorBy.EMBODIMENT, title="coloured by embodiment"),
                        "umap-embodiment"))
    sections.append(fig(F.small_multiples(head_panels, F.ColorBy.STAGE, title="coloured by stage"), "umap-stage"))
    if len(data.layers) > 1:
        last = data.checkpoints[-1]
        panels = []
        for layer in data.layers:
            layout = data.layouts[(last.label, layer)]
            meta = last.store.meta.iloc[layout.rows].reset_index(drop=True)
            panels.append(F.Panel(layer, layout.coords, meta, layout.rows.tolist(), _panel_caption(data, last, layer)))
        sections.append(f"<h3>Layers of {html.escape(last.label)}</h3>")
        sections.append(fig(F.small_multiples(panels, F.ColorBy.EMBODIMENT), "umap-layers"))

    sections.append("<h2 id='metrics'>Headline metrics (95% intervals, null baselines)</h2>")
    names = data.metric_names()
    if not names:
        sections.append(f"<div class='note'>{html.escape(NOT_AVAILABLE)}</div>")
    else:
        rows = []
        for cp in data.checkpoints:
            rec = data.record(cp, data.headline)
            rows.append([html.escape(cp.label)] + [
                html.escape(fmt(_entry(rec, n))) + (f"<br><span class='small'>null {_value(_entry(rec, n), 'null'):.3f}"
                                                    "</span>" if math.isfinite(_value(_entry(rec, n), "null")) else "")
                for n in names])
        sections.append(_table(["checkpoint"] + names, rows))
        last = data.checkpoints[-1]
        rec = data.record(last, data.headline) or {}
        sections.append(fig(F.metric_bars({n: _entry(rec, n) for n in names if _entry(rec, n)},
                                          title=f"{last.label}, layer {data.headline}"), "metric-bars"))
        for note in rec.get("notes", []):
            sections.append(f"<div class='note'>{html.escape(str(note))}</div>")

        stage_metric = next((m for m in MIXING_METRICS if any(_per_stage(data.record(cp, data.headline), m)
                                                              for cp in data.checkpoints)), None)
        if stage_metric:
            per_stage = {cp.label: _per_stage(data.record(cp, data.headline), stage_metric) for cp in data.checkpoints}
            stages = list(dict.fromkeys(data.checkpoints[-1].store.meta[C.STAGE].astype(str)))
            sections.append(f"<h2 id='stages'>Per stage: {html.escape(stage_metric)}</h2>")
            sections.append(fig(F.per_stage_bars(per_stage, metric=stage_metric, stages=stages), "per-stage"))

        curve_names = [n for n in names if n in MIXING_METRICS + STAGE_METRICS] or names[:4]
        if len(data.layers) > 1:
            last = data.checkpoints[-1]
            sections.append(f"<h2 id='layers'>Metrics across layers ({html.escape(last.label)})</h2>")
            series = {n: [_entry(data.record(last, layer), n) for layer in data.layers] for n in curve_names}
            nulls = {n: _value(_entry(data.record(last, data.headline), n), "null") for n in curve_names}
            sections.append(fig(F.metric_curves(data.layers, series, x_title="layer", nulls=nulls), "vs-layer"))
        for series_name in dict.fromkeys(cp.series for cp in data.checkpoints):
            cps = [cp for cp in data.checkpoints if cp.series == series_name and cp.step is not None]
            if len(cps) > 1:
                sections.append(f"<h2 id='steps'>Metrics across training ({html.escape(series_name or 'series')}, "
                                f"layer {html.escape(data.headline)})</h2>")
                series = {n: [_entry(data.record(cp, data.headline), n) for cp in cps] for n in curve_names}
                nulls = {n: _value(_entry(data.record(cps[-1], data.headline), n), "null") for n in curve_names}
                sections.append(fig(F.metric_curves([cp.step for cp in cps], series, x_title="training step",
                                                    nulls=nulls), f"vs-step-{series_name or 'series'}"))

    sections.append("<h2 id='retrieval'>Retrieval examples (robot frame and its nearest human frames)</h2>")
    if data.examples:
        sections.append(fig(F.retrieval_examples(data.examples), "retrieval"))
    else:
        sections.append("<div class='note'>no retrieval examples</div>")
    sections.append(f"<h2 id='coverage'>Coverage gaps ({html.escape(data.checkpoints[-1].label)}, "
                    f"layer {html.escape(data.headline)})</h2>")
    sections += [f"<p>{html.escape(n)}</p>" for n in data.coverage_notes]
    if data.coverage is not None:
        sections.append("<p class='small'>share of each robot (task / stage) group's states farther from every "
                        "human sample than the human-to-human threshold</p>")
        sections.append(fig(F.coverage_bars(data.coverage, value="gap", title=""), "coverage"))
    else:
        sections.append("<div class='note'>coverage not available</div>")

    rows = [[html.escape(cp.label), html.escape(str(cp.store.path)), cp.store.fingerprint[:12], str(cp.store.n),
             html.escape(", ".join(cp.datasets))] for cp in data.checkpoints]
    sections.append("<h2>Stores</h2>" + _table(["checkpoint", "store", "fingerprint", "samples", "datasets"], rows))
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Embodiment alignment report</title>"
            f"<style>{_CSS}</style><script type='text/javascript'>{get_plotlyjs()}</script></head><body>"
            f"<h1>Embodiment alignment report</h1><p class='small'>{len(data.checkpoints)} checkpoint(s), "
            f"layers: {html.escape(', '.join(data.layers))}; generated {created}</p>"
            + "\n".join(sections) + "</body></html>")


@dataclass(frozen=True)
class ReportResult:
    """Where the report went and whether a ``--fail-under`` gate failed."""

    out: Path
    failures: tuple[dict[str, Any], ...]
    data: ReportData

    @property
    def failed(self) -> bool:
        return bool(self.failures)


def build_report(store_paths: Sequence[str | Path], out: str | Path, config: ReportConfig = ReportConfig(), *,
                 progress: bool = False) -> ReportResult:
    """Compute and write ``report.html``, ``metrics.json`` and ``summary.md`` into ``out`` atomically.

    Raises before any work on an existing ``out`` (unless ``config.overwrite``), an
    unknown ``--fail-under`` metric or a layer missing from a store. Threshold failures
    do not raise: they are in the result (and the files) for the caller to act on.
    """
    check_output_path(out, config.overwrite, what="report directory")
    data = collect(store_paths, config, progress=progress)
    page = render_html(data)
    with atomic_dir(out, overwrite=config.overwrite, what="report directory") as tmp:
        (tmp / "report.html").write_text(page, encoding="utf-8")
        (tmp / "metrics.json").write_text(json.dumps(metrics_json(data), indent=2) + "\n", encoding="utf-8")
        (tmp / "summary.md").write_text(summary_markdown(data), encoding="utf-8")
    return ReportResult(Path(out), tuple(data.failures), data)
