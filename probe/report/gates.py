"""The report's CI gates: ``--fail-under`` thresholds and ``--baseline`` / ``--max-drop`` regressions.

``--fail-under METRIC=V`` judges the estimate (``--gate value``, the default) or the
interval's pessimistic bound (``--gate bound``: the lower bound for higher-is-better
metrics, the upper for lower-is-better), so a gate on the bound passes only when the
metric is better than V beyond noise.

Both ``--gate bound`` and ``--max-drop`` need the metric's interval: on a metric that reports
none (its intervals are not calibrated, :attr:`metrics.spec.MetricSpec.uncalibrated`) they are
refused before any work (:func:`check_interval_gates`).

``--max-drop METRIC=D`` with ``--baseline OLD/metrics.json`` compares the last
checkpoint with the baseline report's last checkpoint at the headline layer: it
fails when the metric got worse by more than D beyond noise, i.e. when the whole
95% interval of the change lies beyond a worsening of D (paired when both runs
resampled the same episodes). Two runs of one checkpoint with different seeds do
not fail it; a real drop does.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from probe.errors import ConfigError
from probe.measure.compare import metric_difference
from probe.report.records import entry_value, metric_entry

GATES = ("value", "bound")


def parse_thresholds(items: Sequence[str], flag: str) -> tuple[tuple[str, float], ...]:
    """Parse ``METRIC=NUMBER`` strings of ``flag`` (``--fail-under``, ``--max-drop``) and refuse a gate that can
    never pass or never fail (:func:`check_gate_ranges`)."""
    out = read_thresholds(items, flag)
    check_gate_ranges(out if flag == "--fail-under" else (), out if flag == "--max-drop" else ())
    return out


def read_thresholds(items: Sequence[str], flag: str) -> tuple[tuple[str, float], ...]:
    """Parse ``METRIC=NUMBER`` strings of ``flag`` (``--fail-under``, ``--max-drop``) without the range check,
    for a caller that hands them to :func:`probe.report.build_report`, which checks the ranges once before any
    work (``probe report``)."""
    out = []
    for item in items:
        name, sep, value = item.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not sep or not name.strip() or not math.isfinite(number):
            raise ConfigError(f"{flag} expects METRIC=NUMBER, e.g. ilisi=0.5; got {item!r}")
        if flag == "--max-drop" and number < 0:
            raise ConfigError(f"--max-drop {name.strip()}: the allowed drop must be >= 0, got {number:g}")
        out.append((name.strip(), number))
    return tuple(out)


def _range_text(lo: float, hi: float) -> str:
    if math.isinf(hi):
        return f"[{lo:g}, inf)"
    return f"[{lo:g}, {hi:g}]"


def check_gate_ranges(fail_under: Sequence[tuple[str, float]], max_drop: Sequence[tuple[str, float]] = ()) -> None:
    """Refuse a gate that can never pass or never fail: a ``--fail-under`` threshold outside the metric's range
    (:data:`metrics.ranges.BOUNDS`), or a ``--max-drop`` larger than the range is wide. Metrics without a declared
    range, and unknown names (refused elsewhere, with suggestions), are not checked."""
    from metrics.ranges import BOUNDS

    for name, value in fail_under:
        if name not in BOUNDS or BOUNDS[name][0] <= value <= BOUNDS[name][1]:
            continue
        lo, hi = BOUNDS[name]
        never = "pass" if (value < lo) == _lower_better(name) else "fail"
        raise ConfigError(f"--fail-under {name}={value:g}: {name} lies in {_range_text(lo, hi)}, so this gate can "
                          f"never {never}; give a value in that range")
    for name, drop in max_drop:
        if name in BOUNDS and drop > BOUNDS[name][1] - BOUNDS[name][0]:
            lo, hi = BOUNDS[name]
            raise ConfigError(f"--max-drop {name}={drop:g}: {name} lies in {_range_text(lo, hi)}, so it cannot drop "
                              f"by more than {hi - lo:g} and this gate can never fail; give a drop of at most "
                              f"{hi - lo:g}")


def load_baseline(path: str | Path) -> dict[str, Any]:
    """A previous report's ``metrics.json`` (the file, or the report directory holding it)."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.json"
    if not path.is_file():
        raise ConfigError(f"--baseline '{path}' does not exist; give the metrics.json of an earlier 'probe report'")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"--baseline '{path}' cannot be read as JSON ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != "probe-report" or not isinstance(doc.get("records"), list):
        raise ConfigError(f"--baseline '{path}' is not the metrics.json of a 'probe report' (format probe-report)")
    doc["_path"] = str(path)
    return doc


