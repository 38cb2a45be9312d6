"""The report's text outputs: the verdict lines, ``metrics.json`` and the Markdown ``summary.md``.

``metrics.json`` is the machine-readable report (non-finite numbers become ``null``);
``summary.md`` is a table of the headline metrics fit to paste in a pull request.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any


from probe.atomic import plain_json
from probe.report.assembly import ReportData
from probe.report.records import metric_entry, null_ratio, entry_value, fmt
from probe.measure.suite import NOT_AVAILABLE
from probe.report.emergence import emergence_rows
from probe.report.verdicts import VERDICT_RULES, verdict
from probe.report.gates import gate_label, gate_result
from probe.measure.compare import CORRECTION


# what each interval mode's replicates do (metrics.intervals)
INTERVAL_MODES = {"refit": "each recomputes every metric, kNN graph included, on an episode subsample",
                  "reweight": "fast: per-sample values reweighted on the fixed kNN graph, so only fitted metrics "
                              "report an interval"}


def interval_sentence(settings: dict[str, Any]) -> str:
    """How the report's 95% intervals were made, in one sentence ("" when metrics were not computed), and the
    suite's default where it differs (``probe metrics`` uses it: its intervals and p-values can differ)."""
    from metrics.spec import MetricsConfig

    if not settings:
        return ""
    n, mode = settings["replicates"], settings["mode"]
    if n == 0:
        return "No intervals: computed with 0 replicates (--bootstrap 0)."
    text = (f"Intervals ({settings.get('level', 0.95):.0%}) and p-values of changes: {n} '{mode}' replicates "
            f"({INTERVAL_MODES.get(mode, mode)})")
    default = MetricsConfig()
    if (n, mode) != (default.bootstrap, default.intervals):
        text += (f"; probe metrics uses {default.bootstrap} '{default.intervals}' replicates by default, so its "
                 "intervals and p-values can differ from these")
    return text + "."


def series_verdicts(data: ReportData) -> list[str]:
    """One verdict line per series: its last checkpoint's verdict, where alignment emerges, the best-mixed layer."""
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
        measured = [layer for layer in data.layers if data.record(last, layer)]  # every layer of --detail only
        if len(measured) > 1:
            line += best_mixed_layer({layer: null_ratio(metric_entry(data.record(last, layer), v.mixing_metric or ""))
                                      for layer in measured}, v.mixing_metric or "")
        lines.append(line)
    return lines


def best_mixed_layer(ratios: dict[str, float], metric: str) -> str:
    """``"; best-mixed layer: L (45% of null)"`` from each layer's mixing ratio (value / null), at the precision
    shown: layers that round to the same best percentage tie and are all named, and when the best rounds to 0%
    no layer is named, since none mixes; "" when no layer has a ratio."""
    shown = {layer: round(100 * r) for layer, r in ratios.items() if math.isfinite(r)}
    if not shown:
        return ""
    best = max(shown.values())
    missing = [layer for layer in ratios if layer not in shown]
    if best == 0:
        every = f"every layer with a value (none in {', '.join(missing)})" if missing else "every layer"
        return f"; no layer mixes: {metric} at 0% of its null in {every}"
    top = [layer for layer, pct in shown.items() if pct == best]
    if len(top) == 1:
        return f"; best-mixed layer: {top[0]} ({best}% of null)"
    return f"; best-mixed layers: {', '.join(top)} (tied at {best}% of null)"


def metrics_json(data: ReportData) -> dict[str, Any]:
    """The machine-readable report (JSON's own types: non-finite numbers as None, see :func:`probe.atomic.plain_json`)."""
    return plain_json({
        "format": "probe-report", "version": 1,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "layers": data.layers, "headline_layer": data.headline,
        "embodiments": None if data.embodiments is None else list(data.embodiments),
        "metrics_available": data.metrics_available,
        "checkpoints": [{"label": cp.label, "store": str(cp.store.path), "fingerprint": cp.store.fingerprint,
                         "series": cp.series, "step": cp.step, "diversity": cp.diversity,
                         "datasets": list(cp.datasets), "n": cp.store.n}
                        for cp in data.checkpoints],
        "verdict": series_verdicts(data), "verdict_rules": list(VERDICT_RULES),
        "verdicts": [{"checkpoint": cp.label, "layer": layer, **vars(verdict(data.record(cp, layer)))}
                     for cp in data.checkpoints for layer in data.layers if (cp.label, layer) in data.records],
        "records": [{"checkpoint": label, **{k: v for k, v in rec.items() if k != "checkpoint"}}  # the report's label
                    for (label, _), rec in data.records.items()],
        "layouts": [{"checkpoint": label, "layer": layer, "method": l.method, "trustworthiness": l.trustworthiness,
                     "sampled": l.sampled, "n": len(l), "n_total": l.n_total, "cache_key": l.cache_key}
                    for (label, layer), l in data.layouts.items()],
        "coverage": data.coverage_summary,
        "fail_under": [c for c in data.checks if c.get("kind") == "fail-under"], "gates": data.checks,
        "failed": bool(data.failures), "notes": data.notes,
        "comparisons": data.comparisons, "comparison_correction": CORRECTION,
        "emergence": emergence_rows(data),
        "detail": data.detailed.label if data.checkpoints else None, "intervals": data.intervals or None,
    })


