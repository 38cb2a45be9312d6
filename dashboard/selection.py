"""Filters and lasso/box selections over the map points: masks, counts per embodiment and stage, CSV.

A selection reaches the server in compact form (the lasso polygon, the box range, or
a list of point indices), never as plotly's per-point ``selectedData``; the rows are
found here, against the coordinates the server already holds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from probe import columns as C

TABLE_ROWS = 200  # rows of the selection shown in the page (the CSV holds all)
CSV_COLUMNS = (C.SAMPLE_ID, C.EMBODIMENT, C.DATASET, C.EPISODE, C.FRAME, C.TIMESTAMP, C.TASK, C.STAGE,
               C.PROGRESS)
FILTER_COLUMNS = {"task": C.TASK, "stage": C.STAGE, "embodiment": C.EMBODIMENT, "episode": "episode_key"}


def active_mask(points: pd.DataFrame, filters: Mapping[str, Sequence[str]]) -> np.ndarray:
    """True for map points passing every non-empty filter (others are dimmed, not hidden)."""
    keep = np.ones(len(points), dtype=bool)
    for name, values in filters.items():
        if values:
            keep &= points[FILTER_COLUMNS[name]].astype(str).isin(list(values)).to_numpy()
    return keep


def points_in_polygon(coords: np.ndarray, xs: Sequence[float], ys: Sequence[float]) -> np.ndarray:
    """Indices of points inside a polygon (even-odd rule, vectorised ray casting)."""
    px, py = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
    if len(px) < 3 or len(px) != len(py):
        return np.empty(0, dtype=np.int64)
    x, y = coords[:, 0].astype(np.float64), coords[:, 1].astype(np.float64)
    inside = np.zeros(len(coords), dtype=bool)
    j = len(px) - 1
    for i in range(len(px)):
        xi, yi, xj, yj = px[i], py[i], px[j], py[j]
        crosses = (yi > y) != (yj > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_at = (xj - xi) * (y - yi) / (yj - yi) + xi
        inside ^= crosses & (x < x_at)
        j = i
    return np.flatnonzero(inside)


def selected_points(coords: np.ndarray, selection: Mapping[str, Any] | None) -> np.ndarray:
    """Map points of a compact selection: ``{"lasso": {"x","y"}}``, ``{"range": {"x","y"}}`` or ``{"points"}``."""
    if not selection:
        return np.empty(0, dtype=np.int64)
    if selection.get("lasso"):
        lasso = selection["lasso"]
        return points_in_polygon(coords, lasso.get("x", []), lasso.get("y", []))
    if selection.get("range"):
        (x0, x1), (y0, y1) = (sorted(selection["range"]["x"][:2]), sorted(selection["range"]["y"][:2]))
        inside = (coords[:, 0] >= x0) & (coords[:, 0] <= x1) & (coords[:, 1] >= y0) & (coords[:, 1] <= y1)
        return np.flatnonzero(inside)
    raw = selection.get("points") or []
    pts = np.unique(np.asarray([p for p in raw if isinstance(p, int) and not isinstance(p, bool)],
                               dtype=np.int64))
    return pts[(pts >= 0) & (pts < len(coords))]


def counts(points: pd.DataFrame, selected: np.ndarray, stages: Sequence[str]) -> pd.DataFrame:
    """Selected points per embodiment (rows) and stage (columns, in stage order), with totals."""
    sub = points.iloc[selected]
    table = pd.crosstab(sub[C.EMBODIMENT].astype(str), sub[C.STAGE].astype(str))
    table = table.reindex(columns=[s for s in stages if s in table.columns])
    table["total"] = table.sum(axis=1)
    table.loc["total"] = table.sum(axis=0)
    return table.astype(int)


def selection_frame(points: pd.DataFrame, coords: np.ndarray, selected: np.ndarray,
                    active: np.ndarray | None = None) -> pd.DataFrame:
    """The selected points' metadata and map coordinates (the CSV export)."""
    frame = points.iloc[selected][list(CSV_COLUMNS)].reset_index(drop=True).copy()
    frame["x"] = coords[selected, 0]
    frame["y"] = coords[selected, 1]
    if active is not None:
        frame["matches_filters"] = active[selected]
    return frame


def selection_csv(points: pd.DataFrame, coords: np.ndarray, selected: np.ndarray,
                  active: np.ndarray | None = None) -> str:
    """CSV text of :func:`selection_frame`."""
    return selection_frame(points, coords, selected, active).to_csv(index=False)