def baseline_record(doc: Mapping[str, Any], layer: str) -> tuple[str, dict[str, Any]]:
    """The baseline's last checkpoint's record at ``layer`` (label, record)."""
    labels = [cp.get("label") for cp in doc.get("checkpoints", [])]
    found = {(r.get("checkpoint"), r.get("layer")): r for r in doc["records"]}
    for label in reversed(labels):
        if (label, layer) in found:
            return str(label), found[(label, layer)]
    layers = sorted({str(r.get("layer")) for r in doc["records"]})
    raise ConfigError(f"--baseline '{doc.get('_path')}' has no record of the headline layer '{layer}' "
                      f"(it has {', '.join(layers) or 'none'}); pass --headline-layer or another baseline")


def no_interval_reason(name: str) -> str:
    """Why a metric reports no interval ("" when it reports one): its intervals are not calibrated."""
    from metrics.calibration import NO_INTERVAL

    return NO_INTERVAL.get(name, "")


def check_interval_gates(fail_under: Sequence[tuple[str, float]], gate: str,
                         max_drop: Sequence[tuple[str, float]] = ()) -> None:
    """Refuse, before any work, a gate that needs an interval on a metric that reports none: ``--gate bound``
    and ``--max-drop`` judge intervals, and a metric whose intervals are not calibrated has none."""
    gated = [("--fail-under", name, "--gate bound judges the interval; gate its value (--gate value) instead")
             for name, _ in fail_under if gate == "bound"]
    gated += [("--max-drop", name, "--max-drop judges the interval of the change; use --fail-under on its value")
              for name, _ in max_drop]
    for flag, name, fix in gated:
        why = no_interval_reason(name)
        if why:
            raise ConfigError(f"{flag} {name}: {name} reports no 95% interval (not calibrated: {why}); {fix}, or "
                              "gate a metric with an interval")


def _lower_better(name: str) -> bool:
    from metrics.spec import Better
    from metrics.suite import REGISTRY  # the suite's module registers every metric

    return name in REGISTRY and REGISTRY[name].better is Better.LOWER


def undefined_reason(record: Mapping[str, Any] | None, name: str) -> str:
    """Why ``name`` has no value in ``record``, in a few words: the reason the suite's notes give
    (``"NAME: nan (REASON)"``, ``"NAME: not computed (REASON)"``), else a pointer to the notes."""
    if not record:
        return "not computed: no metrics for this store"
    if name not in (record.get("metrics") or {}):
        return "not computed on this store (not among the metrics computed)"
    for note in record.get("notes") or []:
        note = str(note)
        if note.startswith(f"{name}: "):
            rest = note[len(name) + 2:]
            found = re.fullmatch(r"(?:nan|not computed) \((.*)\)", rest)
            return f"undefined: {found.group(1) if found else rest}"
    return "undefined on this store (see the notes)"


def fail_under_checks(records: Sequence[tuple[str, str, Mapping[str, Any] | None]], layer: str,
                      fail_under: Sequence[tuple[str, float]], gate: str = "value") -> list[dict[str, Any]]:
    """One check per (threshold, checkpoint): ``records`` are ``(label, store path, record)``."""
    if gate not in GATES:
        raise ConfigError(f"--gate must be one of {', '.join(GATES)}, got {gate!r}")
    checks = []
    for name, threshold in fail_under:
        lower_better = _lower_better(name)  # "fails under" means "is worse than"
        for label, store, rec in records:
            entry = metric_entry(rec, name)
            value = entry_value(entry)
            judged = value
            if gate == "bound":
                ci = entry.get("ci") or [None, None]
                bound = ci[1] if lower_better else ci[0]
                judged = float(bound) if bound is not None else math.nan
            ok = judged <= threshold if lower_better else judged >= threshold
            why = ""  # a gate that cannot be checked fails, and says why
            if not math.isfinite(value):
                why = undefined_reason(rec, name)
            elif not math.isfinite(judged):
                why = "no 95% interval to judge (rerun with --bootstrap > 0, or gate the value: --gate value)"
            checks.append({"metric": name, "threshold": threshold, "store": store, "checkpoint": label,
                           "layer": layer, "gate": gate, "value": value if math.isfinite(value) else None,
                           "judged": judged if math.isfinite(judged) else None,
                           "better": "lower" if lower_better else "higher", "passed": bool(math.isfinite(judged) and ok),
                           "kind": "fail-under", "why": why})
    return checks