# what each kind of null baseline shuffles (metrics.spec.Null; metrics.suite.null_labels)
NULL_KINDS = {"embodiment": "embodiment labels shuffled", "stage": "stage labels shuffled within each task",
              "frame": "frame order shuffled within each episode"}


def null_legend(names: list[str]) -> list[str]:
    """What the null column means for each of ``names``: one phrase per kind of null, naming its metrics."""
    from metrics.suite import REGISTRY  # the suite's module registers every metric

    kinds: dict[str, list[str]] = {}
    for name in names:
        spec = REGISTRY.get(name)
        kinds.setdefault(spec.null.value if spec is not None else "none", []).append(name)
    return [f"null of {', '.join(kinds[k])}: value with {words}" for k, words in NULL_KINDS.items() if k in kinds]


def summary_markdown(data: ReportData) -> str:
    """A Markdown table of the headline metrics, fit to paste in a pull request."""
    names = data.headline_metrics()[:8] or data.metric_names()[:8]
    out = ["## Embodiment alignment report", ""]
    out += [f"- {line}" for line in series_verdicts(data)] + [""]
    if names:
        out.append("| checkpoint | layer | verdict | " + " | ".join(names) + " |")
        out.append("|---|---|---|" + "---|" * len(names))
        for cp in data.checkpoints:
            rec = data.record(cp, data.headline)
            cells = []
            for n in names:
                e = metric_entry(rec, n)
                null = entry_value(e, "null")
                cells.append(fmt(e) + (f" (null {null:.3f})" if math.isfinite(null) else ""))
            out.append(f"| {cp.label} | {data.headline} | {verdict(rec).status} | " + " | ".join(cells) + " |")
        out.append("")
        bare = [n for n in names if any(metric_entry(data.record(cp, data.headline), n).get("interval_note")
                                        for cp in data.checkpoints)]
        entries = [metric_entry(data.record(cp, data.headline), n) for cp in data.checkpoints for n in names]
        has_ci = any(fmt(e).endswith("]") for e in entries)  # as printed: a cell shows an interval
        has_null = any(math.isfinite(entry_value(e, "null")) for e in entries)
        shown = "estimate" + (" [95% interval]" if has_ci else "") + (" (null N), N the null baseline" if has_null
                                                                      else "")
        legend = null_legend(names) if has_null else []
        out.append(f"Values: {shown}" + "".join(f"; {line}" for line in legend) + ".")
        if bare:
            out.append(f"No interval for {', '.join(bare)}: not calibrated (their 'interval_note' in metrics.json "
                       "says why).")
        if data.intervals:
            out.append(interval_sentence(data.intervals))
    else:
        out.append(f"_{NOT_AVAILABLE}_")
    if data.checks:
        out += ["", "| gate | checkpoint | judged | result |", "|---|---|---|---|"]
        for c in data.checks:
            out.append(f"| {gate_label(c)} | {c['checkpoint']} | {gate_result(c)} | "
                       f"{'pass' if c['passed'] else '**FAIL**'} |")
    significant = [c for c in data.comparisons if c["significant"]]
    if data.comparisons:
        out += ["", f"Changes between consecutive checkpoints ({len(data.comparisons)} differences, Holm-Bonferroni): "
                + (", ".join(f"{c['metric']} {c['from']} -> {c['to']} {c['delta']:+.3f} ({c['direction']})"
                             for c in significant) or "none beyond noise")]
    if data.notes:
        out += [""] + [f"> note: {n}" for n in data.notes]
    return "\n".join(out) + "\n"
