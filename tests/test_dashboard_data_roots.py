"""Issue #16: the stores' dataset roots, which confine the videos the toolkit reads: datasets that moved
(``--data-root``), stores of the old style, media roots recorded for symlinked caches, and the store's own files.

Real stores with real H.264 videos, read by the dashboard, ``probe retrieve --export-clips``, the report's
examples, ``probe info`` and ``probe import``.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import clustered_latents, synthetic_meta
from dashboard.app import create_app
from dashboard_video_world import (LAYER, SECRET, dataset_roots, free_port, prepare_dashboard, video_world,
                                   write_video_store)
from probe import columns as C
from probe.cli import main
from probe.errors import ConfigError, DataError
from probe.store.media import VideoPaths
from probe.store.store import open_store
from probe.store.writer import write_store
from test_dashboard_data import write_video


# -- moved datasets, old stores ----------------------------------------------------------------------


@pytest.fixture
def moved(tmp_path):
    """A clean store whose datasets then move from ``data/`` to ``elsewhere/``."""
    data, _, meta = video_world(tmp_path)
    store = write_video_store(tmp_path / "store", meta, dataset_roots(data))
    shutil.move(str(data), str(tmp_path / "elsewhere"))
    roots = {ds: tmp_path / "elsewhere" / ds for ds in ("human-data", "robot-data")}
    return store, roots, tmp_path


def test_data_root_re_points_a_moved_dataset(moved, caplog):
    store, roots, tmp = moved
    with caplog.at_level(logging.WARNING):
        lost = prepare_dashboard([store.path])
    assert lost.media == {}
    assert any("does not exist" in r.getMessage() and "--data-root human-data=PATH" in r.getMessage()
               for r in caplog.records)
    found = prepare_dashboard([store.path], data_roots=roots)
    assert set(found.media.values()) == {p.resolve() for p in (tmp / "elsewhere").glob("*/videos/*.mp4")}
    client = create_app(found).server.test_client()
    assert client.get(f"/media/{next(iter(found.media))}").status_code == 200
    with pytest.raises(ConfigError, match="known datasets: human-data, robot-data"):
        prepare_dashboard([store.path], data_roots={"nope": tmp})


def test_serve_cli_names_the_known_datasets_for_an_unknown_data_root(moved, capsys):
    store, _, tmp = moved
    assert main(["serve", str(store.path), "--port", str(free_port()), "--data-root", f"nope={tmp}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'nope'" in err and "known datasets: human-data, robot-data" in err
    assert main(["serve", str(store.path), "--port", str(free_port()), "--data-root", "human-data"]) == 2
    assert "NAME=PATH" in capsys.readouterr().err


def test_retrieve_export_clips_with_a_moved_dataset(moved, capsys):
    from probe.retrieval.index import build_index

    store, roots, tmp = moved
    build_index(store, LAYER, tmp / "idx")
    query = ["retrieve", "--index", str(tmp / "idx"), "--sample-id", "robot/pick/0/5", "-k", "2"]
    assert main(query + ["--export-clips", str(tmp / "lost")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "does not exist" in err and "--data-root" in err
    assert main(query + ["--export-clips", str(tmp / "clips"), "--data-root", f"human-data={roots['human-data']}",
                         "--data-root", f"robot-data={roots['robot-data']}"]) == 0
    assert len(list((tmp / "clips").glob("*.mp4"))) == 2
    captions = json.loads((tmp / "clips" / "clips.json").read_text())
    assert all(c["file"] for c in captions["queries"][0]["clips"])


def test_report_examples_read_frames_from_a_moved_dataset(moved):
    from probe.report.examples import retrieval_examples

    store, roots, _ = moved
    lost, _ = retrieval_examples(store, LAYER, n_queries=1, k=2)
    assert lost and lost[0].query.image is None
    found, _ = retrieval_examples(store, LAYER, n_queries=1, k=2, data_roots=roots)
    assert found[0].query.image.startswith("data:image/png") and all(m.image for m in found[0].matches)


def test_old_style_store_still_works_and_is_still_confined(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data, values, meta = video_world(tmp_path, old_style=True)
    human = np.flatnonzero((meta[C.DATASET] == "human-data").to_numpy())
    video = meta[C.VIDEO].to_numpy(dtype=object)
    (tmp_path / "secret.mp4").write_bytes(SECRET)
    video[human[0]] = str(tmp_path / "secret.mp4")
    meta[C.VIDEO] = video
    # as 'probe extract' recorded them before: the dataset paths as given on the command line
    old = [{"name": ds, "path": f"data/{ds}"} for ds in ("human-data", "robot-data")]
    store = write_video_store(tmp_path / "store", meta, old)
    prepared = prepare_dashboard([store.path])
    assert set(prepared.media.values()) == {Path(v).resolve() for v in values.values()}
    assert prepared.checkpoints[0].video_code[human[0]] == -1
    # moved: absolute per-row paths move along with --data-root
    shutil.move(str(data), str(tmp_path / "moved"))
    videos = VideoPaths(open_store(store.path), {"robot-data": tmp_path / "moved" / "robot-data"})
    robot = meta[meta[C.DATASET] == "robot-data"].iloc[0]
    assert videos.path(robot[C.VIDEO], "robot-data") == (tmp_path / "moved" / "robot-data" / "videos"
                                                         / Path(robot[C.VIDEO]).name).resolve()
    with pytest.raises(DataError, match="does not exist|--data-root"):
        VideoPaths(open_store(store.path)).path(robot[C.VIDEO], "robot-data")


def test_videos_reached_through_recorded_media_roots(tmp_path):
    """A Hugging Face cache keeps files as symlinks into blobs/: the store records that folder."""
    blobs = tmp_path / "hub" / "blobs"
    blobs.mkdir(parents=True)
    write_video(blobs / "tmp.mp4", 10).rename(blobs / "3f2a9c")  # blobs carry no suffix
    data, _, meta = video_world(tmp_path)
    link = data / "human-data" / "videos" / "cached.mp4"
    link.symlink_to(blobs / "3f2a9c")
    human = (meta[C.DATASET] == "human-data").to_numpy()
    meta.loc[human, C.VIDEO] = "videos/cached.mp4"
    plain = write_video_store(tmp_path / "plain", meta, dataset_roots(data))
    assert VideoPaths(plain).find("videos/cached.mp4", "human-data").refused
    roots = dataset_roots(data)
    roots[0]["media_roots"] = [str(blobs.resolve())]
    recorded = write_video_store(tmp_path / "recorded", meta, roots)
    assert VideoPaths(recorded).path("videos/cached.mp4", "human-data") == (blobs / "3f2a9c").resolve()


# -- the store's own files -----------------------------------------------------------------------------


def test_info_refuses_a_layer_file_outside_the_store(tmp_path, capsys):
    meta = synthetic_meta(n_episodes=1, frames=6)
    store = write_store(tmp_path / "deep" / "er" / "store", meta, {LAYER: clustered_latents(meta, dim=4)})
    np.savez(tmp_path / "x.npz", a=np.zeros(3))
    np.save(tmp_path / "deep" / "x.npy", np.zeros((len(meta), 4), np.float32))
    manifest_file = store.path / "manifest.json"
    for file in ("../../../x.npz", "../../x.npy", "/etc/passwd"):
        manifest = json.loads(manifest_file.read_text())
        manifest["layers"][LAYER]["file"] = file
        manifest_file.write_text(json.dumps(manifest))
        assert main(["info", str(store.path)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1
        assert f"layer '{LAYER}'" in err and repr(file) in err and "layers/" in err


def test_report_cli_names_the_known_datasets_for_an_unknown_data_root(moved, capsys):
    store, _, tmp = moved
    assert main(["report", str(store.path), "--out", str(tmp / "r"), "--data-root", f"nope={tmp}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "known datasets: human-data, robot-data" in err
    assert not (tmp / "r").exists()


def test_import_records_the_root_of_its_videos(tmp_path):
    from probe.store.importer import import_latents

    data, values, meta = video_world(tmp_path, old_style=True)
    meta["trunk"] = list(clustered_latents(meta, dim=4))
    meta.to_parquet(tmp_path / "latents.parquet")
    store = import_latents(tmp_path / "latents.parquet", tmp_path / "store")
    roots = {d["name"]: d["root"] for d in store.provenance["datasets"]}
    assert roots == {ds: str((data / ds / "videos").resolve()) for ds in ("human-data", "robot-data")}
    assert set(store.meta[C.VIDEO]) == {"ep0.mp4", "ep1.mp4", "ep2.mp4", "ep3.mp4"}
    videos = VideoPaths(store)
    assert {videos.path(v, d) for v, d in zip(store.meta[C.VIDEO], store.meta[C.DATASET])} == \
        {Path(v).resolve() for v in values.values()}