def max_drop_checks(label: str, record: Mapping[str, Any] | None, baseline: Mapping[str, Any], layer: str,
                    max_drop: Sequence[tuple[str, float]]) -> list[dict[str, Any]]:
    """One check per ``--max-drop`` metric: the last checkpoint against the baseline's."""
    base_label, base = baseline_record(baseline, layer)
    checks = []
    for name, allowed in max_drop:
        d = metric_difference(base, record or {}, name) if record else None
        lower_better = _lower_better(name)
        check = {"metric": name, "threshold": allowed, "checkpoint": label, "baseline": base_label,
                 "baseline_file": baseline.get("_path"), "layer": layer, "kind": "max-drop",
                 "better": "lower" if lower_better else "higher"}
        if d is None or not math.isfinite(d.lo):
            check.update(value=None, drop=None, drop_ci=None, passed=False,
                         why="no value with interval replicates in both runs (rerun both with --bootstrap > 0)")
        else:
            # a drop is a worsening: new - old for lower-is-better metrics, old - new otherwise
            drop, lo, hi = (d.delta, d.lo, d.hi) if lower_better else (-d.delta, -d.hi, -d.lo)
            passed = not lo > allowed  # fails only when the whole interval of the drop exceeds the allowed one
            check.update(value=entry_value(metric_entry(record, name)), drop=drop, drop_ci=[lo, hi],
                         paired=d.paired, passed=bool(passed),
                         why="" if passed else f"dropped by {drop:.4g} (95% interval {lo:.4g} to {hi:.4g}), "
                                               f"more than {allowed:g} beyond noise")
        checks.append(check)
    return checks


def gate_label(check: Mapping[str, Any]) -> str:
    """The gate as the user wrote it, e.g. ``ilisi >= 0.5 (95% bound)`` or ``ilisi drop <= 0.05 vs step-000400``."""
    if check.get("kind") == "max-drop":
        return f"{check['metric']} drop <= {check['threshold']:g} vs baseline {check['baseline']}"
    op = "<=" if check["better"] == "lower" else ">="
    return f"{check['metric']} {op} {check['threshold']:g}" + (" (95% bound)" if check.get("gate") == "bound" else "")


def gate_result(check: Mapping[str, Any]) -> str:
    """The number the gate judged, e.g. ``0.412`` or ``drop 0.08 [0.06, 0.1]``."""
    if check.get("kind") == "max-drop":
        if check.get("drop") is None:
            return "—"
        lo, hi = check["drop_ci"]
        return f"drop {check['drop']:.3f} [{lo:.3f}, {hi:.3f}]"
    judged = check.get("judged", check.get("value"))
    if judged is None:
        return f"— ({check['why']})" if check.get("why") else "—"
    return f"{judged:.3f}"


def gate_sentence(check: Mapping[str, Any]) -> str:
    """Which gate failed and why, in one line."""
    where = f"({check['checkpoint']}, layer {check['layer']})"
    if check.get("kind") == "max-drop":
        return (f"--max-drop {check['metric']}={check['threshold']:g} against {check['baseline']}: "
                f"{check.get('why') or 'failed'} {where}")
    got = gate_result(check)
    if check.get("gate") == "bound" and check.get("judged") is not None:  # the interval's bound, not the estimate
        end = "upper" if check["better"] == "lower" else "lower"
        got = f"{end} bound {got} (estimate {check['value']:.3f})"
    return f"--fail-under {gate_label(check)}: got {got} {where}"


def gate_summary(checks: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line per gate (as the user wrote it) with how many checkpoints passed it, in the order given, e.g.
    ``gate passed: clisi >= 0.8 (2 of 2 checkpoints)`` or ``gate failed: ... (1 of 2 checkpoints pass)``."""
    gates: dict[str, list[bool]] = {}
    for c in checks:
        gates.setdefault(gate_label(c), []).append(bool(c["passed"]))
    lines = []
    for label, passed in gates.items():
        n, ok = len(passed), sum(passed)
        noun = "checkpoint" if n == 1 else "checkpoints"
        lines.append(f"gate passed: {label} ({ok} of {n} {noun})" if ok == n
                     else f"gate failed: {label} ({ok} of {n} {noun} pass)")
    return lines
