"""The verdict on a checkpoint and layer: shared, partly shared, mixed (stages not established), or separate.

:data:`VERDICT_RULES` states the rules in words (they are printed in the report);
:func:`verdict` applies them to one record of the metrics suite.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from metrics.spec import MetricsConfig
from probe.measure.compare import ALPHA
from probe.report.records import metric_entry, stage_entries, null_ratio, entry_value

MIXING_METRICS = ("ilisi", "knn_embodiment_mixing", "kbet")
# the conservation metric with a permutation p-value (metrics.suite: headline kNN-graph metrics are tested)
STAGE_TEST = "clisi"
# stage transfer across embodiments: its null averages a few permutations (--nulls) and it has no p-value, so it
# can only withhold the claim that stages are conserved, never make it
STAGE_TRANSFER = "stage_transfer_acc_robot_to_human"
STAGE_METRICS = (STAGE_TEST, STAGE_TRANSFER, "silhouette_stage")  # drawn on the report's curves
SHARED_RATIO = 0.8
PARTLY_RATIO = 0.5
MIXED_UNESTABLISHED = "mixed, stages not established"
_NULLS = MetricsConfig().null_repeats
VERDICT_RULES = (
    f"mixing ratio = value / null of the first of {', '.join(MIXING_METRICS)} (null: labels shuffled = perfect "
    f"mixing); shared >= {SHARED_RATIO}, partly shared >= {PARTLY_RATIO}, separate below; below {SHARED_RATIO} "
    f"the verdict says whether the permutation test finds the space less mixed than shuffled embodiments "
    f"(p < {ALPHA}) or cannot tell (too few episodes: read the verdict as a hint)",
    f"stages conserved only when the permutation test of {STAGE_TEST} finds stages kept beyond shuffled stages "
    f"(p < {ALPHA}, and its 95% interval above the null where it reports one) and {STAGE_TRANSFER} is above its "
    f"null (the stages carry across embodiments; that null averages --nulls shuffles, {_NULLS} by default, and has no "
    "test, so it can withhold "
    "the claim, never make it); otherwise 'stage conservation not established' (a test that finds nothing does "
    "not show that stages are lost)",
    f"a mixed space (ratio >= {SHARED_RATIO}) is 'shared' only when its stages are conserved, otherwise "
    f"'{MIXED_UNESTABLISHED}'",
    f"stages with a per-stage mixing ratio below {PARTLY_RATIO} are listed as not shared",
    "alignment emerges at the first training step of a series whose verdict is 'shared'",
)


@dataclass(frozen=True)
class Verdict:
    """The verdict for one checkpoint and layer, and why."""

    status: str  # shared | partly shared | mixed, stages not established | separate | unknown
    mixing_metric: str | None
    ratio: float
    stages_conserved: bool | None  # True: established by the test; None: not established (never False)
    unshared_stages: tuple[str, ...] = ()
    p: float = math.nan  # the mixing metric's permutation p-value ('less mixed than shuffled embodiments')
    stage_p: float = math.nan  # STAGE_TEST's permutation p-value ('stages kept beyond shuffled stages')
    stage_evidence: str = ""  # why stages are (or are not established to be) conserved, e.g. "clisi p=0.01"

    def sentence(self) -> str:
        if self.status == "unknown":
            return "no verdict: mixing metrics were not computed"
        text = f"{self.status} ({self.mixing_metric} at {self.ratio:.0%} of its null"
        if math.isfinite(self.p):
            text += f", p={self.p:.2g}"
            if self.ratio < SHARED_RATIO and self.p >= ALPHA:
                text += ": not significant, too few episodes to tell it from shuffled embodiments"
        text += ", stages conserved" if self.stages_conserved else ", stage conservation not established"
        if self.stage_evidence:
            text += f": {self.stage_evidence}"
        text += ")"
        if self.unshared_stages:
            text += f"; not shared in stage(s): {', '.join(self.unshared_stages)}"
        return text


def status_of(ratio: float, conserved: bool | None) -> str:
    """The verdict's word for a mixing ratio (value / null) and whether stages are established as conserved."""
    if not math.isfinite(ratio):
        return "unknown"
    if ratio >= SHARED_RATIO:
        return "shared" if conserved else MIXED_UNESTABLISHED
    return "partly shared" if ratio >= PARTLY_RATIO else "separate"


def stage_conservation(record: Mapping[str, Any] | None) -> tuple[bool | None, float, str]:
    """Whether a record establishes that stages are conserved: ``(True or None, p of STAGE_TEST, why)``.

    True only when :data:`STAGE_TEST` is significantly beyond its null (permutation p < ALPHA and, where it
    reports an interval, the interval's lower end above the null) and :data:`STAGE_TRANSFER`, where computed,
    is above its null. None otherwise: the evidence is missing or not significant, which is not evidence
    that stages are lost.
    """
    test = metric_entry(record, STAGE_TEST)
    value, null, p = entry_value(test), entry_value(test, "null"), entry_value(test, "p")
    if not math.isfinite(value):
        return None, math.nan, f"{STAGE_TEST} not computed"
    if not (math.isfinite(null) and math.isfinite(p)):
        return None, math.nan, f"{STAGE_TEST} has no permutation test (computed without nulls or permutations)"
    if p >= ALPHA:
        return None, p, f"{STAGE_TEST} p={p:.2g}, not beyond shuffled stages"
    ci = test.get("ci") or [None, None]
    lower = entry_value({"value": ci[0]}) if len(ci) == 2 else math.nan
    if math.isfinite(lower) and lower <= null:
        return None, p, f"{STAGE_TEST} p={p:.2g} but its 95% interval reaches its null ({lower:.3f} <= {null:.3f})"
    transfer = metric_entry(record, STAGE_TRANSFER)
    t_value, t_null = entry_value(transfer), entry_value(transfer, "null")
    if math.isfinite(t_value) and math.isfinite(t_null) and not t_value > t_null:
        return None, p, (f"{STAGE_TEST} p={p:.2g} but stage transfer robot->human {t_value:.3f} is not above its "
                         f"null {t_null:.3f}")
    return True, p, f"{STAGE_TEST} p={p:.2g}"


def verdict(record: Mapping[str, Any] | None) -> Verdict:
    """Apply :data:`VERDICT_RULES` to one record of the metrics suite."""
    name = next((m for m in MIXING_METRICS if math.isfinite(null_ratio(metric_entry(record, m)))), None)
    if name is None:
        return Verdict("unknown", None, math.nan, None)
    ratio = null_ratio(metric_entry(record, name))
    p = entry_value(metric_entry(record, name), "p")
    conserved, stage_p, evidence = stage_conservation(record)
    status = status_of(ratio, conserved)
    unshared = tuple(s for s, e in stage_entries(record, name).items() if null_ratio(e) < PARTLY_RATIO)
    return Verdict(status, name, ratio, conserved, unshared, p, stage_p, evidence)
