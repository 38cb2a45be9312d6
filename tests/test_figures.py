"""Figures are pure: check their traces, colours, click data and interval arithmetic."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from conftest import synthetic_meta
from probe import columns as C
from probe import figures as F


@pytest.fixture(scope="module")
def meta() -> pd.DataFrame:
    return synthetic_meta(n_episodes=2, frames=9)


@pytest.fixture(scope="module")
def coords(meta) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(len(meta), 2)).astype(np.float32)


def _json(fig) -> dict:
    return json.loads(fig.to_json())


def test_scatter_one_trace_per_embodiment_with_row_customdata(meta, coords):
    rows = np.arange(len(meta)) + 1000
    fig = F.scatter(coords, meta, "embodiment", rows=rows)
    data = _json(fig)["data"]
    assert [t["name"] for t in data] == ["human", "robot"]
    assert all(t["type"] == "scattergl" for t in data)
    human = data[0]
    assert isinstance(human["customdata"], list) and all(isinstance(v, int) for v in human["customdata"])
    expected = (rows[(meta[C.EMBODIMENT] == "human").to_numpy()]).tolist()
    assert human["customdata"] == expected
    assert human["marker"]["color"] == F.EMBODIMENT_COLORS["human"]
    assert sum(len(t["x"]) for t in data) == len(meta)
    # a point's coordinates are those of its row
    first = int(np.flatnonzero((meta[C.EMBODIMENT] == "robot").to_numpy())[0])
    assert data[1]["x"][0] == pytest.approx(float(coords[first, 0]))


def test_scatter_by_stage_keeps_stage_order_and_progress_is_continuous(meta, coords):
    fig = F.scatter(coords, meta, "stage")
    assert [t.name for t in fig.data] == ["reach", "grasp", "lift"]
    prog = F.scatter(coords, meta, F.ColorBy.PROGRESS)
    assert len(prog.data) == 1 and prog.data[0].marker.colorscale is not None
    assert list(prog.data[0].marker.color) == pytest.approx(meta[C.PROGRESS].tolist())


def test_small_multiples_share_colours_and_one_legend(meta, coords):
    other = meta.copy()
    other[C.EMBODIMENT] = other[C.EMBODIMENT].replace({"robot": "aloha"})  # a third category in one panel
    panels = [F.Panel("step 100", coords, meta, caption="iLISI 1.20"),
              F.Panel("step 200", coords, other, caption="iLISI 1.50"),
              F.Panel("step 300", coords, meta)]
    fig = F.small_multiples(panels, "embodiment")
    data = _json(fig)["data"]
    assert len({t["xaxis"] for t in data}) == 3
    colors = {}
    for t in data:
        assert colors.setdefault(t["name"], t["marker"]["color"]) == t["marker"]["color"]
    assert len(set(colors.values())) == 3
    assert sum(t.get("showlegend", True) for t in data if t["name"] == "human") == 1
    titles = [a["text"] for a in _json(fig)["layout"]["annotations"]]
    assert any("step 100" in t and "iLISI 1.20" in t for t in titles)
    with pytest.raises(ValueError, match="at least one panel"):
        F.small_multiples([])


def test_metric_bars_error_bars_and_null_markers():
    metrics = {"ilisi": {"value": 1.5, "ci": [1.25, 1.75], "null": 1.9},
               "silhouette_embodiment": {"value": 0.1, "ci": [0.0, 0.3], "null": None},
               "kbet": {"value": None, "ci": None}}
    fig = F.metric_bars(metrics)
    bar, null = fig.data
    assert list(bar.x) == ["ilisi", "silhouette_embodiment", "kbet"]
    assert list(bar.error_y.array) == pytest.approx([0.25, 0.2, 0.0])
    assert list(bar.error_y.arrayminus) == pytest.approx([0.25, 0.1, 0.0])
    assert bar.y[2] is None
    assert null.name == "null baseline" and null.y[0] == pytest.approx(1.9) and null.y[1] is None


def test_per_stage_bars_and_curves():
    per_stage = {"step 100": {"reach": {"value": 0.2, "ci": [0.1, 0.3]}, "grasp": {"value": 0.5}},
                 "step 200": {"reach": {"value": 0.6}, "grasp": {"value": 0.7}, "lift": {"value": 0.4}}}
    fig = F.per_stage_bars(per_stage, metric="ilisi")
    assert [t.name for t in fig.data] == ["step 100", "step 200"]
    assert list(fig.data[0].x) == ["reach", "grasp", "lift"] and fig.data[0].y[2] is None
    curves = F.metric_curves([100, 200, 300], {"ilisi": [{"value": 1.1, "ci": [1.0, 1.2]}, {"value": 1.5, "ci": [1.4, 1.6]},
                                                         {"value": float("nan")}]},
                             x_title="training step", nulls={"ilisi": 2.0})
    names = [t.name for t in curves.data]
    assert names == ["ilisi 95% CI", "ilisi", "ilisi null"]
    band = curves.data[0]
    assert list(band.x) == [100, 200, 200, 100] and list(band.y) == pytest.approx([1.2, 1.6, 1.4, 1.0])
    assert curves.data[1].y[2] is None


def test_coverage_bars_sorted_largest_first():
    gaps = pd.DataFrame({"label": ["pick/reach", "pick/lift", "push/grasp"], "gap": [0.1, 0.9, 0.5]})
    fig = F.coverage_bars(gaps, top=2)
    assert list(fig.data[0].y) == ["push/grasp", "pick/lift"]  # drawn bottom-up: largest at the top


def test_retrieval_examples_are_a_grid_of_images_and_wrapping_captions():
    from probe.report.examples import examples_html

    png = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYPgPAAEDAQAIicLsAAAAAElFTkSuQmCC"
    ex = [F.RetrievalExample(F.Thumb("robot | pick <cup> | grasp | ep 0 f 6", png, 3),
                             [F.Thumb("human | pick <cup> | grasp | ep 2 f 5 | sim 0.93", png, 10),
                              F.Thumb("human | push | lift | ep 4 f 1 | sim 0.71", None, 11)]),
          F.RetrievalExample(F.Thumb("robot | push | lift | ep 1 f 2", None, 4), [])]
    page = examples_html(ex)
    assert "repeat(3,minmax(0,1fr))" in page  # a query and its 2 matches per row
    rows = re.findall(r"<figure class='(\w+)' data-row='(\d+)'", page)
    assert rows == [("query", "3"), ("match", "10"), ("match", "11"), ("query", "4")]
    assert page.count(f"<img src='{png}'") == 2 and page.count("no video frame") == 2
    assert page.count("<div></div>") == 2  # the second row is padded to the grid's width
    assert "<b>query: robot</b><br>pick &lt;cup&gt;<br>grasp<br>ep 0 f 6" in page  # escaped, one label a line
    assert "<b>#1: human · sim 0.93</b>" in page and "<b>#2: human · sim 0.71</b>" in page
    assert "overflow-wrap:anywhere" in page
    assert examples_html([]) == "<div class='note'>no retrieval examples</div>"


def test_color_map_fixed_colours_are_not_reused():
    cm = F.color_map(["human", "x", "y"], fixed={"human": F.PALETTE[0]})
    assert cm["human"] == F.PALETTE[0] and F.PALETTE[0] not in (cm["x"], cm["y"])
