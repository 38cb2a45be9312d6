"""Dashboard figures and selections: colour encoding with dimming, patches, lasso/box, counts, CSV."""

from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from dashboard.figures import (CLIP_TRAJECTORY, MARKS, POINT_SIZE, POINTS, TRAJECTORY, encode_colors, hex_to_rgb,
                               map_figure, marker_style, marks, panel_figure, stepped_colorscale, typed_array,
                               view_encoding)
from dashboard.selection import (active_mask, counts, points_in_polygon, selected_points, selection_csv,
                                 selection_frame)
from probe import columns as C
from probe import figures as F
from conftest import synthetic_meta


def _decode(spec):
    return np.frombuffer(base64.b64decode(spec["bdata"]), dtype={"u1": np.uint8, "u2": np.uint16,
                                                                  "f4": np.float32}[spec["dtype"]])


def test_encode_colors_folds_dimming_into_codes():
    codes = np.array([0, 1, 2, 1])
    enc = encode_colors(codes, ["#ff0000", "#00ff00", "#0000ff"], np.array([True, False, True, True]),
                        labels=["a", "b", "c"])
    assert enc.codes.tolist() == [0, 4, 2, 1] and enc.codes.dtype == np.uint8
    assert enc.legend == [("a", "#ff0000"), ("b", "#00ff00"), ("c", "#0000ff")]
    # value i (read with cmin=-0.5, cmax=2n-0.5) lands in the middle of its own flat step
    scale = enc.colorscale
    assert len(scale) == 12 and scale[0] == [0.0, "#ff0000"] and scale[8][1] == "rgba(0,255,0,0.12)"
    many = encode_colors(np.arange(300), ["#000000"] * 200, np.ones(300, bool))
    assert many.codes.dtype == np.uint16 and many.legend == []


def test_stepped_colorscale_is_monotone_and_spans_0_1():
    scale = stepped_colorscale(["#000000", "#ffffff"])
    positions = [p for p, _ in scale]
    assert positions[0] == 0 and positions[-1] == 1 and positions == sorted(positions)


def test_typed_array_round_trips():
    for a in (np.arange(10, dtype=np.uint8), np.linspace(0, 1, 7, dtype=np.float32)):
        assert np.array_equal(_decode(typed_array(a)), a)


def test_map_figure_sends_points_once_as_typed_arrays():
    coords = np.random.default_rng(0).normal(size=(1000, 2)).astype(np.float32)
    enc = encode_colors(np.zeros(1000, int), ["#123456"], np.ones(1000, bool), labels=["x"])
    fig = map_figure(coords, enc)
    assert isinstance(fig, go.Figure)
    data = fig.to_plotly_json()["data"]
    assert [d["type"] for d in data] == ["scattergl"] * 4
    assert np.allclose(_decode(data[POINTS]["x"]), coords[:, 0])
    assert len(_decode(data[POINTS]["marker"]["color"])) == 1000
    for trace in (TRAJECTORY, CLIP_TRAJECTORY, MARKS):
        assert len(data[trace]["x"]) == 0
    # a colour patch is one byte per point (base64), far smaller than the geometry
    style = marker_style(enc)
    assert len(style["color"]["bdata"]) < len(data[POINTS]["x"]["bdata"]) / 3
    panel = panel_figure(coords, enc, title="ck", selected=3)
    assert panel.data[1].x == (coords[3, 0],) or np.isclose(panel.data[1].x[0], coords[3, 0])


def test_marks_put_a_star_on_the_selected_point_and_diamonds_on_matches():
    from dashboard.figures import CLIP_COLOR, OUTLINE, SELECTED_FILL

    coords = np.arange(20, dtype=np.float32).reshape(10, 2)
    m = marks(coords, 2, [5, -1, 7])
    assert m["x"] == [4.0, 10.0, 14.0]
    assert m["marker"]["symbol"] == ["star", "diamond", "diamond"]  # the map's points are circles
    assert m["marker"]["color"] == [SELECTED_FILL, CLIP_COLOR, CLIP_COLOR] and m["marker"]["line"]["color"] == OUTLINE
    assert min(m["marker"]["size"]) > 2 * POINT_SIZE
    assert marks(coords, None, [])["x"] == []


def _rgb(color: str) -> np.ndarray:
    return np.array(hex_to_rgb(color), dtype=float)


def test_overlays_stand_apart_from_every_point_colour():
    """The trajectories and marks use none of the colours points can take (embodiments, the palette, the
    progress scale): each overlay colour is far (RGB distance) from all of them, and the overlays are drawn
    thicker than the points, solid, with outlined markers."""
    from dashboard.figures import CLIP_COLOR, OUTLINE, OVERLAY_COLORS, progress_colors

    point_colors = [*F.EMBODIMENT_COLORS.values(), *F.PALETTE, F.NULL_COLOR, *progress_colors(32)]
    for overlay_color in OVERLAY_COLORS:
        nearest = min(np.linalg.norm(_rgb(overlay_color) - _rgb(c)) for c in point_colors)
        assert nearest > 80, (overlay_color, nearest)
    assert np.linalg.norm(_rgb(CLIP_COLOR) - _rgb(OUTLINE)) > 200  # the two trajectories differ from each other
    fig = map_figure(np.zeros((3, 2), np.float32), encode_colors(np.zeros(3, np.int64), ["#ff0000"],
                                                                 np.ones(3, bool)))
    episode, clip = fig.data[TRAJECTORY], fig.data[CLIP_TRAJECTORY]
    assert (episode.line.color, clip.line.color) == (OUTLINE, CLIP_COLOR)
    assert clip.line.dash in (None, "solid") and min(episode.line.width, clip.line.width) >= 3
    assert clip.marker.line.color == OUTLINE and clip.marker.size > POINT_SIZE


