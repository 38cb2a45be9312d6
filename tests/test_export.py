"""`probe export`: a parquet file that pandas and Embedding Atlas read fully (neighbours, text, thumbnails)."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import clustered_latents, synthetic_meta
from h264_videos import write_h264
from metrics.knn import knn
from probe import columns as C
from probe.cli import main
from probe.console import console
from probe.errors import LayerNotFoundError
from probe.projection.layout import ProjectionConfig
from probe.store.writer import write_store

FPS = 10


def _write_video(path, n_frames: int) -> None:
    """A 32x24 H.264 video whose frame i is filled with grey level 2 * i (so a frame names its time)."""
    write_h264(path, n_frames, lambda i: np.full((24, 32, 3), 2 * i, np.uint8), fps=FPS, crf="0", gop=4)


@pytest.fixture
def store(tmp_path):
    """Human rows with video (one file, episodes back to back), robot rows without."""
    meta = synthetic_meta(n_episodes=3, frames=20)
    human = (meta[C.EMBODIMENT] == "human").to_numpy()
    _write_video(tmp_path / "human.mp4", int(human.sum()))
    meta[C.VIDEO] = np.where(human, "human.mp4", None)
    meta[C.VIDEO_TIMESTAMP] = np.where(human, np.cumsum(human) - 1, 0) / FPS
    return write_store(tmp_path / "store", meta, {"trunk": clustered_latents(meta, dim=16)},
                       provenance={"datasets": [{"name": "human-data", "root": str(tmp_path)}]})


def test_export_reads_fully_in_embedding_atlas_format(store, tmp_path, capsys, monkeypatch):
    import cv2

    out = tmp_path / "my points.parquet"  # a space: printed commands must quote it
    monkeypatch.setattr(console, "width", 40)  # a narrow terminal: printed commands must not wrap
    assert main(["export", str(store.path), "--layer", "trunk", "--projection", "pca", "--cache",
                 str(tmp_path / "c"), "--thumbnails", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    table = pq.read_table(out)
    n = store.n
    schema = table.schema
    assert "row" not in schema.names and {"x", "y", "vector", C.SAMPLE_ID} <= set(schema.names)
    assert schema.field("neighbors").type == pa.struct([("ids", pa.list_(pa.int64())),
                                                        ("distances", pa.list_(pa.float32()))])
    assert schema.field("text").type == pa.string() and schema.field("thumbnail").type == pa.binary()
    df = table.to_pandas()
    # neighbours: 15 other rows of this table each, nearest first, the same as an exact search
    ids = np.stack(df["neighbors"].map(lambda v: v["ids"]).to_numpy())
    dist = np.stack(df["neighbors"].map(lambda v: v["distances"]).to_numpy())
    assert ids.shape == (n, 15) and ids.min() >= 0 and ids.max() < n
    assert not (ids == np.arange(n)[:, None]).any() and (np.diff(dist, axis=1) >= -1e-6).all()
    exact = knn(np.asarray(store.matrix("trunk")), k=15, metric="cosine")
    np.testing.assert_allclose(dist, exact.distances, atol=1e-5)
    # text: embodiment, task, stage, episode and frame
    first = df.iloc[0]
    assert first["text"] == (f"{first[C.EMBODIMENT]} · {first[C.TASK]} · {first[C.STAGE]} · "
                             f"ep {first[C.EPISODE]} f {first[C.FRAME]}")
    # thumbnails: JPEG bytes of each human row's own frame; none for rows without video
    human = (df[C.EMBODIMENT] == "human").to_numpy()
    assert df.loc[~human, "thumbnail"].isna().all() and df.loc[human, "thumbnail"].notna().all()
    for _, row in df[human].iloc[[0, 7, 45]].iterrows():
        img = cv2.imdecode(np.frombuffer(row["thumbnail"], np.uint8), cv2.IMREAD_COLOR)
        assert img.shape == (24, 32, 3) and row["thumbnail"][:2] == b"\xff\xd8"
        assert abs(float(img.mean()) - 2 * round(row[C.VIDEO_TIMESTAMP] * FPS)) < 3
    # the printed commands: one line each, that split back into what runs
    lines = [line.strip() for line in printed.splitlines()]
    atlas = [line for line in lines if line.startswith("embedding-atlas")]
    assert [shlex.split(line.split("   (")[0]) for line in atlas] == [
        ["embedding-atlas", str(out), "--x", "x", "--y", "y", "--neighbors", "neighbors", "--text", "text",
         "--image", "thumbnail"]]
    assert atlas[0].endswith("   (after: pip install embedding-atlas)")  # not installed with the toolkit
    python = [shlex.split(line) for line in lines if line.startswith("python -c")]
    assert len(python) == 1 and python[0][:2] == ["python", "-c"]
    shown = subprocess.run([sys.executable, "-c", python[0][2]], capture_output=True, text=True, check=True).stdout
    assert C.SAMPLE_ID in shown
    assert "WebGPU" in printed and "shader-f16" in printed


def test_a_sampled_export_lists_neighbours_among_the_sample(store, tmp_path):
    from probe.projection.export import export_points
    from probe.projection.layout import ProjectionConfig

    result = export_points(store.path, "trunk", tmp_path / "p.parquet", neighbors=5, include_latents=False,
                           projection=ProjectionConfig(method="pca", max_points=30), cache_dir=tmp_path / "c")
    df = pq.read_table(tmp_path / "p.parquet").to_pandas()
    ids = np.stack(df["neighbors"].map(lambda v: v["ids"]).to_numpy())
    assert result.layout.sampled and ids.shape == (30, 5) and ids.min() >= 0 and ids.max() < 30
    assert not (ids == np.arange(30)[:, None]).any() and "thumbnail" not in df.columns
    info = json.loads(pq.read_schema(tmp_path / "p.parquet").metadata[b"embodiment_probe"])
    assert info["neighbors"] == {"k": 5, "metric": "cosine", "among": "sample"}


def test_export_points_without_a_layer_exports_the_stores_last_layer(tmp_path, caplog):
    import logging

    from probe.projection.export import export_points
    from probe.projection.layout import ProjectionConfig

    meta = synthetic_meta(n_episodes=2, frames=10)
    store = write_store(tmp_path / "s", meta, {"vision": clustered_latents(meta, dim=8, seed=1),
                                               "trunk": clustered_latents(meta, dim=16, seed=2)})
    out = tmp_path / "p.parquet"
    with caplog.at_level(logging.INFO, logger="probe.projection.export"):
        result = export_points(store.path, None, out, projection=ProjectionConfig(method="pca"),
                               cache_dir=tmp_path / "c")
    assert result.layer == "trunk" and "layer trunk (the store's last of 2: vision, trunk" in caplog.text
    assert json.loads(pq.read_schema(out).metadata[b"embodiment_probe"])["layer"] == "trunk"
    vectors = np.stack(pq.read_table(out).column("vector").to_pylist())
    np.testing.assert_array_equal(vectors, np.asarray(store.matrix("trunk")))


def test_an_export_with_thumbnails_imports_without_them(store, tmp_path):
    from probe.projection.export import export_points
    from probe.projection.layout import ProjectionConfig
    from probe.store.importer import import_latents

    export_points(store.path, "trunk", tmp_path / "p.parquet", thumbnails=True, cache_dir=tmp_path / "c",
                  projection=ProjectionConfig(method="pca"))
    imported = import_latents(tmp_path / "p.parquet", tmp_path / "imported")
    assert imported.provenance["probe_export"]["dropped"] == ["x", "y", "neighbors", "text", "thumbnail"]
    assert imported.layers == ["trunk"] and "thumbnail" not in imported.meta.columns
    np.testing.assert_array_equal(np.asarray(imported.matrix("trunk")), np.asarray(store.matrix("trunk")))
    assert imported.meta[C.VIDEO].tolist() == store.meta[C.VIDEO].tolist()


def _moved_store(store, tmp_path):
    """The store with its dataset root forgotten (as a store imported from elsewhere): its videos need --data-root."""
    return write_store(tmp_path / "moved", store.meta, {"trunk": np.asarray(store.matrix("trunk"))})


def test_export_data_root_finds_the_videos_and_the_hint_follows_the_thumbnails(store, tmp_path, capsys):
    moved = _moved_store(store, tmp_path)
    base = ["export", str(moved.path), "--layer", "trunk", "--projection", "pca", "--cache", str(tmp_path / "c"),
            "--thumbnails"]
    assert main([*base, "--out", str(tmp_path / "none.parquet")]) == 0
    printed = capsys.readouterr().out
    df = pq.read_table(tmp_path / "none.parquet").to_pandas()
    assert df["thumbnail"].isna().all()
    assert "thumbnails: 0 of the 120 rows with a video (the other 120 have no video)" in printed
    assert "--data-root NAME=PATH" in printed
    atlas = [line for line in printed.splitlines() if line.strip().startswith("embedding-atlas")]
    assert len(atlas) == 1 and "thumbnail" not in atlas[0]  # no thumbnails: the hint does not name the column
    assert main([*base, "--data-root", f"human-data={tmp_path}", "--out", str(tmp_path / "p.parquet")]) == 0
    printed = capsys.readouterr().out
    df = pq.read_table(tmp_path / "p.parquet").to_pandas()
    human = (df[C.EMBODIMENT] == "human").to_numpy()
    assert df.loc[human, "thumbnail"].notna().all() and df.loc[~human, "thumbnail"].isna().all()
    assert "thumbnails: 120 of 240 rows (the other 120 have no video)" in printed
    assert any(line.strip().startswith("embedding-atlas") and "--image thumbnail" in line
               for line in printed.splitlines())
    info = json.loads(pq.read_schema(tmp_path / "p.parquet").metadata[b"embodiment_probe"])
    assert info["datasets"] == [{"name": "human-data", "root": str(tmp_path.resolve())}]
    from conftest import assert_refused

    assert_refused(capsys, [*base, "--data-root", "nope=/tmp", "--out", str(tmp_path / "q.parquet")],
                   "--data-root names dataset 'nope'", "known datasets: human-data, robot-data")
    assert not (tmp_path / "q.parquet").exists()


def test_an_export_imports_with_its_dataset_roots(store, tmp_path, monkeypatch):
    from probe.projection.export import export_points
    from probe.projection.layout import ProjectionConfig
    from probe.store.importer import import_latents
    from probe.store.media import VideoPaths

    export_points(store.path, "trunk", tmp_path / "p.parquet", cache_dir=tmp_path / "c",
                  projection=ProjectionConfig(method="pca"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the relative video values do not resolve from here: only the recorded roots help
    imported = import_latents(tmp_path / "p.parquet", tmp_path / "imported")
    assert imported.provenance["datasets"] == [{"name": "human-data", "root": str(tmp_path.resolve())}]
    videos = VideoPaths(imported)
    row = imported.meta[imported.meta[C.EMBODIMENT] == "human"].iloc[0]
    assert videos.path(row[C.VIDEO], row[C.DATASET]) == (tmp_path / "human.mp4").resolve()
    # and the imported store exports thumbnails without --data-root, as its source did
    result = export_points(imported.path, "trunk", tmp_path / "again.parquet", cache_dir=tmp_path / "c",
                           projection=ProjectionConfig(method="pca"), thumbnails=True)
    assert result.thumbnails == result.with_video == 120


def test_export_refuses_an_out_that_is_not_parquet(store, tmp_path, capsys):
    from conftest import assert_refused

    for name in ("pts.csv", "pts"):
        assert_refused(capsys, ["export", str(store.path), "--layer", "trunk", "--out", str(tmp_path / name)],
                       f"--out '{tmp_path / name}' does not end in .parquet", "pts.parquet")
        assert not (tmp_path / name).exists()
    assert not list(tmp_path.glob("*.parquet"))


def test_the_cli_leaves_every_check_to_export_points_and_opens_the_store_once(tmp_path, capsys, monkeypatch):
    import probe.projection.export
    import probe.store.store
    import probe.validate
    from conftest import assert_refused

    meta = synthetic_meta(n_episodes=2, frames=10)
    store = write_store(tmp_path / "s", meta, {"vision": clustered_latents(meta, dim=8, seed=1),
                                               "trunk": clustered_latents(meta, dim=16, seed=2)})
    calls = {"open_store": [], "check_output_path": []}

    def counted(module, name):
        real = getattr(module, name)

        def call(*args, **kwargs):
            calls[name].append(args[0])
            return real(*args, **kwargs)
        return call

    # the names the CLI imported (probe.store.store, probe.validate) and the ones export_points holds
    for module, name in ((probe.store.store, "open_store"), (probe.projection.export, "open_store"),
                         (probe.validate, "check_output_path"), (probe.projection.export, "check_output_path")):
        monkeypatch.setattr(module, name, counted(module, name))
    out = tmp_path / "p.parquet"
    argv = ["export", str(store.path), "--projection", "pca", "--cache", str(tmp_path / "c"), "--out", str(out)]
    assert main(argv) == 0  # without --layer: the CLI opened the store a first time to choose it
    assert len(calls["open_store"]) == 1 and len(calls["check_output_path"]) == 1, calls
    assert "layer trunk (the store's last of 2: vision, trunk; --layer picks another)" in capsys.readouterr().out
    assert json.loads(pq.read_schema(out).metadata[b"embodiment_probe"])["layer"] == "trunk"
    # the library's errors, before any work, as the CLI said them
    for key in calls:
        calls[key].clear()
    assert_refused(capsys, argv, f"export file '{out}' already exists", "--overwrite")
    assert_refused(capsys, [*argv[:-1], str(tmp_path / "p.csv")], f"--out '{tmp_path / 'p.csv'}' does not end in "
                   ".parquet")
    assert_refused(capsys, ["export", str(tmp_path / "none"), "--out", str(tmp_path / "q.parquet")],
                   f"store '{tmp_path / 'none'}' does not exist")
    assert_refused(capsys, [*argv[:-1], str(tmp_path / "q.parquet"), "--layer", "nope"], "layer 'nope' not found")
    assert not (tmp_path / "q.parquet").exists() and not (tmp_path / "p.csv").exists()
    assert len(calls["open_store"]) == 2  # the missing store and the unknown layer: once each


# -- export of the report's stores (a step series of two layers) -----------------------------------------------


@pytest.fixture(scope="module")
def report_stores(tmp_path_factory):
    from test_report import make_stores

    return make_stores(tmp_path_factory.mktemp("report-stores"))


def test_export_points_opens_in_pandas(report_stores, tmp_path):
    import pandas as pd
    import pyarrow.parquet as pq

    out = tmp_path / "points.parquet"
    code = main(["export", str(report_stores[0]), "--layer", "block0", "--projection", "pca", "--cache",
                 str(tmp_path / "c"), "--out", str(out)])
    assert code == 0
    df = pd.read_parquet(out)
    from probe.store.store import open_store

    store = open_store(report_stores[0])
    assert len(df) == store.n and {"x", "y", "vector", C.SAMPLE_ID, C.STAGE} <= set(df.columns)
    assert "row" not in df.columns  # rows are in store order: the table's row number is the store row
    np.testing.assert_allclose(np.stack(df["vector"].to_numpy()), store.matrix("block0"))
    assert df[C.SAMPLE_ID].tolist() == store.meta[C.SAMPLE_ID].tolist()
    info = json.loads(pq.read_schema(out).metadata[b"embodiment_probe"])
    assert info["layer"] == "block0" and info["method"] == "pca" and not info["sampled"]
    # bad inputs: existing file, unknown layer
    assert main(["export", str(report_stores[0]), "--layer", "block0", "--out", str(out)]) == 2
    from probe.projection.export import export_points

    with pytest.raises(LayerNotFoundError, match="layer 'nope' not found.*block0"):
        export_points(report_stores[0], "nope", tmp_path / "p2.parquet")
    sampled = export_points(report_stores[0], "block1", tmp_path / "p3.parquet", include_latents=False,
                            projection=ProjectionConfig(method="pca", max_points=30), cache_dir=tmp_path / "c")
    df3 = pd.read_parquet(tmp_path / "p3.parquet")
    assert len(df3) == 30 and "vector" not in df3.columns and sampled.layout.sampled


def test_export_without_layer_takes_the_stores_last_layer_and_says_so(report_stores, tmp_path, capsys):
    import pyarrow.parquet as pq

    out = tmp_path / "points.parquet"
    assert main(["export", str(report_stores[0]), "--projection", "pca", "--no-latents", "--cache", str(tmp_path / "c"),
                 "--out", str(out)]) == 0
    assert "layer block1 (the store's last of 2: block0, block1; --layer picks another)" in capsys.readouterr().out
    assert json.loads(pq.read_schema(out).metadata[b"embodiment_probe"])["layer"] == "block1"
