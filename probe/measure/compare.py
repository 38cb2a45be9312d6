"""Checkpoint-to-checkpoint comparisons of metric records: paired differences, Holm-corrected.

``compare_records`` takes the suite's records of several stores (or a baseline's) and
gives, for each pair compared and each metric with an interval (headline metrics first), the
difference with its 95% interval, a two-sided p-value and a Holm-Bonferroni adjusted p-value over every
comparison made in that call; ``significant`` means adjusted p < 0.05. Where both
records resampled the same episodes (same data and seed) the interval is paired.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from metrics.compare import Difference, difference, holm
from metrics.spec import REGISTRY, Better, headline_metrics

ALPHA = 0.05  # the significance level of every test the toolkit reports (comparisons, verdicts)
CORRECTION = "Holm-Bonferroni over every difference compared in one call"


def replicates_of(record: Mapping[str, Any], name: str) -> tuple[np.ndarray, float] | None:
    """A metric's interval replicates and their scale from a record (None when it has none)."""
    block = record.get("replicates") or {}
    values = (block.get("values") or {}).get(name)
    if not values:
        return None
    reps = np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    return reps, float((block.get("scale") or {}).get(name, 1.0))


def metric_difference(a: Mapping[str, Any], b: Mapping[str, Any], name: str) -> Difference | None:
    """``b - a`` of one metric of two records (None when either lacks the value or its replicates)."""
    ea, eb = a.get("metrics", {}).get(name) or {}, b.get("metrics", {}).get(name) or {}
    va, vb = ea.get("value"), eb.get("value")
    ra, rb = replicates_of(a, name), replicates_of(b, name)
    if va is None or vb is None or ra is None or rb is None:
        return None
    block_a, block_b = a.get("replicates") or {}, b.get("replicates") or {}
    design_a = block_a.get("design")
    paired = bool(design_a) and design_a == block_b.get("design")
    dfs = [float(d) for d in (block_a.get("df"), block_b.get("df")) if isinstance(d, (int, float)) and d > 0]
    return difference(float(va), ra[0], ra[1], float(vb), rb[0], rb[1], paired=paired, df=min(dfs) if dfs else None)


def compare_records(pairs: Sequence[tuple[str, Mapping[str, Any], str, Mapping[str, Any]]],
                    names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Differences for ``(label_a, record_a, label_b, record_b)`` pairs, Holm-corrected together.

    ``names``: metrics to compare (default: every metric with interval replicates in both records, the
    headline metrics first; a metric whose intervals are not calibrated has none, so it is not compared).
    Returns one JSON-ready dict per (pair, metric): ``from``, ``to``, ``layer``, ``metric``,
    ``delta``, ``ci``, ``p``, ``p_holm``, ``paired``, ``better`` ("higher"/"lower"),
    ``significant`` (adjusted p < 0.05) and ``direction`` ("better", "worse" or "").
    """
    rows: list[dict[str, Any]] = []
    for label_a, a, label_b, b in pairs:
        if names is not None:
            wanted = list(names)
        else:
            both = [n for n in b.get("metrics", {})
                    if replicates_of(a, n) is not None and replicates_of(b, n) is not None]
            wanted = [n for n in headline_metrics() if n in both] + [n for n in both if n not in headline_metrics()]
        for name in wanted:
            d = metric_difference(a, b, name)
            if d is None or not math.isfinite(d.p):
                continue
            better = REGISTRY[name].better.value if name in REGISTRY else "higher"
            rows.append({"from": label_a, "to": label_b, "layer": b.get("layer"), "metric": name,
                         "delta": d.delta, "ci": [d.lo, d.hi], "p": d.p, "paired": d.paired, "better": better})
    adjusted = holm(np.array([r["p"] for r in rows]))
    for r, p in zip(rows, adjusted):
        r["p_holm"] = float(p)
        r["significant"] = bool(p < ALPHA)
        up = r["delta"] > 0
        r["direction"] = ("" if not r["significant"]
                          else "better" if up == (r["better"] == Better.HIGHER.value) else "worse")
    return rows


def consecutive(records: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> list[tuple[str, Any, str, Any]]:
    """Pairs of consecutive records of the same layer (records in store order, one label per record)."""
    by_layer: dict[Any, list[tuple[str, Mapping[str, Any]]]] = {}
    for label, rec in zip(labels, records):
        by_layer.setdefault(rec.get("layer"), []).append((label, rec))
    return [(la, a, lb, b) for seq in by_layer.values() for (la, a), (lb, b) in zip(seq, seq[1:])]


def against_first(records: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> list[tuple[str, Any, str, Any]]:
    """Pairs of each record with the first record of its layer (a baseline), in store order."""
    first: dict[Any, tuple[str, Mapping[str, Any]]] = {}
    pairs = []
    for label, rec in zip(labels, records):
        if rec.get("layer") in first:
            pairs.append((*first[rec.get("layer")], label, rec))
        else:
            first[rec.get("layer")] = (label, rec)
    return pairs