def test_view_encoding_for_every_colour():
    meta = synthetic_meta(n_episodes=2, frames=6)
    cats = {"embodiment": ["human", "robot"], "task": ["pick", "push"], "stage": ["reach", "grasp", "lift"],
            "episode": [f"e{i}" for i in range(8)], "checkpoint": ["a", "b"]}
    codes = {"embodiment": (meta[C.EMBODIMENT] == "robot").to_numpy().astype(int),
             "task": (meta[C.TASK] == "push").to_numpy().astype(int),
             "stage": meta[C.STAGE].map({"reach": 0, "grasp": 1, "lift": 2}).to_numpy(),
             "episode": meta[C.EPISODE].to_numpy(), "progress": (meta[C.PROGRESS] * 31.99).astype(int).to_numpy()}
    active = np.ones(len(meta), bool)
    emb = view_encoding(codes, cats, "embodiment", active)
    assert emb.legend == [("human", F.EMBODIMENT_COLORS["human"]), ("robot", F.EMBODIMENT_COLORS["robot"])]
    # the report's palette: the same colour for the same category in the report and the dashboard
    stage = F.colors_for(meta, F.ColorBy.STAGE)
    assert view_encoding(codes, cats, "stage", active).legend == [(s, stage[s]) for s in cats["stage"]]
    assert view_encoding(codes, cats, "progress", active).continuous is not None
    ck = view_encoding(codes, cats, "checkpoint", active, checkpoint=1)
    assert set(ck.codes.tolist()) == {1}
    ep = view_encoding(codes, cats, "episode", active)
    assert ep.codes.max() < ep.n
    stage = view_encoding(codes, cats, "stage", ~active)
    assert (stage.codes >= stage.n).all()


@pytest.fixture
def points():
    meta = synthetic_meta(n_episodes=2, frames=6)
    meta["episode_key"] = C.episode_keys(meta)
    return meta


def test_active_mask(points):
    assert active_mask(points, {"task": (), "stage": ()}).all()
    m = active_mask(points, {"stage": ("grasp",), "embodiment": ("robot",)})
    assert m.sum() == ((points[C.STAGE] == "grasp") & (points[C.EMBODIMENT] == "robot")).sum() > 0
    key = points["episode_key"].iat[0]
    assert active_mask(points, {"episode": (key,)}).sum() == 6


def test_points_in_polygon_matches_brute_force():
    rng = np.random.default_rng(0)
    coords = rng.uniform(-1, 1, size=(2000, 2)).astype(np.float32)
    square = points_in_polygon(coords, [-0.5, 0.5, 0.5, -0.5], [-0.5, -0.5, 0.5, 0.5])
    brute = np.flatnonzero((np.abs(coords) < 0.5).all(axis=1))
    assert np.array_equal(square, brute)
    # a triangle: half of that square
    tri = points_in_polygon(coords, [-0.5, 0.5, 0.5], [-0.5, -0.5, 0.5])
    assert np.array_equal(tri, np.flatnonzero((np.abs(coords) < 0.5).all(1) & (coords[:, 1] < coords[:, 0])))
    assert len(points_in_polygon(coords, [0, 1], [0, 1])) == 0


def test_selected_points_from_compact_selections():
    coords = np.array([[0, 0], [1, 1], [2, 2], [3, 3]], dtype=np.float32)
    assert selected_points(coords, {"range": {"x": [2.5, 0.5], "y": [0.5, 2.5]}}).tolist() == [1, 2]
    assert selected_points(coords, {"lasso": {"x": [-1, 1.5, 1.5, -1], "y": [-1, -1, 1.5, 1.5]}}).tolist() == [0, 1]
    assert selected_points(coords, {"points": [3, 1, 1, 99, -2, "x", True]}).tolist() == [1, 3]
    assert selected_points(coords, None).tolist() == []


def test_counts_and_csv(points):
    sel = np.flatnonzero(points[C.TASK] == "pick")
    table = counts(points, sel, ["reach", "grasp", "lift"])
    assert list(table.columns) == ["reach", "grasp", "lift", "total"]
    assert table.loc["total", "total"] == len(sel)
    assert table.loc["human", "total"] == (points[C.EMBODIMENT].iloc[sel] == "human").sum()
    coords = np.zeros((len(points), 2), np.float32)
    coords[:, 0] = np.arange(len(points))
    active = np.arange(len(points)) % 2 == 0
    text = selection_csv(points, coords, sel, active)
    back = pd.read_csv(io.StringIO(text))
    assert len(back) == len(sel)
    assert back[C.SAMPLE_ID].tolist() == points[C.SAMPLE_ID].iloc[sel].tolist()
    assert back["x"].tolist() == sel.astype(float).tolist()
    assert back["matches_filters"].tolist() == active[sel].tolist()
    assert len(selection_frame(points, coords, np.empty(0, int))) == 0
