"""The page: controls, the joint map with its legend and small multiples, side panels, selection table.

Layout functions are pure: they take prepared data or plain values and return Dash components.
"""

from __future__ import annotations

from typing import Any

from dash import dcc, html

from dashboard import ids
from dashboard.figures import CLIP_COLOR
from dashboard.media import media_url, thumb_url
from dashboard.state.viewstate import MAX_PANELS, ColorBy
from dashboard.state.metrics_panel import STAGE_FAMILIES, stage_columns
from dashboard.state.prepared import Clip, Prepared

CSS = {
    "page": {"fontFamily": "system-ui, -apple-system, Segoe UI, sans-serif", "fontSize": "13px",
             "margin": "0 12px", "color": "#222"},
    "bar": {"display": "flex", "flexWrap": "wrap", "gap": "10px", "alignItems": "end", "padding": "6px 0"},
    "control": {"minWidth": "150px"},
    "label": {"fontSize": "11px", "color": "#666", "display": "block"},
    "main": {"display": "grid", "gridTemplateColumns": "minmax(0, 1fr) 420px", "gap": "12px"},
    "card": {"border": "1px solid #ddd", "borderRadius": "6px", "padding": "8px", "marginBottom": "8px",
             "background": "#fff"},
    "h": {"margin": "0 0 6px 0", "fontSize": "14px"},
}


def _control(label: str, component: Any, width: str = "170px") -> html.Div:
    return html.Div([html.Label(label, style=CSS["label"]), component], style={**CSS["control"], "width": width})


def _dropdown(id_: str, options: list[str], multi: bool = False, placeholder: str = "all") -> dcc.Dropdown:
    return dcc.Dropdown(id=id_, options=[{"label": o, "value": o} for o in options], multi=multi,
                        clearable=multi, placeholder=placeholder, style={"fontSize": "12px"})


def controls(prepared: Prepared) -> html.Div:
    """Checkpoint, layer, colour, comparison and filters (values are set from the URL on load)."""
    cats = prepared.categories
    return html.Div([
        _control("checkpoint", _dropdown(ids.STORE, prepared.names), "200px"),
        _control("layer", _dropdown(ids.LAYER, prepared.layers), "180px"),
        _control("colour by", dcc.RadioItems(id=ids.COLOR, options=[c.value for c in ColorBy], inline=True,
                                             inputStyle={"marginRight": "3px"},
                                             labelStyle={"marginRight": "8px"}), "430px"),
        _control("task", _dropdown(ids.TASK, cats["task"], multi=True)),
        _control("stage", _dropdown(ids.STAGE, cats["stage"], multi=True)),
        _control("embodiment", _dropdown(ids.EMBODIMENT, cats["embodiment"], multi=True)),
        _control("episode", _dropdown(ids.EPISODE, cats["episode"], multi=True), "200px"),
        _control(f"compare checkpoints (max {MAX_PANELS})",
                 _dropdown(ids.COMPARE, prepared.names, multi=True, placeholder="none"), "240px"),
        html.Button("clear", id=ids.CLEAR, n_clicks=0, title="clear filters and selected point"),
    ], style=CSS["bar"])


