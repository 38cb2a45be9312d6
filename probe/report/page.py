"""The report page: one self-contained HTML file with plotly.js inlined once and no network requests.

Sections: verdict and gates, UMAP layouts per checkpoint (and per layer), headline
metrics with intervals and nulls, per-stage values, metrics across layers and training
steps, retrieval examples, coverage gaps and the stores used.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from metrics.notes import group_notes
from probe import columns as C
from probe import figures as F
from probe.report.assembly import ReportData
from probe.report.examples import examples_html
from probe.report.emergence import emergence_curves, emergence_rows, emergence_table, sweep_checkpoints
from probe.store.series import Checkpoint
from probe.report.records import metric_entry, stage_entries, entry_value, fmt
from probe.measure.suite import NOT_AVAILABLE
from probe.report.gates import gate_label, gate_result
from probe.report.summary import interval_sentence, series_verdicts
from probe.report.verdicts import MIXING_METRICS, STAGE_METRICS, STAGE_TRANSFER, VERDICT_RULES, verdict

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

NULL_NOTE = ("null: the value with labels shuffled between whole (episode, stage) runs: embodiment labels within "
             "each stage for mixing, paired and distribution metrics, stage labels within each task for "
             "conservation and retrieval, and frame order within each episode for temporal metrics. It is what a space that mixes embodiments perfectly (or keeps no stage "
             "structure) scores. Mixing nulls sit below the metric's ideal value (in the built-in demo, about 0.8 "
             "rather than 1 for kNN mixing) because a frame's nearest neighbours are mostly frames of its own run, "
             "which keep one label after the shuffle; so mixing is read as a fraction of its null.")


def _interval_methods(record: Mapping[str, Any], names: Sequence[str], settings: Mapping[str, Any]) -> str:
    """How many replicates of which mode made the intervals, which method made each headline metric's interval,
    and what the p-values test."""
    by_method: dict[str, list[str]] = {}
    for n in names:
        method = metric_entry(record, n).get("interval")
        if method:
            by_method.setdefault(str(method), []).append(n)
    items = [f"<li>{html.escape(', '.join(ms))}: {html.escape(m)}</li>" for m, ms in by_method.items()]
    items += [f"<li>{html.escape(n)}: no interval ({html.escape(str(metric_entry(record, n)['interval_note']))})</li>"
              for n in names if metric_entry(record, n).get("interval_note") and not metric_entry(record, n).get("ci")]
    tested = [n for n in names if math.isfinite(entry_value(metric_entry(record, n), "p"))]
    if tested:
        items.append(f"<li>p: permutation p-value of {html.escape(', '.join(tested))} against its null (mixing: "
                     "less mixed than shuffled embodiments; conservation: stages kept beyond shuffled stages)</li>")
    how = f"<p class='small'>{html.escape(interval_sentence(dict(settings)))}</p>" if settings else ""
    return how + (f"<p class='small'>95% intervals, centred on each estimate:</p><ul class='small'>{''.join(items)}"
                  "</ul>" if items else "")


def _changes_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Differences between consecutive checkpoints (ringed on the curves where significant)."""
    if not rows:
        return ""
    cells = [[html.escape(f"{r['from']} → {r['to']}"), html.escape(r["metric"]),
              f"{r['delta']:+.3f} [{r['ci'][0]:+.3f}, {r['ci'][1]:+.3f}]", f"{r['p_holm']:.2g}",
              "paired" if r["paired"] else "independent",
              f"<span class='{'pass' if r['direction'] == 'better' else 'fail'}'>{r['direction']}</span>"
              if r["significant"] else "within noise"] for r in rows]
    return ("<details><summary>changes between consecutive checkpoints (95% intervals, paired where the stores "
            "share data; Holm-Bonferroni over every difference in the report)</summary>"
            + _table(["checkpoints", "metric", "difference", "p (Holm)", "interval", "change"], cells) + "</details>")


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
        parts.append(f"{v.mixing_metric} {entry_value(metric_entry(rec, v.mixing_metric)):.2f} ({v.ratio:.0%} of null)")
    st = metric_entry(rec, STAGE_TRANSFER)
    if math.isfinite(entry_value(st)):
        parts.append(f"stage transfer {entry_value(st):.2f}")
    layout = data.layouts.get((cp.label, layer))
    if layout is not None:
        parts.append(f"trust {layout.trustworthiness:.2f}")
    return " · ".join(parts)


