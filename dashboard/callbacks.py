"""Callbacks: thin adapters between Dash events and the pure functions of state, figures and selection.

No callback computes a layout, a kNN graph or a metric: they read the :class:`Prepared`
data; a click runs at most one single-vector FAISS search (cached). The map's points
are sent once per (checkpoint, layer); everything else is a ``dash.Patch``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from dash import ALL, Dash, Input, Output, Patch, State, ctx, html, no_update

from dashboard import ids, layout
from dashboard.figures import (CLIP_TRAJECTORY, MARKS, POINTS, TRAJECTORY, map_figure, marker_style, marks, overlay,
                               panel_figure, view_encoding)
from dashboard.media import thumb_url
from dashboard.selection import active_mask, counts, selected_points, selection_csv
from dashboard.state.metrics_panel import headline_order
from dashboard.state.viewstate import MAX_PANELS, ViewState, decode_state, encode_state, state_from_dict
from dashboard.state.loading import PROGRESS_LEVELS
from dashboard.state.prepared import Prepared
from dashboard.state.events import apply_event, mark_points, selected_clips
from probe import columns as C

CONTROLS = (("store", ids.STORE), ("layer", ids.LAYER), ("color", ids.COLOR), ("task", ids.TASK),
            ("stage", ids.STAGE), ("embodiment", ids.EMBODIMENT), ("episode", ids.EPISODE),
            ("compare", ids.COMPARE))

# clientside: reduce plotly's per-point selectedData to the lasso polygon / box range (a few numbers)
COMPACT_SELECTION = """
function(sel) {
  if (!sel) { return null; }
  if (sel.lassoPoints && sel.lassoPoints.x) { return {lasso: {x: sel.lassoPoints.x, y: sel.lassoPoints.y}}; }
  if (sel.range && sel.range.x) { return {range: {x: sel.range.x, y: sel.range.y}}; }
  var pts = (sel.points || []).filter(function(p) { return p.curveNumber === 0; })
                              .map(function(p) { return p.pointIndex; });
  return {points: pts};
}
"""


def _control_values(state: ViewState) -> list[Any]:
    d = state.to_dict()
    return [d[name] for name, _ in CONTROLS]


def _encoding(prepared: Prepared, state: ViewState, checkpoint: int):
    ck = prepared.checkpoints[checkpoint]
    active = active_mask(ck.points, state.filters())
    return view_encoding(ck.codes, prepared.categories, state.color.value, active, checkpoint, PROGRESS_LEVELS)


def _style_key(state: ViewState) -> list[Any]:
    d = state.to_dict()
    return [d["color"], d["task"], d["stage"], d["embodiment"], d["episode"]]


def register(app: Dash, prepared: Prepared) -> None:
    """Wire every callback of the app to ``prepared``."""
    default = prepared.default_state()
    choices = prepared.choices()

    @app.callback(
        Output(ids.STATE, "data"), Output(ids.URL, "search"), Output(ids.NOTICE, "children"),
        *[Output(cid, "value") for _, cid in CONTROLS],
        Input(ids.URL, "search"),
        *[Input(cid, "value") for _, cid in CONTROLS],
        Input(ids.MAP, "clickData"),
        Input({"type": ids.CLIP, "index": ALL}, "n_clicks"),
        Input({"type": ids.METRIC_STAGE, "index": ALL}, "n_clicks"),
        Input(ids.CLEAR, "n_clicks"),
        State(ids.STATE, "data"),
    )
    def sync_state(search, *args):
        current = args[-1]
        trigger = ctx.triggered_id
        n_controls = len(CONTROLS)
        if trigger is None or trigger == ids.URL or not current:
            state, notices = decode_state(search, choices, default)
            canonical = encode_state(state, default)
            return (state.to_dict(), canonical if canonical != search else no_update,
                    "; ".join(notices), *_control_values(state))
        state = state_from_dict(current, default, choices)
        value = ctx.triggered[0]["value"] if ctx.triggered else None
        if isinstance(trigger, dict):
            if not value:  # a button re-rendered, not clicked
                return (no_update,) * (3 + n_controls)
            event = "clip" if trigger["type"] == ids.CLIP else "metric_stage"
            state = apply_event(prepared, state, event, trigger["index"])
        elif trigger == ids.MAP:
            state = apply_event(prepared, state, "click", args[n_controls])
        elif trigger == ids.CLEAR:
            state = apply_event(prepared, state, "clear", None)
        else:
            name = next(n for n, cid in CONTROLS if cid == trigger)
            state = apply_event(prepared, state, name, args[[cid for _, cid in CONTROLS].index(trigger)])
        controls_out = [v if trigger in (ids.CLEAR,) or isinstance(trigger, dict) else no_update
                        for v in _control_values(state)]
        return (state.to_dict(), encode_state(state, default), "", *controls_out)

    @app.callback(
        Output(ids.PREPARING, "children"), Output(ids.PREPARING_TICK, "disabled"),
        Input(ids.PREPARING_TICK, "n_intervals"),
    )
    def show_preparing(_):
        views = prepared.views
        ready, total = views.ready(), len(views)
        error = getattr(views, "error", None)
        return layout.preparing(ready, total, error), bool(ready >= total or error)

    @app.callback(
        Output(ids.MAP, "figure"), Output(ids.DRAWN, "data"), Output(ids.LEGEND, "children"),
        Output(ids.MAP_INFO, "children"),
        Input(ids.STATE, "data"), State(ids.DRAWN, "data"),
    )
    def draw_map(state_data, drawn):
        state = state_from_dict(state_data, default, choices)
        ci, ck = prepared.checkpoint(state.store)
        view = prepared.views[(ci, state.layer)]
        key = {"store": state.store, "layer": state.layer, "style": _style_key(state)}
        enc = None
        if drawn and drawn.get("store") == state.store and drawn.get("layer") == state.layer:
            fig = Patch()
            if drawn.get("style") != key["style"]:
                enc = _encoding(prepared, state, ci)
                fig["data"][POINTS]["marker"] = marker_style(enc)
        else:
            enc = _encoding(prepared, state, ci)
            fig = map_figure(view.coords, enc, uirevision=f"{state.store}|{state.layer}")
            fig = fig.to_plotly_json()
            fig = {"data": fig["data"], "layout": fig["layout"]}
        row = ck.row_of(state.point)
        clip_row = ck.row_of(state.clip)
        traj = ck.trajectory(row) if row is not None else np.empty(0, dtype=np.int64)
        clip_traj = ck.trajectory(clip_row) if clip_row is not None else np.empty(0, dtype=np.int64)
        mk = mark_points(prepared, state)
        overlays = {TRAJECTORY: overlay(view.coords, traj), CLIP_TRAJECTORY: overlay(view.coords, clip_traj),
                    MARKS: marks(view.coords, mk[0] if mk else None, mk[1:])}
        for trace, values in overlays.items():
            for attr, v in values.items():
                fig["data"][trace][attr] = v
        legend_out = no_update
        info = no_update
        if enc is not None:
            note = "episodes cycle through 24 colours" if state.color.value == "episode" and not enc.legend else ""
            legend_out = layout.legend(enc.legend, enc.continuous, note)
            n_active = int((enc.codes < enc.n).sum())
            sampled = f" (sampled from {ck.store.n:,})" if len(ck.rows) < ck.store.n else ""
            trust = f", trustworthiness {view.trustworthiness:.3f}" if view.trustworthiness is not None else ""
            info = (f"{state.store} · {state.layer} · {view.method}{trust} · {len(ck.rows):,} points{sampled}"
                    f" · {n_active:,} match the filters")
        return fig, key, legend_out, info

    panel_ids = [f"{ids.PANEL}-{i}" for i in range(MAX_PANELS)]

    @app.callback(
        *[Output(pid, "figure") for pid in panel_ids], *[Output(pid, "style") for pid in panel_ids],
        Output(ids.PANELS_DRAWN, "data"),
        Input(ids.STATE, "data"), State(ids.PANELS_DRAWN, "data"),
    )
    def draw_panels(state_data, drawn):
        state = state_from_dict(state_data, default, choices)
        drawn = drawn or [None] * MAX_PANELS
        figures, styles, now = [], [], []
        for i in range(MAX_PANELS):
            if i >= len(state.compare):
                figures.append(no_update if drawn[i] is None else {"data": [], "layout": {"height": 10}})
                styles.append({"display": "none"})
                now.append(None)
                continue
            name = state.compare[i]
            ci, ck = prepared.checkpoint(name)
            view = prepared.views[(ci, state.layer)]
            key = {"store": name, "layer": state.layer, "style": _style_key(state), "point": state.point}
            row = ck.row_of(state.point)
            sel = int(ck.point_of_row[row]) if row is not None and ck.point_of_row[row] >= 0 else None
            old = drawn[i] or {}
            if old.get("store") == name and old.get("layer") == state.layer:
                fig = Patch()
                if old.get("style") != key["style"]:
                    fig["data"][0]["marker"] = {**marker_style(_encoding(prepared, state, ci)), "size": 3}
                for attr, v in marks(view.coords, sel, []).items():
                    fig["data"][1][attr] = v
            else:
                fig = panel_figure(view.coords, _encoding(prepared, state, ci), title=name, selected=sel)
            figures.append(fig)
            styles.append({"display": "block", "flex": "1 1 0", "minWidth": 0})
            now.append(key)
        return (*figures, *styles, now)

    @app.callback(Output(ids.HOVER, "children"), Input(ids.MAP, "hoverData"), State(ids.STATE, "data"))
    def hover(hover_data, state_data):
        state = state_from_dict(state_data, default, choices)
        from dashboard.state.events import click_row

        row = click_row(prepared, state, hover_data)
        if row is None:
            return html.Div("hover a point to see its frame; click one to see its episode and nearest human clips",
                            style={"color": "#777"})
        ci, ck = prepared.checkpoint(state.store)
        m = ck.meta.iloc[row]
        labels = {"sample": m[C.SAMPLE_ID], "embodiment": m[C.EMBODIMENT], "task": m[C.TASK],
                  "stage": m[C.STAGE], "episode": C.episode_key(m[C.DATASET], m[C.EPISODE]), "frame": int(m[C.FRAME]),
                  "progress": f"{float(m[C.PROGRESS]):.2f}"}
        thumb = thumb_url(ci, row) if ck.video_code[row] >= 0 else None
        return layout.hover_card(labels, thumb)

    @app.callback(Output(ids.NEIGHBOURS, "children"), Output(ids.NEIGHBOURS_KEY, "data"),
                  Input(ids.STATE, "data"), State(ids.NEIGHBOURS_KEY, "data"))
    def neighbours(state_data, shown):
        state = state_from_dict(state_data, default, choices)
        key = [state.store, state.layer, state.point, state.clip]
        if key == shown:
            return no_update, no_update
        return _neighbours(state), key

    def _neighbours(state: ViewState) -> list[Any]:
        title = html.H4(f"nearest human clips (top {prepared.k})", style=layout.CSS["h"])
        if state.point is None:
            return [title, html.Div("click a robot point on the map", style={"color": "#777"})]
        ci, ck = prepared.checkpoint(state.store)
        row = ck.row_of(state.point)
        if row is None:
            return [title, html.Div(f"point '{state.point}' is not in this checkpoint", style={"color": "#777"})]
        m = ck.meta.iloc[row]
        head = html.Div(f"{m[C.EMBODIMENT]} {m[C.SAMPLE_ID]} · {m[C.TASK]} · {m[C.STAGE]}",
                        id="selected-point", style={"marginBottom": "6px"})
        clips = selected_clips(prepared, state)
        if not clips:
            return [title, head, html.Div("this store has no human samples to match", style={"color": "#777"})]
        return [title, head, *[layout.clip_card(ci, c, c.sample_id == state.clip) for c in clips]]

    app.clientside_callback(COMPACT_SELECTION, Output(ids.SELECTION, "data"), Input(ids.MAP, "selectedData"))

    @app.callback(Output(ids.SELECTION_TABLE, "children"), Input(ids.SELECTION, "data"),
                  Input(ids.STATE, "data"))
    def selection_table(selection, state_data):
        state = state_from_dict(state_data, default, choices)
        ci, ck = prepared.checkpoint(state.store)
        view = prepared.views[(ci, state.layer)]
        pts = selected_points(view.coords, selection)
        if not len(pts):
            return html.Div("no points selected", style={"color": "#777"})
        table = counts(ck.points, pts, prepared.categories["stage"])
        header = html.Tr([html.Th("")] + [html.Th(c) for c in table.columns])
        body = [html.Tr([html.Th(idx)] + [html.Td(int(v)) for v in row]) for idx, row in table.iterrows()]
        return [html.Div(f"{len(pts):,} points selected", id="selection-count"),
                html.Table([header, *body], id="selection-counts", style={"fontSize": "12px"})]

    @app.callback(Output(ids.DOWNLOAD, "data"), Input(ids.CSV_BUTTON, "n_clicks"),
                  State(ids.SELECTION, "data"), State(ids.STATE, "data"), prevent_initial_call=True)
    def download(n_clicks, selection, state_data):
        state = state_from_dict(state_data, default, choices)
        ci, ck = prepared.checkpoint(state.store)
        view = prepared.views[(ci, state.layer)]
        pts = selected_points(view.coords, selection)
        active = active_mask(ck.points, state.filters())
        return {"content": selection_csv(ck.points, view.coords, pts, active),
                "filename": f"selection-{state.store.replace('/', '_')}-{state.layer}.csv", "type": "text/csv"}

    @app.callback(Output(ids.METRICS, "children"), Output(ids.METRICS_KEY, "data"),
                  Input(ids.STATE, "data"), State(ids.METRICS_KEY, "data"))
    def metrics(state_data, shown):
        state = state_from_dict(state_data, default, choices)
        key = [state.store, state.layer, list(state.stage)]
        if key == shown:
            return no_update, no_update
        ci, _ = prepared.checkpoint(state.store)
        view = prepared.views[(ci, state.layer)]
        note = f"{state.store} · {state.layer}"
        return layout.metrics_panel(view.metrics, view.coverage, state.stage, note, headline_order()), key
