"""Dashboard-only figure pieces: the WebGL map, its colour encoding and the patches that restyle it.

The map is one ``go.Scattergl`` trace of every point (geometry sent once) plus three
small overlay traces. Colour and dimming are ONE small integer per point looked up in
a stepped colour scale whose second half holds the dimmed colours, so switching the
colour or a filter sends a compact typed array (``dash.Patch``), never the points again.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.colors import sample_colorscale

from probe import figures as F

# fixed trace order of the map (clicks map to rows through it)
POINTS, TRAJECTORY, CLIP_TRAJECTORY, MARKS = 0, 1, 2, 3

# Overlays (the clicked point's episode, the highlighted clip, the marks) stand apart from every point colour:
# none of them is an embodiment colour, a palette colour or near the progress scale (tests check the distances).
# Each is drawn thick, with a dark outline and a contrasting fill, so it reads on any colouring.
OUTLINE = "#111111"  # the episode trajectory, and the outline of every overlay marker
CLIP_COLOR = "#E600E6"  # magenta: the highlighted clip's trajectory, the matched-clip marks, the clip card's border
SELECTED_FILL = "#FFFFFF"  # the clicked point's star (white, outlined)
OVERLAY_COLORS = (OUTLINE, CLIP_COLOR, SELECTED_FILL)
DIM_ALPHA = 0.12
POINT_SIZE = 4


@dataclass(frozen=True)
class ColorEncoding:
    """Per-point colour codes with dimming folded in, the stepped scale that reads them, and a legend.

    ``codes[p]`` is the category of point p, plus ``n`` when the point is dimmed.
    """

    codes: np.ndarray
    colorscale: list[list[Any]]
    n: int
    legend: list[tuple[str, str]]  # (label, colour); empty for many categories
    continuous: tuple[str, str] | None = None  # (low label, high label) of a gradient legend


def hex_to_rgb(color: str) -> tuple[int, int, int]:
    if color.startswith("rgb"):
        parts = color[color.index("(") + 1 : color.index(")")].split(",")
        return tuple(int(float(p)) for p in parts[:3])  # type: ignore[return-value]
    color = color.lstrip("#")
    return int(color[0:2], 16), int(color[2:4], 16), int(color[4:6], 16)


def dim(color: str, alpha: float = DIM_ALPHA) -> str:
    """A faint version of a colour (for points filtered out: dimmed, never hidden)."""
    r, g, b = hex_to_rgb(color)
    return f"rgba({r},{g},{b},{alpha})"


def category_colors(values: list[str], *, embodiment: bool = False) -> list[str]:
    """One colour per category value, as in the report (:func:`probe.figures.color_map`: fixed colours
    for human and robot, the others from :data:`probe.figures.PALETTE`)."""
    colors = F.color_map(values, fixed=F.EMBODIMENT_COLORS if embodiment else None)
    return [colors[str(v)] for v in values]


def progress_colors(levels: int) -> list[str]:
    return sample_colorscale(F.PROGRESS_COLORSCALE, [i / max(levels - 1, 1) for i in range(levels)])


def stepped_colorscale(colors: list[str]) -> list[list[Any]]:
    """A colour scale with one flat step per colour (values 0..len-1 read with cmin=-0.5, cmax=len-0.5)."""
    n = len(colors)
    scale: list[list[Any]] = []
    for i, color in enumerate(colors):
        scale.append([i / n, color])
        scale.append([(i + 1) / n, color])
    return scale


def encode_colors(codes: np.ndarray, colors: list[str], active: np.ndarray,
                  labels: list[str] | None = None, continuous: tuple[str, str] | None = None) -> ColorEncoding:
    """Fold the active mask into category codes: dimmed points read the second half of the scale."""
    n = len(colors)
    dtype = np.uint8 if 2 * n <= 256 else np.uint16
    codes = np.asarray(codes, dtype=np.int64) % max(n, 1)
    out = (codes + np.where(active, 0, n)).astype(dtype)
    scale = stepped_colorscale(list(colors) + [dim(c) for c in colors])
    legend = list(zip(labels, colors)) if labels is not None and len(labels) <= 40 else []
    return ColorEncoding(out, scale, n, legend, continuous)


def typed_array(values: np.ndarray) -> dict[str, str]:
    """plotly.js's typed-array form ``{"dtype", "bdata"}``: base64 bytes instead of a JSON list."""
    values = np.ascontiguousarray(values)
    kinds = {np.dtype(np.uint8): "u1", np.dtype(np.uint16): "u2", np.dtype(np.int32): "i4",
             np.dtype(np.float32): "f4", np.dtype(np.float64): "f8"}
    return {"dtype": kinds[values.dtype], "bdata": base64.b64encode(values.tobytes()).decode("ascii")}


def marker_style(enc: ColorEncoding) -> dict[str, Any]:
    """The marker attributes of the points trace for an encoding (what a colour/filter patch sends)."""
    return {"color": typed_array(enc.codes), "colorscale": enc.colorscale, "cmin": -0.5,
            "cmax": 2 * enc.n - 0.5, "size": POINT_SIZE, "showscale": False}