def _emergence(data: ReportData, fig: Any) -> list[str]:
    """The diversity sweep's section: per-level table, emergence curves, lowest and highest level's UMAPs."""
    rows = emergence_rows(data)
    if not rows:
        return []
    out = [f"<h2 id='emergence'>Emergence across pre-training diversity (layer {html.escape(data.headline)})</h2>",
           "<p class='small'>Each level pre-trains on that share of the robot mixture (same episodes and steps at "
           "every level), then fine-tunes with human data (cotrained) or without (robot-only). Mixing / null is the "
           "verdict's mixing metric over its shuffled-embodiment null (1 = mixed as by chance); the transfer gain "
           "is the relative reduction of the robot's effector-trajectory error on the human-only setting that human "
           "data brings (paired over held-out episodes). 95% intervals in brackets; where a level was trained with "
           "several seeds, its values are means over seeds with intervals across them (the seeds' spread, which a "
           "trend over levels has to beat).</p>"]
    header, cells = emergence_table(rows)
    out.append(_table(header, [[html.escape(c) for c in row] for row in cells]))
    levels, curves = emergence_curves(rows)
    if len(levels) > 1:
        out.append(fig(F.metric_curves(levels, curves, x_title="pre-training diversity (% of the mixture)",
                                       y_title="value"), "emergence"))
    cot = [cp for cp in sweep_checkpoints(data) if cp.series == "cotrained"]
    first_seed = min((cp.seed for cp in cot if cp.seed is not None), default=None)
    cot = [cp for cp in cot if cp.seed == first_seed] or cot  # one seed's lowest and highest level
    ends = [cot[0], cot[-1]] if len(cot) > 1 else []
    if ends:
        panels = []
        for cp in ends:
            layout = data.layouts[(cp.label, data.headline)]
            meta = cp.store.meta.iloc[layout.rows].reset_index(drop=True)
            panels.append(F.Panel(cp.label, layout.coords, meta, layout.rows.tolist(),
                                  _panel_caption(data, cp, data.headline)))
        out.append("<h3>Lowest and highest diversity side by side</h3>")
        out.append(fig(F.small_multiples(panels, F.ColorBy.EMBODIMENT, cols=2), "emergence-umaps"))
    return out


