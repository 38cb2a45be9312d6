"""Retriever: results as clips (window, per-episode diversity), clip export and bad input (the CLI:
test_retrieval_cli.py)."""

from __future__ import annotations

import json

import av
import numpy as np
import pandas as pd
import pytest

from conftest import clustered_latents, synthetic_meta
from metrics.knn import knn
from probe import columns as C
from probe.images import encode_image, write_image
from probe.retrieval.clips import read_frames
from probe.errors import ConfigError, DataError, IndexMismatchError, OutputExistsError
from probe.retrieval.index import IndexConfig, build_index
from probe.retrieval.retriever import RESULT_COLUMNS, ClipReference, Retriever, score_of, select_clips
from probe.store.writer import write_store
from retrieval_world import FPS, level as _level, robot_sample as _robot_sample, world as world  # noqa: F401


def test_results_are_clips_with_windows_and_video_times(world):
    store, tmp = world
    r = Retriever.open(tmp / "idx")
    res = r.search_samples([_robot_sample(store)], k=4, per_episode=1, window=0.5)
    assert list(res.columns) == list(RESULT_COLUMNS) and len(res) == 4
    assert (res[C.EMBODIMENT] == "human").all() and list(res["rank"]) == [1, 2, 3, 4]
    assert res[[C.DATASET, C.EPISODE]].drop_duplicates().shape[0] == 4  # one clip per episode
    assert (np.diff(res["distance"]) >= 0).all() and np.allclose(res["score"], 1 - res["distance"])
    meta = store.meta
    for _, hit in res.iterrows():
        ep = meta[(meta[C.EPISODE] == hit[C.EPISODE]) & (meta[C.DATASET] == hit[C.DATASET])]
        assert hit["start"] == max(ep[C.TIMESTAMP].min(), hit[C.TIMESTAMP] - 0.5)
        assert hit["end"] == min(ep[C.TIMESTAMP].max(), hit[C.TIMESTAMP] + 0.5)
        row = meta[meta[C.SAMPLE_ID] == hit[C.SAMPLE_ID]].iloc[0]
        assert hit["video_start"] == pytest.approx(row[C.VIDEO_TIMESTAMP] - (hit[C.TIMESTAMP] - hit["start"]))
        assert hit["video"] == row[C.VIDEO]
    # the query is a pick/grasp moment: the three human pick episodes come first, at grasp, then another task
    assert list(res[C.TASK]) == ["pick"] * 3 + ["push"] and (res[C.STAGE].iloc[:3] == "grasp").all()


def test_first_clip_is_the_exact_nearest_neighbour(world):
    store, _ = world
    X = np.asarray(store.matrix("trunk"))
    human = np.flatnonzero(store.meta[C.EMBODIMENT] == "human")
    q = X[np.flatnonzero(store.meta[C.SAMPLE_ID] == _robot_sample(store))]
    res = Retriever.open(world[1] / "idx").search(q, k=1, per_episode=None, window=0.0)
    nn = knn(q, X[human], 1, "cosine")
    assert res["store_row"].iloc[0] == human[nn.indices[0, 0]]
    assert res["distance"].iloc[0] == pytest.approx(nn.distances[0, 0], abs=1e-5)


