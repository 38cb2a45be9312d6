"""The emergence view of a diversity sweep: latent alignment and behavioural transfer per level.

Checkpoints made by ``probe world sweep`` record their pre-training ``diversity`` (and the
co-trained ones their ``transfer_gain`` on the human-only setting). For such reports this
module gives one row per (series, level) with the verdict, the mixing ratio to its null,
stage transfer, retrieval P@1 and the transfer gain, each with its 95% interval, so a
reader sees whether alignment and transfer move together.

Where a (series, level) was trained with several seeds (``probe world sweep --seed 0 1 2``), its row
holds the mean over seeds with a Student t interval across them: the training seed's spread, which a
trend over levels has to beat (the within-run intervals describe one trained model only).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from probe.report.assembly import ReportData
from probe.report.records import entry_value, metric_entry
from metrics.bootstrap import centred_interval
from metrics.ranges import BOUNDS as METRIC_BOUNDS
from probe.report.verdicts import STAGE_TRANSFER, status_of, verdict
from probe.store.series import Checkpoint

RETRIEVAL = "retrieval_precision_at_1_robot_to_human"
# curve name -> what a row holds under it
CURVES = {"mixing / null": "mixing", "stage transfer r->h": "stage_transfer", "P@1 r->h": "p_at_1",
          "transfer gain": "transfer_gain"}
# the range of each row quantity: intervals across seeds are clipped to it (mixing: a ratio to its null;
# the transfer gain 1 - error ratio)
BOUNDS = {"mixing": (0.0, math.inf), "stage_transfer": METRIC_BOUNDS[STAGE_TRANSFER],
          "p_at_1": METRIC_BOUNDS[RETRIEVAL], "transfer_gain": (-math.inf, 1.0)}


def sweep_checkpoints(data: ReportData) -> list[Checkpoint]:
    """The report's checkpoints that belong to a diversity sweep (their order: series, then level)."""
    return [cp for cp in data.checkpoints if cp.diversity is not None]


def _interval(ci: Any) -> list[float] | None:
    """``[lo, hi]`` when both ends are finite numbers, else None: no interval is ``"ci": null`` in
    ``metrics.json``, as for every metric (never ``[null, null]``)."""
    try:
        lo, hi = (float(c) for c in ci)
    except (TypeError, ValueError):  # None, a missing end, not two numbers
        return None
    return [lo, hi] if math.isfinite(lo) and math.isfinite(hi) else None


def _entry(e: Mapping[str, Any] | None) -> dict[str, Any]:
    if not e:
        return {"value": None, "ci": None}
    return {"value": e.get("value"), "ci": _interval(e.get("ci"))}


def _mixing(record: Mapping[str, Any] | None) -> tuple[dict[str, Any], str, str]:
    v = verdict(record)
    if v.mixing_metric is None:
        return {"value": None, "ci": None, "stages_conserved": None}, v.status, v.sentence()
    e = metric_entry(record, v.mixing_metric)
    null = entry_value(e, "null")
    ci = e.get("ci") or [None, None]
    scaled = [c / null if c is not None and math.isfinite(null) and null > 0 else None for c in ci]
    entry = {"value": v.ratio, "ci": _interval(scaled), "metric": v.mixing_metric, "p": v.p,
             "stages_conserved": v.stages_conserved}
    return entry, v.status, v.sentence()


def _row(data: ReportData, cp: Checkpoint) -> dict[str, Any]:
    record = data.record(cp, data.headline)
    mixing, status, sentence = _mixing(record)
    return {"series": cp.series, "level": cp.diversity, "label": cp.label, "layer": data.headline,
            "verdict": status, "verdict_sentence": sentence, "mixing": mixing,
            "stage_transfer": _entry(metric_entry(record, STAGE_TRANSFER)),
            "p_at_1": _entry(metric_entry(record, RETRIEVAL)),
            "transfer_gain": _entry(cp.found("transfer_gain")),
            "behaviour": cp.found("behaviour"), "seed": cp.seed}