def page(prepared: Prepared) -> html.Div:
    """The whole page."""
    panels = [dcc.Graph(id=f"{ids.PANEL}-{i}", figure={"data": [], "layout": {"height": 10}},
                        config={"displayModeBar": False}, style={"display": "none", "flex": "1 1 0"})
              for i in range(MAX_PANELS)]
    return html.Div([
        dcc.Location(id=ids.URL, refresh=False),
        dcc.Store(id=ids.STATE),
        dcc.Store(id=ids.DRAWN),
        dcc.Store(id=ids.PANELS_DRAWN),
        dcc.Store(id=ids.SELECTION),
        dcc.Store(id=ids.METRICS_KEY),
        dcc.Store(id=ids.NEIGHBOURS_KEY),
        dcc.Download(id=ids.DOWNLOAD),
        html.H3("embodiment probe: the shared human / robot embedding space", style={"margin": "8px 0 0 0"}),
        controls(prepared),
        html.Div(id=ids.NOTICE, style={"color": "#a15c00", "fontSize": "12px"}),
        html.Div(preparing(prepared.views.ready(), len(prepared.views)), id=ids.PREPARING,
                 style={"color": "#555", "fontSize": "12px"}),
        dcc.Interval(id=ids.PREPARING_TICK, interval=2000, disabled=prepared.views.ready() >= len(prepared.views)),
        html.Div([
            html.Div([
                html.Div(id=ids.MAP_INFO, style={"fontSize": "12px", "color": "#555"}),
                html.Div(id=ids.LEGEND, style={"display": "flex", "flexWrap": "wrap", "gap": "10px",
                                               "fontSize": "12px", "margin": "4px 0"}),
                dcc.Graph(id=ids.MAP, config={"displaylogo": False, "scrollZoom": True,
                                              "modeBarButtonsToAdd": ["lasso2d", "select2d"]},
                          clear_on_unhover=True, style={"height": "620px"}),
                html.Div(panels, id=ids.PANELS, style={"display": "flex", "gap": "6px"}),
                html.Div([html.H4("selection (lasso or box on the map)", style=CSS["h"]),
                          html.Button("download CSV", id=ids.CSV_BUTTON, n_clicks=0),
                          html.Div(id=ids.SELECTION_TABLE)], style=CSS["card"]),
            ]),
            html.Div([
                html.Div(id=ids.HOVER, style={**CSS["card"], "minHeight": "60px"}),
                html.Div(id=ids.NEIGHBOURS, style=CSS["card"]),
                html.Div(id=ids.METRICS, style=CSS["card"]),
            ]),
        ], style=CSS["main"]),
    ], style=CSS["page"])


def preparing(ready: int, total: int, error: str | None = None) -> str:
    """The line saying how many maps are prepared while the others are prepared in the background."""
    if error:
        return f"{error} (that map is tried again when you open it)"
    if ready >= total:
        return ""
    return (f"preparing maps in the background: {ready} of {total} (checkpoint x layer) ready; "
            "a map not ready yet is prepared when you open it")


def legend(items: list[tuple[str, str]], continuous: tuple[str, str] | None, note: str = "") -> list[Any]:
    """HTML legend: colour swatches (or a gradient) and a note."""
    out: list[Any] = []
    if continuous is not None:
        out.append(html.Span([continuous[0], html.Span(style={
            "display": "inline-block", "width": "120px", "height": "10px", "margin": "0 6px",
            "background": "linear-gradient(to right, #440154, #3b528b, #21918c, #5ec962, #fde725)"}),
            continuous[1]]))
    for label, color in items:
        out.append(html.Span([html.Span(style={"display": "inline-block", "width": "10px", "height": "10px",
                                                "borderRadius": "50%", "background": color,
                                                "marginRight": "4px"}), label], className="legend-item"))
    if note:
        out.append(html.Span(note, style={"color": "#777"}))
    return out


def hover_card(labels: dict[str, Any], thumb: str | None) -> list[Any]:
    """The hovered point: its frame (if the store has video) and its labels."""
    rows = [html.Tr([html.Td(k, style={"color": "#777", "paddingRight": "8px"}), html.Td(str(v))])
            for k, v in labels.items()]
    out: list[Any] = []
    if thumb:
        out.append(html.Img(src=thumb, id="hover-thumb", style={"width": "192px", "float": "right"}))
    out.append(html.Table(rows, style={"fontSize": "12px"}))
    return out