def test_one_clip_selection_over_an_index_or_raw_arrays(world):
    """The report selects clips by exact search over raw arrays, the dashboard through an index: the same clips."""
    store, tmp = world
    r = Retriever.open(tmp / "idx")
    X = np.asarray(store.matrix("trunk"))
    human = np.flatnonzero(store.meta[C.EMBODIMENT] == "human")
    rows = np.flatnonzero(store.meta[C.EMBODIMENT] == "robot")[[3, 40, 77]]
    own = [{C.episode_key(d, e)} for d, e in store.meta.iloc[rows][[C.DATASET, C.EPISODE]].itertuples(index=False)]

    def search(q, depth):
        nb = knn(q, X[human], depth, "cosine")
        return nb.distances, nb.indices

    raw = select_clips(search, X[rows], 4, ClipReference.of(store.meta.iloc[human]), per_episode=1, window=1.0,
                       exclude_episodes=own)
    indexed = r.select(X[rows], 4, per_episode=1, window=1.0, exclude_episodes=own)
    assert [[human[i] for i, _ in q] for q in raw] == [[r.index.rows[i] for i, _ in q] for q in indexed]
    assert np.allclose([d for q in raw for _, d in q], [d for q in indexed for _, d in q], atol=1e-5)
    res = r.search(X[rows], 4, per_episode=1, window=1.0, exclude_episodes=own)
    assert res["store_row"].tolist() == [r.index.rows[i] for q in indexed for i, _ in q]
    assert np.allclose(res["score"], score_of(res["distance"].to_numpy(), "cosine"))
    assert score_of(0.25, "cosine") == 0.75 and score_of(0.25, "l2") == -0.25


def test_clip_reference_merges_hits_of_one_moment():
    meta = synthetic_meta(n_episodes=1, frames=10, tasks=("pick",), embodiments=("human",))
    ref = ClipReference.of(meta)  # one episode, frames 0.1 s apart
    ids, dist = np.array([5, 6, 2, 9, -1]), np.array([0.1, 0.2, 0.3, 0.4, np.inf])
    assert [i for i, _ in ref.select(ids, dist, 3, window=0.15)] == [5, 2, 9]  # 6 lies inside 5's clip
    assert [i for i, _ in ref.select(ids, dist, 3, per_episode=1)] == [5]
    assert ref.select(ids, dist, 3, exclude={C.episode_key(meta[C.DATASET].iat[0], meta[C.EPISODE].iat[0])}) == []
    start, end = ref.span(np.array([0, 5]), 0.15)
    assert np.allclose(start, [0.0, 0.35]) and np.allclose(end, [0.15, 0.65])


def test_per_episode_and_overlapping_windows(world):
    store, tmp = world
    r = Retriever.open(tmp / "idx")
    res = r.search_samples([_robot_sample(store)], k=6, per_episode=2, window=0.2)
    per_ep = res.groupby([C.DATASET, C.EPISODE]).size()
    assert per_ep.max() <= 2 and len(res) == 6
    for _, group in res.groupby(C.EPISODE):  # no clip's matched frame lies inside another clip of its episode
        t = group[C.TIMESTAMP].to_numpy()
        for i in range(len(group)):
            for j in range(len(group)):
                if i != j:
                    assert not (group["start"].iloc[j] <= t[i] <= group["end"].iloc[j])
    # only 6 human episodes exist: asking for 8 clips at one per episode gives 6
    assert len(r.search_samples([_robot_sample(store)], k=8, per_episode=1)) == 6


def test_task_filter_and_own_episode_excluded(world):
    store, tmp = world
    r = Retriever.open(tmp / "idx")
    res = r.search_samples([_robot_sample(store)], k=3, task="push")
    assert (res[C.TASK] == "push").all()
    human_q = r.search_samples(["human/pick/0/5"], k=3, per_episode=None, window=0.0)
    own = store.meta.loc[store.meta[C.SAMPLE_ID] == "human/pick/0/5", C.EPISODE].iloc[0]
    assert (human_q[C.EPISODE] != own).all()
    with pytest.raises(ConfigError, match="task 'open' has no human samples in the index; its tasks are: pick, push"):
        r.search_samples([_robot_sample(store)], k=3, task="open")


def test_search_by_frame_and_batch_of_queries(world):
    store, tmp = world
    r = Retriever.open(tmp / "idx")
    row = store.meta[store.meta[C.SAMPLE_ID] == _robot_sample(store)].iloc[0]
    by_frame = r.search_frame(int(row[C.EPISODE]), 10, k=3)
    by_id = r.search_samples([_robot_sample(store)], k=3)
    pd.testing.assert_frame_equal(by_frame, by_id)
    X = np.asarray(store.matrix("trunk"))[:5]
    batch = r.search(X, k=2, per_episode=1)
    assert sorted(set(batch["query"])) == [0, 1, 2, 3, 4] and (batch.groupby("query").size() == 2).all()


