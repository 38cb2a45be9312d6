"""The demo's closing verdict: did a shared space emerge across pre-training diversity?

Read from the report's own ``metrics.json`` (its ``emergence`` rows and ``intervals``), never
written by hand: one line per diversity level with the verdict and mixing ratio to the null of
the co-trained and the robot-only checkpoint and the co-trained transfer gain with its interval,
then one conclusion derived from those values by :func:`conclusion`'s rule.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from probe.report.summary import interval_sentence
from probe.report.verdicts import PARTLY_RATIO

DOC = "docs/world-diversity.md"
SERIES = ("cotrained", "robot-only")


def _ratio(row: Mapping[str, Any] | None) -> float | None:
    value = ((row or {}).get("mixing") or {}).get("value")
    return float(value) if value is not None and math.isfinite(float(value)) else None


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _gain(row: Mapping[str, Any] | None) -> str:
    entry = (row or {}).get("transfer_gain") or {}
    value, ci = entry.get("value"), entry.get("ci") or [None, None]
    if value is None:
        return "-"
    if ci[0] is None or ci[1] is None:
        return f"{value:+.2f}"
    return f"{value:+.2f} [{ci[0]:+.2f}, {ci[1]:+.2f}]"


def _levels(rows: Sequence[Mapping[str, Any]]) -> list[float]:
    return sorted({float(r["level"]) for r in rows})


def _by(rows: Sequence[Mapping[str, Any]], series: str) -> dict[float, Mapping[str, Any]]:
    return {float(r["level"]): r for r in rows if r["series"] == series}


def level_line(level: float, rows: Sequence[Mapping[str, Any]]) -> str:
    """``diversity 25%: cotrained separate (ilisi 3% of null), robot-only ...; transfer gain +0.08 [+0.03, +0.13]``."""
    parts = []
    for series in SERIES:
        row = _by(rows, series).get(level)
        if row is None:
            continue
        metric = (row.get("mixing") or {}).get("metric") or "mixing"
        parts.append(f"{series} {row['verdict']} ({metric} {_pct(_ratio(row))} of null)")
    gain = _by(rows, "cotrained").get(level)
    return f"diversity {level:g}%: {', '.join(parts)}; transfer gain {_gain(gain)}"


def conclusion(rows: Sequence[Mapping[str, Any]]) -> str:
    """One sentence from the rows by a rule: does any co-trained level reach 'partly shared' (mixing >= PARTLY_RATIO
    of its null), does co-trained mixing rise at every step of diversity, and where is the transfer gain's interval
    above zero. A shared space emerges only when both hold."""
    cot = _by(rows, "cotrained")
    levels = sorted(cot)
    ratios = [_ratio(cot[level]) for level in levels]
    known = [(level, r) for level, r in zip(levels, ratios) if r is not None]
    if not known:
        return f"conclusion: no mixing ratio was computed, so the toolkit cannot say; see {DOC}"
    reached = [level for level, r in known if r >= PARTLY_RATIO]
    rising = len(known) == len(levels) > 1 and all(b > a for (_, a), (_, b) in zip(known, known[1:]))
    curve = ", ".join(f"{_pct(r)} at {level:g}%" for level, r in known)
    best_level, best = max(known, key=lambda lr: lr[1])
    partly = f"'partly shared' (>= {PARTLY_RATIO:.0%} of null)"
    if reached and rising:
        text = (f"a shared space emerges with diversity: co-trained mixing rises at every level ({curve}) and "
                f"reaches {partly} from {reached[0]:g}%")
    elif reached:
        text = (f"no clear emergence: co-trained mixing reaches {partly} at {', '.join(f'{x:g}%' for x in reached)} "
                f"but does not rise steadily with diversity ({curve})")
    elif rising:
        text = (f"no shared space yet: co-trained mixing rises with diversity ({curve}) but no level reaches "
                f"{partly}")
    else:
        text = (f"the effect does not emerge on this world: no co-trained level reaches {partly}; highest "
                f"{_pct(best)} at {best_level:g}%, and mixing does not rise steadily with diversity ({curve})")
    above = [level for level in levels
             if ((cot[level].get("transfer_gain") or {}).get("ci") or [None])[0] is not None
             and cot[level]["transfer_gain"]["ci"][0] > 0]
    text += f"; transfer gain above 0 beyond noise at {', '.join(f'{x:g}%' for x in above) or 'no level'}"
    return f"conclusion: {text}; see {DOC}"


def verdict_lines(report: Mapping[str, Any]) -> list[str]:
    """The demo's closing block from a report's ``metrics.json`` (``[]`` when it has no emergence rows)."""
    rows = report.get("emergence") or []
    if not rows:
        return []
    layer = rows[0].get("layer") or report.get("headline_layer")
    lines = [f"verdict at {layer} (the report's emergence rows: mixing = the verdict's mixing metric / its null)"]
    lines += [f"  {level_line(level, rows)}" for level in _levels(rows)]
    lines.append(f"  {conclusion(rows)}")
    note = interval_sentence(report.get("intervals") or {})
    if note:
        lines.append(f"  note: {note}")
    return lines
