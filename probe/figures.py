"""Pure figure functions: data in, ``plotly.graph_objects.Figure`` out (report and dashboard share them).

Nothing here reads files, computes layouts or metrics. Colours are consistent:
:func:`color_map` gives every category the same colour in every panel and figure
(embodiments have fixed colours: human orange, robot blue). Scatter points carry
their store row index in ``customdata`` (a plain list) so that a click maps to a row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from probe import columns as C

PALETTE: tuple[str, ...] = ("#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#EECA3B", "#B279A2",
                            "#FF9DA6", "#9D755D", "#BAB0AC", "#1B9E77", "#7570B3")
EMBODIMENT_COLORS: dict[str, str] = {C.HUMAN: "#F58518", C.ROBOT: "#1F63B5"}
NULL_COLOR = "#777777"
PROGRESS_COLORSCALE = "Viridis"  # continuous colour of in-episode progress
TEMPLATE = "plotly_white"


class ColorBy(str, Enum):
    """Which metadata column colours a scatter."""

    EMBODIMENT = C.EMBODIMENT
    STAGE = C.STAGE
    TASK = C.TASK
    PROGRESS = C.PROGRESS


def color_map(categories: Sequence[str], *, fixed: Mapping[str, str] | None = None) -> dict[str, str]:
    """A colour per category, in the given order, ``fixed`` colours first and never reused."""
    fixed = dict(fixed or {})
    free = [c for c in PALETTE if c not in fixed.values()]
    out: dict[str, str] = {}
    i = 0
    for cat in dict.fromkeys(str(c) for c in categories):
        if cat in fixed:
            out[cat] = fixed[cat]
        else:
            out[cat] = free[i % len(free)]
            i += 1
    return out


def categories(meta: pd.DataFrame | Sequence[pd.DataFrame], color_by: ColorBy | str) -> list[str]:
    """Categories of a column across one or several tables: stages in order of appearance, others sorted."""
    color_by = ColorBy(color_by)
    frames = [meta] if isinstance(meta, pd.DataFrame) else list(meta)
    values = [v for m in frames for v in m[color_by.value].astype(str).tolist()]
    if color_by is ColorBy.STAGE:
        return list(dict.fromkeys(values))
    return sorted(set(values))


def colors_for(meta: pd.DataFrame | Sequence[pd.DataFrame], color_by: ColorBy | str) -> dict[str, str]:
    """The colour map used for ``color_by`` over these tables."""
    color_by = ColorBy(color_by)
    fixed = EMBODIMENT_COLORS if color_by is ColorBy.EMBODIMENT else None
    return color_map(categories(meta, color_by), fixed=fixed)


def _hover(meta: pd.DataFrame) -> list[str]:
    return (meta[C.EMBODIMENT].astype(str) + " | " + meta[C.TASK].astype(str) + " | " + meta[C.STAGE].astype(str)
            + " | ep " + meta[C.EPISODE].astype(str) + " f " + meta[C.FRAME].astype(str)).tolist()


def _scatter_traces(coords: np.ndarray, meta: pd.DataFrame, rows: Sequence[int], color_by: ColorBy,
                    colors: Mapping[str, str] | None, marker_size: float, show_legend: bool,
                    opacity: float) -> list[go.Scattergl]:
    coords = np.asarray(coords, dtype=np.float64)
    rows = np.asarray(rows, dtype=np.int64)
    hover = np.array(_hover(meta), dtype=object)
    if color_by is ColorBy.PROGRESS:
        return [go.Scattergl(
            x=coords[:, 0].tolist(), y=coords[:, 1].tolist(), mode="markers", name="progress",
            customdata=rows.tolist(), hovertext=hover.tolist(), hoverinfo="text", showlegend=False,
            marker={"size": marker_size, "color": meta[C.PROGRESS].astype(float).tolist(),
                    "colorscale": PROGRESS_COLORSCALE, "cmin": 0.0, "cmax": 1.0, "opacity": opacity,
                    "colorbar": {"title": {"text": "progress"}, "thickness": 12} if show_legend else None},
        )]
    values = meta[color_by.value].astype(str).to_numpy()
    colors = dict(colors or colors_for(meta, color_by))
    traces = []
    for cat in list(colors) + sorted(set(values) - set(colors)):
        sel = np.flatnonzero(values == cat)
        if not len(sel):
            continue
        traces.append(go.Scattergl(
            x=coords[sel, 0].tolist(), y=coords[sel, 1].tolist(), mode="markers", name=cat, legendgroup=cat,
            showlegend=show_legend, customdata=rows[sel].tolist(), hovertext=hover[sel].tolist(), hoverinfo="text",
            marker={"size": marker_size, "color": colors.get(cat, NULL_COLOR), "opacity": opacity},
        ))
    return traces


def _hide_axes(fig: go.Figure) -> None:
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False)


def scatter(coords: np.ndarray, meta: pd.DataFrame, color_by: ColorBy | str = ColorBy.EMBODIMENT, *,
            rows: Sequence[int] | None = None, colors: Mapping[str, str] | None = None, title: str = "",
            marker_size: float = 4, opacity: float = 0.7) -> go.Figure:
    """A 2-D layout coloured by a metadata column: one WebGL trace per category (legend), or a progress scale.

    ``coords (n, 2)`` and ``meta`` (n rows) are aligned; ``rows`` are the store rows
    of the points (default ``0..n-1``), stored in each trace's ``customdata``.
    """
    color_by = ColorBy(color_by)
    rows = np.arange(len(meta)) if rows is None else rows
    fig = go.Figure(_scatter_traces(coords, meta, rows, color_by, colors, marker_size, True, opacity))
    fig.update_layout(template=TEMPLATE, title=title or None, legend={"title": {"text": color_by.value},
                      "itemsizing": "constant"}, margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 10})
    _hide_axes(fig)
    return fig


@dataclass(frozen=True)
class Panel:
    """One panel of a small-multiples figure: a layout of one checkpoint (or layer) and its caption."""

    title: str
    coords: np.ndarray
    meta: pd.DataFrame
    rows: Sequence[int] = field(default_factory=list)
    caption: str = ""


def small_multiples(panels: Sequence[Panel], color_by: ColorBy | str = ColorBy.EMBODIMENT, *, cols: int | None = None,
                    title: str = "", marker_size: float = 3, panel_height: int = 340,
                    opacity: float = 0.6) -> go.Figure:
    """One panel per checkpoint (the seed paper's figure), one shared legend and colour map.

    Each panel's ``caption`` (e.g. its metrics) is written under its title.
    """
    color_by = ColorBy(color_by)
    if not panels:
        raise ValueError("small_multiples needs at least one panel")
    cols = cols or min(len(panels), 4)
    nrows = -(-len(panels) // cols)
    titles = [f"<b>{p.title}</b>" + (f"<br><span style='font-size:11px'>{p.caption}</span>" if p.caption else "")
              for p in panels]
    fig = make_subplots(rows=nrows, cols=cols, subplot_titles=titles, horizontal_spacing=0.03,
                        vertical_spacing=0.12 if nrows > 1 else 0.05)
    colors = colors_for([p.meta for p in panels], color_by) if color_by is not ColorBy.PROGRESS else None
    for i, p in enumerate(panels):
        rows = p.rows if len(p.rows) else np.arange(len(p.meta))
        for trace in _scatter_traces(p.coords, p.meta, rows, color_by, colors, marker_size, i == 0, opacity):
            fig.add_trace(trace, row=i // cols + 1, col=i % cols + 1)
    fig.update_layout(template=TEMPLATE, title=title or None, height=panel_height * nrows + (60 if title else 30),
                      legend={"title": {"text": color_by.value}, "itemsizing": "constant"},
                      margin={"l": 10, "r": 10, "t": 90 if title else 70, "b": 10})
    fig.update_annotations(font_size=13)
    _hide_axes(fig)
    return fig


def _ci_arrays(entries: Sequence[Mapping[str, Any]]) -> tuple[list[float], list[float], list[float]]:
    values, plus, minus = [], [], []
    for e in entries:
        v = _num(e.get("value"))
        ci = e.get("ci") or [None, None]
        lo, hi = _num(ci[0]), _num(ci[1])
        values.append(v)
        plus.append(max(hi - v, 0.0) if np.isfinite(hi) and np.isfinite(v) else 0.0)
        minus.append(max(v - lo, 0.0) if np.isfinite(lo) and np.isfinite(v) else 0.0)
    return values, plus, minus


def _num(x: Any) -> float:
    try:
        return float(x) if x is not None else float("nan")
    except (TypeError, ValueError):
        return float("nan")


def _nan_to_none(values: Sequence[float]) -> list[float | None]:
    return [None if not np.isfinite(v) else float(v) for v in values]


def metric_bars(metrics: Mapping[str, Mapping[str, Any]], *, title: str = "", series: str = "") -> go.Figure:
    """Bars of metric values with 95% interval error bars and null-baseline markers.

    ``metrics`` maps a metric name to ``{"value", "ci": [lo, hi], "null"}`` (ci and
    null optional; ``null`` is the value expected when embodiments are unrelated).
    """
    names = list(metrics)
    values, plus, minus = _ci_arrays([metrics[n] for n in names])
    fig = go.Figure(go.Bar(
        x=names, y=_nan_to_none(values), name=series or "value", marker_color=PALETTE[0],
        error_y={"type": "data", "symmetric": False, "array": plus, "arrayminus": minus, "visible": True},
        hovertemplate="%{x}: %{y:.3f}<extra></extra>",
    ))
    nulls = [_num(metrics[n].get("null")) for n in names]
    if any(np.isfinite(v) for v in nulls):
        fig.add_trace(go.Scatter(x=names, y=_nan_to_none(nulls), mode="markers", name="null baseline",
                                 marker={"symbol": "line-ew-open", "size": 28, "color": NULL_COLOR,
                                         "line": {"width": 3}},
                                 hovertemplate="null %{x}: %{y:.3f}<extra></extra>"))
    fig.update_layout(template=TEMPLATE, title=title or None, yaxis_title="value", bargap=0.35,
                      margin={"l": 50, "r": 10, "t": 40 if title else 10, "b": 80})
    return fig


def per_stage_bars(per_stage: Mapping[str, Mapping[str, Mapping[str, Any]]], *, metric: str = "",
                   stages: Sequence[str] | None = None, title: str = "") -> go.Figure:
    """Grouped bars of one metric per stage, one bar series per checkpoint (or layer), with intervals.

    ``per_stage[series][stage] = {"value", "ci"}``.
    """
    order = list(stages or dict.fromkeys(s for d in per_stage.values() for s in d))
    fig = go.Figure()
    for i, (name, by_stage) in enumerate(per_stage.items()):
        entries = [by_stage.get(s, {}) for s in order]
        values, plus, minus = _ci_arrays(entries)
        fig.add_trace(go.Bar(x=order, y=_nan_to_none(values), name=name, marker_color=PALETTE[i % len(PALETTE)],
                             error_y={"type": "data", "symmetric": False, "array": plus, "arrayminus": minus}))
    fig.update_layout(template=TEMPLATE, barmode="group", title=title or None, xaxis_title="stage",
                      yaxis_title=metric, margin={"l": 50, "r": 10, "t": 40 if title else 10, "b": 40})
    return fig


def metric_curves(x: Sequence[Any], series: Mapping[str, Sequence[Mapping[str, Any]]], *, x_title: str = "",
                  y_title: str = "value", title: str = "", nulls: Mapping[str, float] | None = None,
                  changes: Mapping[str, Sequence[Mapping[str, Any] | None]] | None = None) -> go.Figure:
    """Metric against layer or training step: a line per series with a shaded 95% interval band.

    ``series[name]`` holds one ``{"value", "ci"}`` per x position; ``nulls[name]``
    draws a dotted null-baseline line; ``changes[name]`` holds, per x position, the
    comparison with the previous one (``delta``, ``ci``, ``p_holm``, ``significant``) or
    None: significant changes get a ring marker whose hover gives the paired interval.
    """
    xs = list(x)
    fig = go.Figure()
    for i, (name, entries) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        values, plus, minus = _ci_arrays(entries)
        hi = [v + p for v, p in zip(values, plus)]
        lo = [v - m for v, m in zip(values, minus)]
        ok = [j for j, v in enumerate(values) if np.isfinite(v)]
        if ok and any(p or m for p, m in zip(plus, minus)):
            band_x = [xs[j] for j in ok] + [xs[j] for j in reversed(ok)]
            band_y = [hi[j] for j in ok] + [lo[j] for j in reversed(ok)]
            fig.add_trace(go.Scatter(x=band_x, y=band_y, fill="toself", fillcolor=_alpha(color, 0.18),
                                     line={"width": 0}, hoverinfo="skip", showlegend=False, legendgroup=name,
                                     name=f"{name} 95% CI"))
        fig.add_trace(go.Scatter(x=xs, y=_nan_to_none(values), mode="lines+markers", name=name, legendgroup=name,
                                 line={"color": color}, hovertemplate=f"{name}: %{{y:.3f}} at %{{x}}<extra></extra>"))
        marks = [(j, c) for j, c in enumerate((changes or {}).get(name) or []) if c and c.get("significant")]
        marks = [(j, c) for j, c in marks if j < len(values) and np.isfinite(values[j])]
        if marks:
            fig.add_trace(go.Scatter(
                x=[xs[j] for j, _ in marks], y=[values[j] for j, _ in marks], mode="markers", legendgroup=name,
                name=f"{name}: significant change", showlegend=False,
                marker={"symbol": "circle-open", "size": 16, "line": {"width": 2, "color": color}},
                hovertext=[f"{name} changed by {c['delta']:+.3f} [{c['ci'][0]:+.3f}, {c['ci'][1]:+.3f}] since the "
                           f"previous checkpoint (Holm p={c['p_holm']:.2g})" for _, c in marks],
                hoverinfo="text"))
        null = (nulls or {}).get(name)
        if null is not None and np.isfinite(_num(null)):
            fig.add_trace(go.Scatter(x=[xs[0], xs[-1]], y=[null, null], mode="lines", name=f"{name} null",
                                     legendgroup=name, showlegend=False, hoverinfo="skip",
                                     line={"color": color, "dash": "dot", "width": 1}))
    fig.update_layout(template=TEMPLATE, title=title or None, xaxis_title=x_title, yaxis_title=y_title,
                      margin={"l": 50, "r": 10, "t": 40 if title else 10, "b": 40}, hovermode="x unified")
    return fig


def _alpha(hex_color: str, a: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{a})"


def coverage_bars(gaps: pd.DataFrame, *, value: str = "gap", label: str = "label", title: str = "",
                  top: int = 20) -> go.Figure:
    """Horizontal bars of the largest coverage gaps (e.g. robot states far from any human sample).

    ``gaps`` has a ``label`` column (task / stage / region) and a ``value`` column;
    the ``top`` largest are shown, largest first.
    """
    frame = gaps.sort_values(value, ascending=False).head(top).iloc[::-1]
    fig = go.Figure(go.Bar(x=frame[value].astype(float).tolist(), y=frame[label].astype(str).tolist(),
                           orientation="h", marker_color=EMBODIMENT_COLORS[C.ROBOT],
                           hovertemplate="%{y}: %{x:.3f}<extra></extra>"))
    fig.update_layout(template=TEMPLATE, title=title or None, xaxis_title=value,
                      height=max(220, 28 * len(frame) + 80),
                      margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 40})
    fig.update_yaxes(automargin=True)
    return fig


@dataclass(frozen=True)
class Thumb:
    """One frame in a retrieval example: a caption and an optional image (a ``data:`` URI)."""

    caption: str
    image: str | None = None
    row: int = -1


@dataclass(frozen=True)
class RetrievalExample:
    """A robot query frame and its top human matches (the report draws them as an HTML grid:
    :func:`probe.report.examples.examples_html`)."""

    query: Thumb
    matches: Sequence[Thumb]