def test_query_not_in_store(world):
    store, tmp = world
    r = Retriever.open(tmp / "idx")
    with pytest.raises(DataError, match=r"episode 999 is not in store .*its episodes are human: 6 episodes"):
        r.search_frame(999, 0)
    ep = int(store.meta[C.EPISODE].iloc[-1])
    with pytest.raises(DataError, match=rf"frame 57 is not in episode {ep} .*frames 0..19 \(nearest stored frame: 19\)"):
        r.search_frame(ep, 57)
    with pytest.raises(DataError, match="sample id.*not in store.*first: 'nope'"):
        r.search_samples(["nope"])
    with pytest.raises(DataError, match="dataset 'other' is not in store"):
        r.search_frame(ep, 0, dataset="other")


def test_k_larger_than_reference_set(world):
    store, tmp = world
    r = Retriever.open(tmp / "idx")
    with pytest.raises(ConfigError, match=r"k=121 must lie in 1..120: the reference set \(human\) holds 120"):
        r.search_samples([_robot_sample(store)], k=121)
    with pytest.raises(ConfigError, match=r"k=61 must lie in 1..60.*task 'pick'"):
        r.search_samples([_robot_sample(store)], k=61, task="pick")


def test_retriever_against_another_store_or_layer(world):
    store, tmp = world
    meta = store.meta.copy()
    other = write_store(tmp / "other", meta, {"trunk": clustered_latents(meta, dim=16, seed=3)})
    with pytest.raises(IndexMismatchError, match="fingerprint"):
        Retriever.open(tmp / "idx", other)
    with pytest.raises(IndexMismatchError, match="holds layer 'trunk', not 'head'"):
        Retriever.open(tmp / "idx", layer="head")


def test_read_frames_cuts_the_right_window(world):
    _, tmp = world
    frames, fps = read_frames(tmp / "human.mp4", 2.0, 2.5)
    assert fps == pytest.approx(FPS) and [_level(f) for f in frames] == [20, 21, 22, 23, 24, 25]
    single, _ = read_frames(tmp / "human.mp4", 3.0, 3.0)
    assert [_level(f) for f in single] == [30]


def test_export_clips_writes_mp4_sheet_and_captions(world):
    store, tmp = world
    r = Retriever.open(tmp / "idx")
    res = r.search_samples([_robot_sample(store)], k=3, window=0.3)
    query_img = np.zeros((24, 32, 3), np.uint8)
    from probe.retrieval.clips import export_clips

    out = export_clips(res, tmp / "clips", queries=[{"image": query_img, "caption": "robot pick"}])
    assert len(out.clips) == 3 and all(p.exists() for p in out.clips)
    for clip, (_, hit) in zip(out.clips, res.iterrows()):
        with av.open(str(clip)) as c:
            s = c.streams.video[0]
            assert s.codec_context.name == "h264"
            decoded = [f.to_ndarray(format="rgb24") for f in c.decode(s)]
        first = int(round(hit["video_start"] * FPS))
        last = int(round(hit["video_end"] * FPS))
        assert [_level(f) for f in decoded] == list(range(first, last + 1))
    sheet = _read_image(out.sheet)
    assert sheet.shape[0] >= 128 and sheet.shape[1] > 4 * 128  # query + 3 clips in one row
    captions = json.loads(out.captions.read_text())
    assert captions["queries"][0]["caption"] == "robot pick"
    assert [c["rank"] for c in captions["queries"][0]["clips"]] == [1, 2, 3]
    assert "pick / grasp" in captions["queries"][0]["clips"][0]["caption"]
    assert "<video src='" in out.html.read_text()
    with pytest.raises(OutputExistsError):
        export_clips(res, tmp / "clips")


