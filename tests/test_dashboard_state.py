"""Prepared data, URL state and event handling of the dashboard (no browser)."""

from __future__ import annotations

import numpy as np
import pytest

from dashboard.state.viewstate import ColorBy, ViewState, decode_state, encode_state, state_from_dict
from dashboard.state.events import apply_event, click_row, mark_points, selected_clips
from dashboard.state.loading import prepare
from probe import columns as C
from probe.errors import ConfigError, LayerNotFoundError, StoreError, StoreNotFoundError
from test_dashboard_data import light_metrics, make_stores


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("dash-state")
    stores = make_stores(root)
    return prepare([s.path for s in stores], k=4, method="pca", metrics_config=light_metrics())


def test_prepare_builds_a_view_per_checkpoint_and_layer(prepared):
    assert prepared.names == ["step 100", "step 200"]  # labelled from provenance, as in the report
    assert prepared.layers == ["trunk.block0", "trunk.block1"]
    assert set(prepared.views) == {(c, l) for c in (0, 1) for l in prepared.layers}
    ck = prepared.checkpoints[0]
    assert len(ck.rows) == ck.store.n
    for view in prepared.views.values():
        assert view.coords.shape == (len(ck.rows), 2) and view.coords.dtype == np.float32
        assert np.isfinite(view.coords).all()
        assert view.metrics is not None and view.metrics["metrics"]
    # one registered video per episode, tokens are opaque
    assert len(prepared.media) == ck.meta[C.VIDEO].nunique()
    assert all(len(t) == 20 and p.is_absolute() for t, p in prepared.media.items())


def test_layouts_of_checkpoints_are_aligned(prepared):
    a = prepared.views[(0, "trunk.block0")].coords
    b = prepared.views[(1, "trunk.block0")].coords
    # aligned onto the first checkpoint: the same samples stay roughly where they were
    spread = np.linalg.norm(a - a.mean(0), axis=1).mean()
    assert np.linalg.norm(a - b, axis=1).mean() < spread


def test_max_points_subsamples_the_same_samples_in_every_checkpoint(tmp_path):
    stores = make_stores(tmp_path, video=False)
    p = prepare([s.path for s in stores], layers="trunk.block1", max_points=50, method="pca", metrics_config=light_metrics())
    ids0 = p.checkpoints[0].points[C.SAMPLE_ID].tolist()
    ids1 = p.checkpoints[1].points[C.SAMPLE_ID].tolist()
    assert len(ids0) == 50 and ids0 == ids1
    ck = p.checkpoints[0]
    assert (ck.point_of_row[ck.rows] == np.arange(50)).all()
    assert (ck.point_of_row >= 0).sum() == 50
    assert p.media == {}


def test_the_page_opens_on_the_start_layer_and_keeps_the_others(tmp_path):
    stores = make_stores(tmp_path / "s", n_episodes=2, frames=10, video=False)
    paths = [s.path for s in stores]
    first = stores[0].layers[0]
    shown = prepare(paths, method="pca", metrics_config=light_metrics(), lazy=True, start=first)
    assert shown.layers == stores[0].layers and shown.default_state().layer == first and shown.start_note is None
    assert shown.views.order[0] == (0, first) and (0, first) in shown.views._views  # prepared first
    with pytest.raises(LayerNotFoundError, match="layer 'nope' not found"):
        prepare(paths, method="pca", metrics_config=light_metrics(), lazy=True, start="nope")
    one = prepare(paths, layers=first, method="pca", metrics_config=light_metrics(), lazy=True)
    assert one.default_state().layer == first and one.start_note is None  # no choice: nothing to say