def render_html(data: ReportData) -> str:
    """The self-contained report page (plotly.js inlined once; no network requests)."""
    from plotly.offline import get_plotlyjs

    sections: list[str] = []
    fig_no = [0]

    def fig(figure: Any, name: str) -> str:
        fig_no[0] += 1
        return _figure_html(figure, f"fig-{fig_no[0]}-{name}")

    verdict_items = "".join(f"<li>{html.escape(line)}</li>" for line in series_verdicts(data))
    sections.append(f"<div class='verdict'><b>Verdict</b><ul>{verdict_items}</ul>"
                    "<details><summary class='small'>how the verdict is derived</summary><ul class='small'>"
                    + "".join(f"<li>{html.escape(r)}</li>" for r in VERDICT_RULES) + "</ul></details></div>")
    sections += [f"<div class='note'>{html.escape(n)}</div>" for n in data.notes]
    if data.checks:
        rows = [[html.escape(gate_label(c)), html.escape(c["checkpoint"]), html.escape(gate_result(c)),
                 "<span class='pass'>pass</span>" if c["passed"] else "<span class='fail'>FAIL</span>"]
                for c in data.checks]
        sections.append("<h2>Gates</h2>" + _table(["gate", "checkpoint", "judged", "result"], rows))

    sections += _emergence(data, fig)
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
        last = data.detailed
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
            cells = []
            for n in names:
                null, p = entry_value(metric_entry(rec, n), "null"), entry_value(metric_entry(rec, n), "p")
                small = " · ".join(([f"null {null:.3f}"] if math.isfinite(null) else [])
                                   + ([f"p {p:.2g}"] if math.isfinite(p) else []))
                cells.append(html.escape(fmt(metric_entry(rec, n)))
                             + (f"<br><span class='small'>{small}</span>" if small else ""))
            rows.append([html.escape(cp.label)] + cells)
        sections.append(_table(["checkpoint"] + names, rows))
        sections.append(f"<p class='small'>{html.escape(NULL_NOTE)}</p>")
        last = data.detailed
        rec = data.record(last, data.headline) or {}
        sections.append(_interval_methods(rec, names, data.intervals))
        sections.append(fig(F.metric_bars({n: metric_entry(rec, n) for n in names if metric_entry(rec, n)},
                                          title=f"{last.label}, layer {data.headline}"), "metric-bars"))
        for note in group_notes(list(rec.get("notes", []))):  # one line per reason on undefined metrics
            sections.append(f"<div class='note'>{html.escape(str(note))}</div>")

        stage_metric = next((m for m in MIXING_METRICS if any(stage_entries(data.record(cp, data.headline), m)
                                                              for cp in data.checkpoints)), None)
        if stage_metric:
            per_stage = {cp.label: stage_entries(data.record(cp, data.headline), stage_metric)
                         for cp in data.checkpoints}
            stages = list(dict.fromkeys(data.detailed.store.meta[C.STAGE].astype(str)))
            sections.append(f"<h2 id='stages'>Per stage: {html.escape(stage_metric)}</h2>")
            sections.append(fig(F.per_stage_bars(per_stage, metric=stage_metric, stages=stages), "per-stage"))

        curve_names = [n for n in names if n in MIXING_METRICS + STAGE_METRICS] or names[:4]
        if len(data.layers) > 1:
            last = data.detailed
            sections.append(f"<h2 id='layers'>Metrics across layers ({html.escape(last.label)})</h2>")
            series = {n: [metric_entry(data.record(last, layer), n) for layer in data.layers] for n in curve_names}
            nulls = {n: entry_value(metric_entry(data.record(last, data.headline), n), "null") for n in curve_names}
            sections.append(fig(F.metric_curves(data.layers, series, x_title="layer", nulls=nulls), "vs-layer"))
        for series_name in dict.fromkeys(cp.series for cp in data.checkpoints):
            cps = [cp for cp in data.checkpoints if cp.series == series_name and cp.x is not None]
            if len(cps) > 1:
                across = "pre-training diversity" if cps[0].diversity is not None else "training"
                sections.append(f"<h2 id='steps'>Metrics across {across} ({html.escape(series_name or 'series')}, "
                                f"layer {html.escape(data.headline)})</h2>")
                series = {n: [metric_entry(data.record(cp, data.headline), n) for cp in cps] for n in curve_names}
                nulls = {n: entry_value(metric_entry(data.record(cps[-1], data.headline), n), "null")
                         for n in curve_names}
                found = {(c["to"], c["metric"]): c for c in data.comparisons}
                changes = {n: [found.get((cp.label, n)) for cp in cps] for n in curve_names}
                sections.append(fig(F.metric_curves([cp.x for cp in cps], series, x_title=cps[0].axis,
                                                    nulls=nulls, changes=changes),
                                    f"vs-step-{series_name or 'series'}"))
                sections.append(_changes_table([c for c in data.comparisons
                                                if c["to"] in {cp.label for cp in cps}]))

    sections.append(f"<h2 id='retrieval'>Retrieval examples ({html.escape(data.detailed.label)}, layer "
                    f"{html.escape(data.headline)}: robot frame and its nearest human clips, one per episode)</h2>")
    sections.append(examples_html(data.examples))
    sections.append(f"<h2 id='coverage'>Coverage gaps ({html.escape(data.detailed.label)}, "
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
    detailed = (f"; every layer measured for {html.escape(data.detailed.label)} (--detail)" if len(data.layers) > 1
                else "")
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Embodiment alignment report</title>"
            f"<style>{_CSS}</style><script type='text/javascript'>{get_plotlyjs()}</script></head><body>"
            f"<h1>Embodiment alignment report</h1><p class='small'>{len(data.checkpoints)} checkpoint(s), "
            f"layers: {html.escape(', '.join(data.layers))}{detailed}; generated {created}</p>"
            + "\n".join(sections) + "</body></html>")
