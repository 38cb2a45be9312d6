"""The verdict on a checkpoint and layer: shared, partly shared, mixed but stages lost, or separate.

:data:`VERDICT_RULES` states the rules in words (they are printed in the report);
:func:`verdict` applies them to one record of the metrics suite.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from probe.measure.compare import ALPHA
from probe.report.records import metric_entry, stage_entries, null_ratio, entry_value

MIXING_METRICS = ("ilisi", "knn_embodiment_mixing", "kbet")
STAGE_METRICS = ("stage_transfer_acc_robot_to_human", "silhouette_stage")
SHARED_RATIO = 0.8
PARTLY_RATIO = 0.5
VERDICT_RULES = (
    f"mixing ratio = value / null of the first of {', '.join(MIXING_METRICS)} (null: labels shuffled = perfect "
    f"mixing); shared >= {SHARED_RATIO}, partly shared >= {PARTLY_RATIO}, separate below; below {SHARED_RATIO} "
    f"the verdict says whether the permutation test finds the space less mixed than shuffled embodiments "
    f"(p < {ALPHA}) or cannot tell (too few episodes: read the verdict as a hint)",
    f"stages conserved when {STAGE_METRICS[0]} beats its null (or {STAGE_METRICS[1]} > 0); a mixed space "
    "whose stages are not conserved is called 'mixed but stages lost', not shared",
    f"stages with a per-stage mixing ratio below {PARTLY_RATIO} are listed as not shared",
    "alignment emerges at the first training step of a series whose verdict is 'shared'",
)


@dataclass(frozen=True)
class Verdict:
    """The verdict for one checkpoint and layer, and why."""

    status: str  # shared | partly shared | mixed but stages lost | separate | unknown
    mixing_metric: str | None
    ratio: float
    stages_conserved: bool | None
    unshared_stages: tuple[str, ...] = ()
    p: float = math.nan  # the mixing metric's permutation p-value ('less mixed than shuffled embodiments')

    def sentence(self) -> str:
        if self.status == "unknown":
            return "no verdict: mixing metrics were not computed"
        text = f"{self.status} ({self.mixing_metric} at {self.ratio:.0%} of its null"
        if math.isfinite(self.p):
            text += f", p={self.p:.2g}"
            if self.ratio < SHARED_RATIO and self.p >= ALPHA:
                text += ": not significant, too few episodes to tell it from shuffled embodiments"
        if self.stages_conserved is not None:
            text += ", stages conserved" if self.stages_conserved else ", stages NOT conserved"
        text += ")"
        if self.unshared_stages:
            text += f"; not shared in stage(s): {', '.join(self.unshared_stages)}"
        return text


def status_of(ratio: float, conserved: bool | None) -> str:
    """The verdict's word for a mixing ratio (value / null) and whether stages are conserved."""
    if not math.isfinite(ratio):
        return "unknown"
    if ratio >= SHARED_RATIO:
        return "shared" if conserved is not False else "mixed but stages lost"
    return "partly shared" if ratio >= PARTLY_RATIO else "separate"


def verdict(record: Mapping[str, Any] | None) -> Verdict:
    """Apply :data:`VERDICT_RULES` to one record of the metrics suite."""
    name = next((m for m in MIXING_METRICS if math.isfinite(null_ratio(metric_entry(record, m)))), None)
    if name is None:
        return Verdict("unknown", None, math.nan, None)
    ratio = null_ratio(metric_entry(record, name))
    p = entry_value(metric_entry(record, name), "p")
    conserved: bool | None = None
    transfer = metric_entry(record, STAGE_METRICS[0])
    if math.isfinite(entry_value(transfer)) and math.isfinite(entry_value(transfer, "null")):
        ci = transfer.get("ci") or [None, None]
        lower = entry_value({"value": ci[0]}) if ci and ci[0] is not None else entry_value(transfer)
        conserved = bool((lower if math.isfinite(lower) else entry_value(transfer)) > entry_value(transfer, "null"))
    elif math.isfinite(entry_value(metric_entry(record, STAGE_METRICS[1]))):
        conserved = entry_value(metric_entry(record, STAGE_METRICS[1])) > 0
    status = status_of(ratio, conserved)
    unshared = tuple(s for s, e in stage_entries(record, name).items() if null_ratio(e) < PARTLY_RATIO)
    return Verdict(status, name, ratio, conserved, unshared, p)