def map_figure(coords: np.ndarray, enc: ColorEncoding, *, title: str = "", height: int = 620,
               uirevision: str = "map") -> go.Figure:
    """The joint map: all points in one WebGL trace, then robot-trajectory, clip-trajectory and mark overlays."""
    fig = go.Figure()
    fig.add_trace(go.Scattergl(
        x=typed_array(coords[:, 0].astype(np.float32)), y=typed_array(coords[:, 1].astype(np.float32)),
        mode="markers", marker=marker_style(enc), hoverinfo="none", name="points", showlegend=False))
    fig.add_trace(go.Scattergl(x=[], y=[], mode="lines+markers", name="episode trajectory",
                               line={"color": OUTLINE, "width": 3},
                               marker={"size": 7, "color": OUTLINE, "line": {"width": 1, "color": SELECTED_FILL}},
                               hoverinfo="none", showlegend=False))
    fig.add_trace(go.Scattergl(x=[], y=[], mode="lines+markers", name="clip trajectory",
                               line={"color": CLIP_COLOR, "width": 3},
                               marker={"size": 8, "color": CLIP_COLOR, "line": {"width": 1.5, "color": OUTLINE}},
                               hoverinfo="none", showlegend=False))
    fig.add_trace(go.Scattergl(x=[], y=[], mode="markers", name="marks",
                               marker={"size": [], "color": [], "symbol": [], "line": {"width": 2, "color": OUTLINE}},
                               hoverinfo="none", showlegend=False))
    fig.update_layout(
        title={"text": title, "x": 0.01, "font": {"size": 14}}, height=height,
        margin={"l": 10, "r": 10, "t": 36 if title else 10, "b": 10},
        xaxis={"visible": False}, yaxis={"visible": False, "scaleanchor": "x"},
        plot_bgcolor="white", paper_bgcolor="white", dragmode="lasso", hovermode="closest",
        uirevision=uirevision, clickmode="event",
    )
    return fig


def overlay(coords: np.ndarray, points: np.ndarray) -> dict[str, list[float]]:
    """x/y lists of some map points (a trajectory), small enough to send as JSON."""
    pts = coords[points] if len(points) else np.empty((0, 2), dtype=np.float32)
    return {"x": [round(float(v), 5) for v in pts[:, 0]], "y": [round(float(v), 5) for v in pts[:, 1]]}


def marks(coords: np.ndarray, selected: int | None, matches: list[int]) -> dict[str, Any]:
    """The marks trace: an outlined white star on the selected point and outlined magenta diamonds on the
    matched human moments drawn on the map (no point of the map is a diamond or has these colours)."""
    pts = ([selected] if selected is not None else []) + [m for m in matches if m is not None and m >= 0]
    xy = overlay(coords, np.asarray(pts, dtype=np.int64))
    n_sel = 1 if selected is not None else 0
    return {**xy, "marker": {"size": [18] * n_sel + [13] * (len(pts) - n_sel),
                             "color": [SELECTED_FILL] * n_sel + [CLIP_COLOR] * (len(pts) - n_sel),
                             "symbol": ["star"] * n_sel + ["diamond"] * (len(pts) - n_sel),
                             "line": {"width": 2, "color": OUTLINE}}}


def panel_figure(coords: np.ndarray, enc: ColorEncoding, *, title: str, selected: int | None = None,
                 height: int = 260) -> go.Figure:
    """A small multiple: one checkpoint's map (points trace and a selected-point mark)."""
    fig = go.Figure()
    fig.add_trace(go.Scattergl(
        x=typed_array(coords[:, 0].astype(np.float32)), y=typed_array(coords[:, 1].astype(np.float32)),
        mode="markers", marker={**marker_style(enc), "size": 3}, hoverinfo="none", showlegend=False))
    fig.add_trace(go.Scattergl(**marks(coords, selected, []), mode="markers", hoverinfo="none",
                               showlegend=False))
    fig.update_layout(title={"text": title, "x": 0.02, "font": {"size": 12}}, height=height,
                      margin={"l": 4, "r": 4, "t": 28, "b": 4}, xaxis={"visible": False},
                      yaxis={"visible": False, "scaleanchor": "x"}, plot_bgcolor="white",
                      uirevision="panel", dragmode="pan")
    return fig


def metric_bar(name: str, value: float, ci: list[float] | None, null: float | None) -> go.Figure:
    """A one-metric dot with its interval and the chance level (small, for the metrics panel)."""
    fig = go.Figure()
    err = None
    if ci is not None:
        err = {"type": "data", "symmetric": False, "array": [ci[1] - value], "arrayminus": [value - ci[0]]}
    fig.add_trace(go.Scatter(x=[value], y=[name], error_x=err, mode="markers", marker={"size": 10},
                             showlegend=False))
    if null is not None:
        fig.add_vline(x=null, line_dash="dot", line_color="#888")
    fig.update_layout(height=70, margin={"l": 10, "r": 10, "t": 5, "b": 20}, xaxis={"range": [0, 1]})
    return fig


def view_encoding(codes: dict[str, np.ndarray], categories: dict[str, list[str]], color: str,
                  active: np.ndarray, checkpoint: int = 0, progress_levels: int = 32) -> ColorEncoding:
    """The colour encoding of one checkpoint's map points for a colour choice and an active mask."""
    n_points = len(active)
    if color == "progress":
        return encode_colors(codes["progress"], progress_colors(progress_levels), active,
                             continuous=("progress 0", "1"))
    if color == "checkpoint":
        names = categories["checkpoint"]
        colors = category_colors(names)
        return encode_colors(np.full(n_points, checkpoint), colors, active, labels=names)
    if color == "episode":
        palette = list(F.PALETTE)
        labels = categories["episode"]
        enc = encode_colors(codes["episode"] % len(palette), palette, active)
        if len(labels) <= len(palette):
            enc = ColorEncoding(enc.codes, enc.colorscale, enc.n, list(zip(labels, palette)))
        return enc
    labels = categories[color]
    return encode_colors(codes[color], category_colors(labels, embodiment=color == "embodiment"), active,
                         labels=labels)
