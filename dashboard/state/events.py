"""Events to state: how a click, a control change or a button turns one view state into the next.

Pure functions of the prepared data and the state; the Dash callbacks are thin
adapters over them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from dashboard.state.prepared import Clip, Prepared
from dashboard.state.viewstate import FILTERS, MAX_PANELS, ColorBy, ViewState
from probe import columns as C


def click_row(prepared: Prepared, state: ViewState, click: Mapping[str, Any] | None) -> int | None:
    """Store row of a clicked map point, from its trace and point index (never from coordinates).

    Trace 0 holds every map point (``Checkpoint.rows``); trace 1 the selected point's
    episode, trace 2 the highlighted clip's episode, trace 3 the marks (selected point,
    then matched clips), each rebuilt here from the state. Unknown points give None.
    """
    from dashboard.figures import CLIP_TRAJECTORY, MARKS, POINTS, TRAJECTORY

    try:
        point = click["points"][0]  # type: ignore[index]
        trace = int(point.get("curveNumber", 0))
        index = int(point.get("pointIndex", point.get("pointNumber")))
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    if state.store not in prepared.names:
        return None
    ci, ck = prepared.checkpoint(state.store)
    if trace == POINTS:
        points = np.arange(len(ck.rows))
    elif trace in (TRAJECTORY, CLIP_TRAJECTORY):
        row = ck.row_of(state.point if trace == TRAJECTORY else state.clip)
        points = ck.trajectory(row) if row is not None else np.empty(0, dtype=np.int64)
    elif trace == MARKS:
        points = np.asarray(mark_points(prepared, state), dtype=np.int64)
    else:
        return None
    if not 0 <= index < len(points):
        return None
    return int(ck.rows[points[index]])


def selected_clips(prepared: Prepared, state: ViewState) -> list[Clip]:
    """Nearest human clips of the selected point (one FAISS search, cached per row)."""
    if state.point is None or state.store not in prepared.names or state.layer not in prepared.layers:
        return []
    ci, ck = prepared.checkpoint(state.store)
    row = ck.row_of(state.point)
    if row is None:
        return []
    return prepared.views[(ci, state.layer)].neighbours.clips(row)


def mark_points(prepared: Prepared, state: ViewState) -> list[int]:
    """Map points of the marks trace: the selected point, then matched clips drawn on the map."""
    if state.store not in prepared.names:
        return []
    _, ck = prepared.checkpoint(state.store)
    row = ck.row_of(state.point)
    if row is None or ck.point_of_row[row] < 0:
        return []
    out = [int(ck.point_of_row[row])]
    out += [int(ck.point_of_row[c.row]) for c in selected_clips(prepared, state) if ck.point_of_row[c.row] >= 0]
    return out


def apply_event(prepared: Prepared, state: ViewState, event: str, value: Any) -> ViewState:
    """The state after one user event (a control change, a click, a clip or stage button, clear)."""
    if event in ("store", "layer", "color"):
        if value is None:
            return state
        allowed = {"store": prepared.names, "layer": prepared.layers, "color": [c.value for c in ColorBy]}[event]
        return state.with_(**{event: value}) if value in allowed else state
    if event in FILTERS:
        allowed = set(prepared.categories[event])
        return state.with_(**{event: [v for v in (value or []) if v in allowed]})
    if event == "compare":
        return state.with_(compare=[v for v in (value or []) if v in prepared.names][:MAX_PANELS])
    if event == "click":
        row = click_row(prepared, state, value)
        if row is None:
            return state
        _, ck = prepared.checkpoint(state.store)
        return state.with_(point=str(ck.meta[C.SAMPLE_ID].iat[row]), clip=None)
    if event == "clip":
        return state.with_(clip=None if value == state.clip else value)
    if event == "metric_stage":
        return state.with_(stage=() if state.stage == (value,) else (value,))
    if event == "clear":
        return state.with_(task=(), stage=(), embodiment=(), episode=(), point=None, clip=None)
    return state