def test_store_without_video_still_works(tmp_path):
    meta = synthetic_meta(n_episodes=2, frames=10)
    store = write_store(tmp_path / "s", meta, {"l": clustered_latents(meta, dim=8)})
    build_index(store, "l", tmp_path / "idx", config=IndexConfig(kind="hnsw"))
    r = Retriever.open(tmp_path / "idx")
    res = r.search_samples(["robot/pick/0/3"], k=2)
    assert res[C.VIDEO].isna().all() and res["video_start"].isna().all() and len(res) == 2
    from probe.retrieval.clips import export_clips

    out = export_clips(res, tmp_path / "clips")
    assert out.clips == [] and "no video columns" in out.notes[0] and out.sheet.exists()


def _read_image(path) -> np.ndarray:
    import cv2

    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def test_images_are_written_by_opencv_in_rgb(tmp_path):
    import cv2

    img = np.random.default_rng(0).integers(0, 256, size=(7, 5, 3), dtype=np.uint8)
    np.testing.assert_array_equal(_read_image(write_image(tmp_path / "x.png", img)), img)  # PNG: lossless
    jpeg = encode_image(np.full((16, 16, 3), (250, 10, 10), np.uint8), ".jpg")
    decoded = cv2.cvtColor(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert jpeg[:2] == b"\xff\xd8" and np.abs(decoded.astype(int) - (250, 10, 10)).max() < 8  # red stays red


def test_contact_sheet_shows_each_query_frame_and_labels_in_a_font(world):
    from probe.retrieval.clips import contact_sheet, export_clips, thumbnail
    from probe.store.media import VideoPaths
    from probe.store.store import open_store

    store, tmp = world
    # the same store with its dataset root recorded, so that its videos resolve through VideoPaths
    store = write_store(tmp / "rooted", store.meta, {"trunk": np.asarray(store.matrix("trunk"))},
                        provenance={"datasets": [{"name": "human-data", "root": str(tmp)}]})
    build_index(store, "trunk", tmp / "idx-rooted", embodiment="human")
    r = Retriever.open(tmp / "idx-rooted", open_store(store.path))
    human = store.meta[store.meta[C.EMBODIMENT] == "human"]
    queries = human[C.SAMPLE_ID].iloc[[13, 47]].tolist()  # human frames: they have video
    res = r.search_samples(queries, k=2)
    out = export_clips(res, tmp / "clips", videos=VideoPaths(r.store))
    sheet = _read_image(out.sheet)
    boxes = json.loads(out.captions.read_text())["queries"]
    for q, sid in zip(boxes, queries):
        row = human[human[C.SAMPLE_ID] == sid].iloc[0]
        frame = read_frames(tmp / "human.mp4", row[C.VIDEO_TIMESTAMP], row[C.VIDEO_TIMESTAMP])[0][0]
        expected = thumbnail(frame)
        x, y, _, _ = q["query_box"]
        tile = sheet[y + 3 : y + 3 + expected.shape[0], x + 3 : x + 3 + expected.shape[1]]
        assert _level(frame) == round(row[C.VIDEO_TIMESTAMP] * FPS)  # the query's own frame ...
        assert tile.std() > 30  # ... drawn in its tile (not a flat grey cell)
        np.testing.assert_allclose(tile, expected, atol=1)
    # labels are text drawn below each thumbnail: the strip differs between "query" and "#1  0.93"
    blank = np.zeros((24, 32, 3), np.uint8)
    img, cells = contact_sheet([[blank, blank]], [["query", "#1  0.93"]])
    strips = [img[y + 3 + 128 : y + h - 3, x + 3 : x + w - 3] for x, y, w, h in cells[0]]
    assert all((s > 200).any() for s in strips) and not np.array_equal(strips[0], strips[1])
