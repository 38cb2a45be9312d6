"""The emergence view of a diversity sweep: latent alignment and behavioural transfer per level.

Checkpoints made by ``probe world sweep`` record their pre-training ``diversity`` (and the
co-trained ones their ``transfer_gain`` on the human-only setting). For such reports this
module gives one row per (series, level) with the verdict, the mixing ratio to its null,
stage transfer, retrieval P@1 and the transfer gain, each with its 95% interval, so a
reader sees whether alignment and transfer move together.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from probe.report.assembly import ReportData
from probe.report.records import entry_value, metric_entry
from probe.report.verdicts import verdict
from probe.store.series import Checkpoint

STAGE_TRANSFER = "stage_transfer_acc_robot_to_human"
RETRIEVAL = "retrieval_precision_at_1_robot_to_human"
# curve name -> what a row holds under it
CURVES = {"mixing / null": "mixing", "stage transfer r->h": "stage_transfer", "P@1 r->h": "p_at_1",
          "transfer gain": "transfer_gain"}


def sweep_checkpoints(data: ReportData) -> list[Checkpoint]:
    """The report's checkpoints that belong to a diversity sweep (their order: series, then level)."""
    return [cp for cp in data.checkpoints if cp.diversity is not None]


def _entry(e: Mapping[str, Any] | None) -> dict[str, Any]:
    if not e:
        return {"value": None, "ci": [None, None]}
    ci = list(e.get("ci") or [None, None])
    return {"value": e.get("value"), "ci": ci}


def _mixing(record: Mapping[str, Any] | None) -> tuple[dict[str, Any], str, str]:
    v = verdict(record)
    if v.mixing_metric is None:
        return {"value": None, "ci": [None, None]}, v.status, v.sentence()
    e = metric_entry(record, v.mixing_metric)
    null = entry_value(e, "null")
    ci = e.get("ci") or [None, None]
    scaled = [c / null if c is not None and math.isfinite(null) and null > 0 else None for c in ci]
    return {"value": v.ratio, "ci": scaled, "metric": v.mixing_metric, "p": v.p}, v.status, v.sentence()


def emergence_rows(data: ReportData) -> list[dict[str, Any]]:
    """One row per sweep checkpoint at the headline layer (machine-readable; also ``metrics.json``)."""
    rows = []
    for cp in sweep_checkpoints(data):
        record = data.record(cp, data.headline)
        mixing, status, sentence = _mixing(record)
        rows.append({"series": cp.series, "level": cp.diversity, "label": cp.label, "layer": data.headline,
                     "verdict": status, "verdict_sentence": sentence, "mixing": mixing,
                     "stage_transfer": _entry(metric_entry(record, STAGE_TRANSFER)),
                     "p_at_1": _entry(metric_entry(record, RETRIEVAL)),
                     "transfer_gain": _entry(cp.found("transfer_gain")),
                     "behaviour": cp.found("behaviour")})
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
            entries = [by_level.get(level) or {"value": None, "ci": [None, None]} for level in levels]
            if any(e.get("value") is not None for e in entries):
                series[f"{name} ({s})"] = entries
    return levels, series