def test_prepare_errors(tmp_path):
    with pytest.raises(StoreNotFoundError, match="does not exist"):
        prepare([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="manifest.json is missing"):
        prepare([tmp_path / "empty"])
    with pytest.raises(ConfigError, match="no store given"):
        prepare([])
    stores = make_stores(tmp_path / "s", n_episodes=1, video=False, checkpoints=1)
    with pytest.raises(LayerNotFoundError, match="trunk.block9"):
        prepare([stores[0].path], layers="trunk.block9")
    with pytest.raises(ConfigError, match="max_points must be >= 10"):
        prepare([stores[0].path], max_points=1)


def test_url_state_round_trip(prepared):
    default = prepared.default_state()
    first, second = prepared.names
    state = default.with_(store=first, layer="trunk.block1", color="stage", task=["pick"],
                          stage=["grasp", "lift"], point="robot/pick/0/3", compare=[first, second])
    search = encode_state(state, default)
    assert search.startswith("?") and "stage=grasp&stage=lift" in search
    back, notices = decode_state(search, prepared.choices(), default)
    assert back == state and notices == []


def test_url_state_with_commas_and_spaces_round_trips(prepared):
    default = prepared.default_state()
    choices = prepared.choices()
    choices.categories["task"].append("pick up, then place")  # a task instruction with a comma
    try:
        state = default.with_(task=["pick up, then place"])
        assert decode_state(encode_state(state), choices, default)[0].task == ("pick up, then place",)
    finally:
        choices.categories["task"].pop()


@pytest.mark.parametrize("search, notice", [
    ("?store=step-999999", "store 'step-999999' is not available"),
    ("?layer=nope", "layer 'nope' is not available"),
    ("?color=rainbow", "color 'rainbow' is not available"),
    ("?stage=fly&stage=grasp", "ignored unknown stage value(s): fly"),
    ("?point=robot/pick/99/99", "is not a point of checkpoint"),
    ("?bogus=1", "unknown URL parameter(s): bogus"),
    ("?compare=a&compare=b", "compare holds at most"),
])
def test_stale_url_state_falls_back_with_a_notice(prepared, search, notice):
    state, notices = decode_state(search, prepared.choices(), prepared.default_state())
    assert any(notice in n for n in notices), notices
    assert state.store in prepared.names and state.layer in prepared.layers
    assert "fly" not in state.stage and state.point is None


def test_garbage_url_never_fails(prepared):
    for search in ("", None, "?", "?%zz", "?store", "?&&==", "?point=%00"):
        state, _ = decode_state(search, prepared.choices(), prepared.default_state())
        assert state.store in prepared.names
    assert state_from_dict({"color": "nope"}, prepared.default_state()) == prepared.default_state()
    assert state_from_dict(None, prepared.default_state()) == prepared.default_state()


def test_click_maps_to_rows_by_point_index(prepared):
    state = prepared.default_state()
    _, ck = prepared.checkpoint(state.store)
    for p in (0, 7, len(ck.rows) - 1):
        assert click_row(prepared, state, {"points": [{"curveNumber": 0, "pointIndex": p}]}) == ck.rows[p]
    assert click_row(prepared, state, {"points": [{"curveNumber": 0, "pointNumber": 5}]}) == ck.rows[5]
    # unknown points: no row, no exception
    for bad in (None, {}, {"points": []}, {"points": [{"curveNumber": 0, "pointIndex": 10**9}]},
                {"points": [{"curveNumber": 0, "pointIndex": -1}]}, {"points": [{"curveNumber": 9, "pointIndex": 0}]},
                {"points": [{"curveNumber": 0, "pointIndex": "x"}]}):
        assert click_row(prepared, state, bad) is None


def test_click_on_trajectory_trace_maps_to_the_episode_rows(prepared):
    state = prepared.default_state()
    _, ck = prepared.checkpoint(state.store)
    robot = int(np.flatnonzero(ck.meta[C.EMBODIMENT] == "robot")[5])
    state = apply_event(prepared, state, "click", {"points": [{"curveNumber": 0, "pointIndex": int(ck.point_of_row[robot])}]})
    assert state.point == ck.meta[C.SAMPLE_ID].iat[robot]
    traj = ck.trajectory(robot)
    frames = ck.points[C.FRAME].to_numpy()[traj]
    assert (np.diff(frames) > 0).all()
    assert (ck.points["episode_key"].to_numpy()[traj] == ck.points["episode_key"].iat[ck.point_of_row[robot]]).all()
    row = click_row(prepared, state, {"points": [{"curveNumber": 1, "pointIndex": 2}]})
    assert row == ck.rows[traj[2]]


def test_selected_point_gives_k_human_clips_from_other_episodes(prepared):
    state = prepared.default_state()
    _, ck = prepared.checkpoint(state.store)
    robot = int(np.flatnonzero(ck.meta[C.EMBODIMENT] == "robot")[0])
    state = state.with_(point=ck.meta[C.SAMPLE_ID].iat[robot])
    clips = selected_clips(prepared, state)
    assert len(clips) == 4
    assert all(ck.meta[C.EMBODIMENT].iat[c.row] == "human" for c in clips)
    assert len({c.episode for c in clips}) == 4
    scores = [c.score for c in clips]
    assert scores == sorted(scores, reverse=True)
    # the clusters are (task, stage): the best match shares the robot's stage and task
    assert clips[0].stage == ck.meta[C.STAGE].iat[robot] and clips[0].task == ck.meta[C.TASK].iat[robot]
    c = clips[0]
    assert c.video_token in prepared.media and c.video_start <= c.video_end and c.start <= c.end
    marks = mark_points(prepared, state)
    assert marks[0] == ck.point_of_row[robot] and len(marks) == 5


def test_events(prepared):
    state = prepared.default_state()
    assert apply_event(prepared, state, "color", "stage").color is ColorBy.STAGE
    assert apply_event(prepared, state, "color", "rainbow") == state
    assert apply_event(prepared, state, "store", "nope") == state
    assert apply_event(prepared, state, "stage", ["grasp", "fly"]).stage == ("grasp",)
    s = apply_event(prepared, state, "metric_stage", "lift")
    assert s.stage == ("lift",) and apply_event(prepared, s, "metric_stage", "lift").stage == ()
    s = apply_event(prepared, s.with_(point="robot/pick/0/1", task=["pick"]), "clear", None)
    assert s.stage == () and s.task == () and s.point is None
    assert len(apply_event(prepared, state, "compare", prepared.names * 3).compare) <= 4
    assert isinstance(state, ViewState)


def test_umap_layouts_are_cached_warm_started_and_trustworthy(tmp_path):
    stores = make_stores(tmp_path / "s", n_episodes=2, frames=10, video=False)
    cache = tmp_path / "cache"
    p = prepare([s.path for s in stores], layers="trunk.block0", cache=cache, metrics_config=light_metrics())
    views = [p.views[(i, "trunk.block0")] for i in (0, 1)]
    assert all(v.method == "umap" and v.trustworthiness > 0.8 for v in views)
    assert any(cache.rglob("*")) and any((cache / "dashboard-indexes").iterdir())
    again = prepare([s.path for s in stores], layers="trunk.block0", cache=cache, metrics_config=light_metrics())
    assert np.allclose(again.views[(1, "trunk.block0")].coords, views[1].coords)
    # metrics live in the cache probe.measure.suite shares with 'probe metrics' and the report: one entry per store
    from probe.measure.suite import evaluate

    assert len(list((cache / "metrics").glob("*.json"))) == len(stores)
    cached = evaluate(stores[1].path, "trunk.block0", light_metrics(), cache_dir=cache)[0]
    assert cached["metrics"] == again.views[(1, "trunk.block0")].metrics["metrics"]


def test_metrics_panel_shows_headline_per_stage_and_gaps(prepared):
    from dash import html

    from dashboard.layout import metrics_panel
    from dashboard.state.metrics_panel import headline_order

    view = prepared.views[(1, "trunk.block0")]
    assert set(view.metrics["per_stage"]) == {"reach", "grasp", "lift"}
    assert all(isinstance(g, str) for g in view.coverage) and view.coverage
    panel = html.Div(metrics_panel(view.metrics, view.coverage, ("grasp",), "", headline_order()))
    text = str(panel)
    assert "ilisi" in text and "knn_embodiment_mixing" in text and "coverage gaps" in text
    # the headline rows and per-stage columns derive from the one headline list
    headline, stages = (next(c for c in _walk(panel) if getattr(c, "id", None) == name)
                        for name in ("metrics-headline", "metrics-stages"))
    assert [r.children[0].children.split()[0] for r in headline.children[1:]] == [
        "ilisi", "knn_embodiment_mixing", "silhouette_stage", "retrieval_precision_at_1_robot_to_human"]
    assert [th.children for th in stages.children[0].children] == [
        "stage", "ilisi", "silhouette_stage", "retrieval_precision_at_1_robot_to_human"]
    buttons = [c for c in _walk(panel) if isinstance(c, html.Button)]
    assert {b.id["index"] for b in buttons} == {"reach", "grasp", "lift"}
    assert [b.style["fontWeight"] for b in buttons if b.id["index"] == "grasp"] == ["bold"]
    empty = html.Div(metrics_panel({"error": "layer 'x': only one embodiment"}, [], (), ""))
    assert "only one embodiment" in str(empty)


def _walk(component):
    yield component
    children = getattr(component, "children", None)
    if isinstance(children, (list, tuple)):
        for c in children:
            yield from _walk(c)
    elif children is not None and hasattr(children, "children"):
        yield from _walk(children)


def test_one_embodiment_store_prepares_without_metrics(tmp_path):
    from conftest import clustered_latents, synthetic_meta
    from probe.store.writer import write_store

    meta = synthetic_meta(n_episodes=2, frames=6, embodiments=("robot",))
    store = write_store(tmp_path / "robot-only", meta, {"l": clustered_latents(meta)})
    p = prepare([store.path], method="pca", metrics_config=light_metrics())
    view = p.views[(0, "l")]
    assert "error" in view.metrics and view.neighbours.clips(0) == []


def test_click_clips_agree_with_the_retriever(prepared):
    view = prepared.views[(1, "trunk.block1")]
    search = view.neighbours
    r = search.retriever
    meta = r.store.meta
    for row in (0, 50, len(meta) - 1):
        own = {C.episode_key(meta[C.DATASET].iat[row], meta[C.EPISODE].iat[row])}
        ref = r.search(np.asarray(r.store.matrix(r.layer)[[row]]), 4, per_episode=1, window=1.0,
                       exclude_episodes=[own])
        mine = search.clips(row, 4)
        assert [c.sample_id for c in mine] == ref[C.SAMPLE_ID].tolist()
        assert np.allclose([c.score for c in mine], ref["score"].to_numpy(), atol=1e-5)
        assert np.allclose([c.start for c in mine], ref["start"].to_numpy())
        assert np.allclose([c.video_start for c in mine], ref["video_start"].to_numpy())


def test_a_broken_cached_index_is_rebuilt(tmp_path):
    stores = make_stores(tmp_path / "s", n_episodes=2, frames=10, video=False)
    cache = tmp_path / "cache"
    prepare([s.path for s in stores[:1]], layers="trunk.block0", cache=cache, method="pca",
            metrics_config=light_metrics())
    entries = list((cache / "dashboard-indexes").iterdir())
    assert entries
    for entry in entries:  # a killed write or a disk error left the entries unreadable
        for f in entry.iterdir():
            f.write_text("garbage")
    again = prepare([s.path for s in stores[:1]], layers="trunk.block0", cache=cache, method="pca",
                    metrics_config=light_metrics())
    robot_row = int(np.flatnonzero(stores[0].meta[C.EMBODIMENT].to_numpy() == "robot")[0])
    assert again.views[(0, "trunk.block0")].neighbours.clips(robot_row)


def test_lazy_prepare_answers_with_the_first_map_and_prepares_the_rest_on_use_or_in_the_background(tmp_path):
    from dashboard.app import create_app

    stores = make_stores(tmp_path / "s", n_episodes=2, frames=10, video=False)
    paths = [s.path for s in stores]
    lazy = prepare(paths, method="pca", metrics_config=light_metrics(), lazy=True)
    total = len(stores) * len(lazy.layers)
    # only the first store's map of the layer the page opens on: the last (the one default-layer rule)
    assert len(lazy.views) == total and lazy.views.ready() == 1 and (0, lazy.layers[-1]) in lazy.views._views
    assert lazy.default_state().layer == lazy.layers[-1] and "--start-layer picks another" in lazy.start_note
    client = create_app(lazy).server.test_client()
    assert client.get("/", headers={"Host": "127.0.0.1:8050"}).status_code == 200
    # a map opened before the background reached it is prepared on use, with its warm-start chain
    last = (len(stores) - 1, lazy.layers[0])
    assert lazy.views[last].coords.shape[1] == 2 and lazy.views.ready() == 1 + len(stores)
    lazy.views.start().join(timeout=120)
    assert lazy.views.ready() == total and lazy.views.error is None
    eager = prepare(paths, method="pca", metrics_config=light_metrics())
    for key in eager.views:  # the same maps, whichever order they were prepared in
        np.testing.assert_allclose(lazy.views[key].coords, eager.views[key].coords, atol=1e-5)


def test_checkpoint_menu_follows_training_order_not_the_command_line(tmp_path):
    from dashboard import ids
    from dashboard.layout import page

    stores = make_stores(tmp_path / "s", n_episodes=1, frames=6, video=False, checkpoints=3)
    given = [stores[2].path, stores[0].path, stores[1].path]  # steps 300, 100, 200
    p = prepare(given, layers="trunk.block0", method="pca", metrics_config=light_metrics(), lazy=True)
    assert p.names == ["step 100", "step 200", "step 300"]
    assert [ck.store.path for ck in p.checkpoints] == [s.path for s in stores]  # each label keeps its store
    assert p.categories["checkpoint"] == p.names and p.default_state().store == "step 100"
    menu = next(c for c in _walk(page(p)) if getattr(c, "id", None) == ids.STORE)
    assert [o["value"] for o in menu.options] == p.names


def test_prepare_without_a_cache_leaves_no_temporary_folder(tmp_path, monkeypatch):
    import gc
    import tempfile

    stores = make_stores(tmp_path / "s", n_episodes=1, frames=6, video=False, checkpoints=1)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where mkdtemp puts the index folder

    def leftovers():
        return sorted(p.name for p in scratch.glob("probe-dash-*"))

    with prepare([stores[0].path], method="pca", metrics_config=light_metrics()) as p:
        assert leftovers() and p.views.index_root.is_dir() and any(p.views.index_root.iterdir())  # indexes built
        robot = int(np.flatnonzero(p.checkpoints[0].meta[C.EMBODIMENT] == "robot")[0])
        assert p.views[(0, "trunk.block0")].neighbours.clips(robot)  # the index is in memory
    assert leftovers() == []
    p.close()  # idempotent
    # dropped without closing: garbage collection removes it
    p = prepare([stores[0].path], method="pca", metrics_config=light_metrics(), lazy=True)
    assert leftovers()
    del p
    gc.collect()
    assert leftovers() == []
    # with a cache the indexes are kept there, never in a temporary folder
    p = prepare([stores[0].path], method="pca", metrics_config=light_metrics(), cache=tmp_path / "cache")
    p.close()
    assert leftovers() == [] and any((tmp_path / "cache" / "dashboard-indexes").iterdir())
