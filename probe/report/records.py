"""Reading the metrics suite's records: a metric's entry, its value, null, ratio and per-stage values.

Missing or malformed values read as ``nan`` (never an exception), so a report renders
whatever subset of metrics was computed; :func:`fmt` prints ``value [lo, hi]``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def metric_entry(record: Mapping[str, Any] | None, name: str) -> dict[str, Any]:
    """A metric's entry (``value``, ``ci``, ``null``) in a record; empty when missing."""
    if not record:
        return {}
    e = record.get("metrics", {}).get(name)
    return dict(e) if isinstance(e, Mapping) else {}


def entry_value(e: Mapping[str, Any], key: str = "value") -> float:
    """A number of an entry (``value`` or ``null``) as a float; ``nan`` when missing or malformed."""
    try:
        v = float(e.get(key)) if e.get(key) is not None else math.nan
    except (TypeError, ValueError):
        return math.nan
    return v


def null_ratio(e: Mapping[str, Any]) -> float:
    """The value as a fraction of its null baseline; ``nan`` without both (or with a zero null)."""
    v, null = entry_value(e), entry_value(e, "null")
    if not (math.isfinite(v) and math.isfinite(null)) or null == 0:
        return math.nan
    return v / null


def fmt(e: Mapping[str, Any], digits: int = 3) -> str:
    """``value [lo, hi]`` or an em dash when missing."""
    v = entry_value(e)
    if not math.isfinite(v):
        return "—"
    ci = e.get("ci") or []
    if len(ci) == 2 and all(x is not None and math.isfinite(float(x)) for x in ci):
        return f"{v:.{digits}f} [{float(ci[0]):.{digits}f}, {float(ci[1]):.{digits}f}]"
    return f"{v:.{digits}f}"


def stage_entries(record: Mapping[str, Any] | None, name: str) -> dict[str, dict[str, Any]]:
    """A metric's entry per stage (stage -> entry), from a record computed per stage."""
    out = {}
    for stage, d in (record or {}).get("per_stage", {}).items():
        if isinstance(d, Mapping) and isinstance(d.get(name), Mapping):
            out[str(stage)] = dict(d[name])
        elif isinstance(d, Mapping) and isinstance(d.get("metrics"), Mapping) and name in d["metrics"]:
            out[str(stage)] = dict(d["metrics"][name])
    return out