def _across(entries: list[dict[str, Any]], bounds: tuple[float, float]) -> dict[str, Any]:
    """Mean of one quantity over seeds, with a Student t interval across them (the standard error of the
    mean: the seeds' spread / sqrt(n), n - 1 degrees of freedom); none where a seed lacks the value."""
    values = [e.get("value") for e in entries]
    if any(v is None or not math.isfinite(float(v)) for v in values):
        return {"value": None, "ci": None, "seeds": values}
    mean = float(np.mean(values))
    ci = centred_interval(np.asarray(values, dtype=np.float64), mean, scale=1 / math.sqrt(len(values)),
                          bounds=bounds)
    return {"value": mean, "ci": _interval([ci.lo, ci.hi]), "seeds": values,
            "interval": f"Student t across {len(values)} training seeds (their spread, not one model's)"}


def _over_seeds(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One row for a (series, level) trained with several seeds: means and intervals across them, and the
    verdict's rules applied to the mean mixing ratio (stages conserved only if established in every seed)."""
    first = rows[0]
    out = {k: first[k] for k in ("series", "level", "layer")}
    out["label"] = f"{first['series']} diversity {first['level']:g}%"
    out["seeds"] = [r["seed"] for r in rows]
    for key, bounds in BOUNDS.items():
        out[key] = _across([r[key] for r in rows], bounds)
    conserved = [r["mixing"].get("stages_conserved") for r in rows]
    ratio = out["mixing"]["value"]
    status = status_of(math.nan if ratio is None else ratio, True if all(c is True for c in conserved) else None)
    out["verdict"] = status
    statuses = [r["verdict"] for r in rows]
    metric = first["mixing"].get("metric", "mixing")
    ci = out["mixing"]["ci"]
    interval = f" [{ci[0]:.0%}, {ci[1]:.0%}]" if ci else ""
    where = f"{metric} at {ratio:.0%} of its null{interval}, " if ratio is not None else ""
    out["verdict_sentence"] = (f"{status} (mean of {len(rows)} training seeds: {where}per seed: "
                               f"{', '.join(statuses)})")
    out["behaviour"] = [r["behaviour"] for r in rows]
    return out


def emergence_rows(data: ReportData) -> list[dict[str, Any]]:
    """One row per (series, level) at the headline layer, over seeds where several were trained
    (machine-readable; also ``metrics.json``)."""
    groups: dict[tuple[str, float], list[Checkpoint]] = {}
    for cp in sweep_checkpoints(data):
        groups.setdefault((cp.series, cp.diversity), []).append(cp)
    rows = []
    for cps in groups.values():
        per_seed = [_row(data, cp) for cp in sorted(cps, key=lambda c: (c.seed is None, c.seed or 0))]
        rows.append(per_seed[0] if len(per_seed) == 1 else _over_seeds(per_seed))
    return rows


def _fmt(e: Mapping[str, Any], pct: bool = False) -> str:
    v = e.get("value")
    if v is None or not math.isfinite(float(v)):
        return "-"
    f = "{:.0%}".format if pct else "{:.2f}".format
    lo, hi = (e.get("ci") or [None, None])[:2]
    return f(float(v)) + (f" [{f(float(lo))}, {f(float(hi))}]" if lo is not None and hi is not None else "")


def emergence_table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Header and text cells of the per-level table."""
    header = ["series", "diversity", "verdict", "mixing / null", "stage transfer r->h", "P@1 r->h",
              "transfer gain (behaviour)"]
    cells = [[r["series"], f"{r['level']:g}%", r["verdict"], _fmt(r["mixing"], pct=True), _fmt(r["stage_transfer"]),
              _fmt(r["p_at_1"]), _fmt(r["transfer_gain"])] for r in rows]
    return header, cells


def emergence_curves(rows: list[dict[str, Any]]) -> tuple[list[float], dict[str, list[dict[str, Any]]]]:
    """x (levels) and ``{curve (series): [entry per level]}`` for :func:`probe.figures.metric_curves`."""
    levels = sorted({r["level"] for r in rows})
    series: dict[str, list[dict[str, Any]]] = {}
    for name, key in CURVES.items():
        for s in dict.fromkeys(r["series"] for r in rows):
            by_level = {r["level"]: r[key] for r in rows if r["series"] == s}
            entries = [by_level.get(level) or {"value": None, "ci": None} for level in levels]
            if any(e.get("value") is not None for e in entries):
                series[f"{name} ({s})"] = entries
    return levels, series