def clip_card(checkpoint: int, clip: Clip, highlighted: bool) -> html.Div:
    """One nearest human clip: thumbnail, score, stage, a playable clip and a highlight button."""
    video = None
    if clip.video_token is not None:
        video = html.Video(src=media_url(clip.video_token, clip.video_start, clip.video_end), controls=True,
                           muted=True, preload="metadata", className="clip-video",
                           style={"width": "100%", "maxHeight": "96px", "background": "#000"})
    thumb = html.Img(src=thumb_url(checkpoint, clip.row), style={"width": "96px", "float": "right"}) \
        if clip.video_token is not None else None
    return html.Div([
        thumb,
        html.Div([html.B(f"{clip.score:.3f}"), f"  {clip.stage}  ·  {clip.task}"]),
        html.Div(f"episode {clip.episode}, {clip.start:.2f}-{clip.end:.2f} s", style={"color": "#666"}),
        html.Button("highlighted" if highlighted else "show trajectory",
                    id={"type": ids.CLIP, "index": clip.sample_id}, n_clicks=0,
                    style={"fontSize": "11px", "fontWeight": "bold" if highlighted else "normal"}),
        video,
    ], className="clip", style={**CSS["card"], "overflow": "hidden",
                                "borderColor": CLIP_COLOR if highlighted else "#ddd",
                                "borderWidth": "2px" if highlighted else "1px"})


def _fmt(v: Any) -> str:
    return "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))


def _metric_rows(metrics: dict[str, Any], names: list[str]) -> list[Any]:
    from probe.measure.suite import better_arrow

    rows = [html.Tr([html.Th("metric"), html.Th("value"), html.Th("95% CI"), html.Th("null")])]
    for name in names:
        m = metrics.get(name) or {}
        ci = m.get("ci")
        rows.append(html.Tr([html.Td(f"{name} {better_arrow(name)}"), html.Td(_fmt(m.get("value"))),
                             html.Td("-" if not ci else f"{ci[0]:.3f} - {ci[1]:.3f}"),
                             html.Td(_fmt(m.get("null")))]))
    return rows


def metrics_panel(record: dict[str, Any] | None, gaps: list[str], active_stages: tuple[str, ...],
                  note: str = "", headline: tuple[str, ...] = ()) -> list[Any]:
    """Headline metrics with intervals, per-stage values (click a stage to highlight it) and coverage gaps.

    ``headline``: the headline metrics in order (:func:`dashboard.state.metrics_panel.headline_order`); the
    record's headline metrics are listed, and the per-stage table shows :func:`stage_columns` of them.
    """
    out: list[Any] = [html.H4("metrics", style=CSS["h"])]
    if note:
        out.append(html.Div(note, style={"fontSize": "11px", "color": "#777"}))
    metrics = (record or {}).get("metrics") or {}
    if not metrics:
        reason = (record or {}).get("error", "no metrics for this layer")
        out.append(html.Div(reason, style={"color": "#a15c00"}))
    else:
        names = [n for n in headline if n in metrics] or list(metrics)[:6]
        small = {"fontSize": "12px", "width": "100%"}
        out.append(html.Table(_metric_rows(metrics, names), id="metrics-headline", style=small))
        out.append(html.Details([html.Summary(f"all {len(metrics)} metrics"),
                                 html.Table(_metric_rows(metrics, list(metrics)), style=small)]))
        per_stage = record.get("per_stage") or {}
        if per_stage:
            first = next(iter(per_stage.values()))
            cols = stage_columns(first, headline) or list(first)[:STAGE_FAMILIES]
            rows = [html.Tr([html.Th("stage")] + [html.Th(c) for c in cols])]
            for stage, values in per_stage.items():
                active = stage in active_stages
                button = html.Button(stage, id={"type": ids.METRIC_STAGE, "index": stage}, n_clicks=0,
                                     style={"fontWeight": "bold" if active else "normal", "fontSize": "11px"},
                                     title="highlight this stage on the map")
                cells = []
                for c in cols:
                    m = values.get(c) or {}
                    ci = m.get("ci")
                    cells.append(html.Td(_fmt(m.get("value")) + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")))
                rows.append(html.Tr([html.Td(button)] + cells))
            out.append(html.H5("per stage (click a stage to highlight it)", style={"margin": "8px 0 2px 0"}))
            out.append(html.Table(rows, id="metrics-stages", style={"fontSize": "11px", "width": "100%"}))
    if gaps:
        out.append(html.H5("coverage gaps", style={"margin": "8px 0 2px 0"}))
        out.append(html.Ul([html.Li(g) for g in gaps[:8]], id="coverage-gaps",
                           style={"margin": 0, "paddingLeft": "16px", "fontSize": "12px"}))
    return out
