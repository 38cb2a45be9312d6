"""The latent store: round trips, atomic writes, and every bad input named in the issue."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from probe import columns as C
from probe.errors import LatentsError, OutputExistsError, StoreError, StoreNotFoundError
from probe.latents import Latents
from probe.store.store import open_store
from probe.store.writer import StoreWriter, write_store


def test_write_and_open_round_trip(tmp_path, meta, latents_matrix):
    store = write_store(tmp_path / "s", meta, {"trunk.block1": latents_matrix, "enc": latents_matrix[:, :4].copy()},
                        provenance={"checkpoint": {"path": "x"}}, pooling={"trunk.block1": "mean"})
    again = open_store(tmp_path / "s")
    assert again.layers == ["trunk.block1", "enc"]
    assert again.layer_info("trunk.block1") == {"dim": 16, "pooling": "mean", "file": "trunk.block1.npy", "dtype": "float32"}
    lat = again.latents("trunk.block1")
    assert isinstance(lat.X, np.memmap)
    np.testing.assert_array_equal(np.asarray(lat.X), latents_matrix)
    pd.testing.assert_frame_equal(lat.meta, meta.reset_index(drop=True), check_dtype=False)
    assert store.fingerprint == again.fingerprint and len(store.fingerprint) == 64
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert manifest["format"] == "probe-latent-store" and manifest["version"] == 1 and manifest["n"] == len(meta)


def test_selectors(meta, latents_matrix):
    lat = Latents(latents_matrix, meta, "l")
    human = lat.of("human")
    assert set(human.meta[C.EMBODIMENT]) == {"human"} and len(human) == (meta[C.EMBODIMENT] == "human").sum()
    grasp = lat.where(stage="grasp", task=["pick"])
    assert set(grasp.meta[C.STAGE]) == {"grasp"} and set(grasp.meta[C.TASK]) == {"pick"}
    np.testing.assert_array_equal(grasp.X, latents_matrix[lat.mask(stage="grasp", task="pick")])
    assert lat.stages == ["reach", "grasp", "lift"]
    assert len(set(lat.episode_keys())) == meta.groupby([C.DATASET, C.EPISODE]).ngroups


def test_refuses_to_overwrite_and_keeps_old(tmp_path, meta, latents_matrix):
    write_store(tmp_path / "s", meta, {"a": latents_matrix})
    with pytest.raises(OutputExistsError, match="already exists.*--overwrite"):
        write_store(tmp_path / "s", meta, {"b": latents_matrix})
    assert open_store(tmp_path / "s").layers == ["a"]
    write_store(tmp_path / "s", meta, {"b": latents_matrix}, overwrite=True)
    assert open_store(tmp_path / "s").layers == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


def test_failed_write_leaves_nothing(tmp_path, meta, latents_matrix):
    bad = latents_matrix.copy()
    bad[3, 2] = np.nan
    with pytest.raises(LatentsError, match="NaN or Inf.*first rows: 3"):
        write_store(tmp_path / "s", meta, {"a": bad})
    assert list(tmp_path.iterdir()) == []


def test_missing_store(tmp_path):
    with pytest.raises(StoreNotFoundError, match="does not exist.*probe extract"):
        open_store(tmp_path / "nope")


def test_empty_directory(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="manifest.json is missing"):
        open_store(tmp_path / "empty")


def test_corrupt_manifest(tmp_path, meta, latents_matrix):
    write_store(tmp_path / "s", meta, {"a": latents_matrix})
    (tmp_path / "s" / "manifest.json").write_text("{not json")
    with pytest.raises(StoreError, match="not valid JSON.*re-create"):
        open_store(tmp_path / "s")


def test_other_version(tmp_path, meta, latents_matrix):
    write_store(tmp_path / "s", meta, {"a": latents_matrix})
    m = json.loads((tmp_path / "s" / "manifest.json").read_text())
    m["version"] = 99
    (tmp_path / "s" / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(StoreError, match="format version 99.*reads version 1"):
        open_store(tmp_path / "s")


def test_corrupt_meta(tmp_path, meta, latents_matrix):
    write_store(tmp_path / "s", meta, {"a": latents_matrix})
    (tmp_path / "s" / "meta.parquet").write_bytes(b"garbage")
    with pytest.raises(StoreError, match="meta.parquet' cannot be read"):
        open_store(tmp_path / "s")


def test_row_count_mismatch(tmp_path, meta, latents_matrix):
    write_store(tmp_path / "s", meta, {"a": latents_matrix})
    np.save(tmp_path / "s" / "layers" / "a.npy", latents_matrix[:-5])
    with pytest.raises(StoreError, match=r"a.npy' has \d+ rows but meta.parquet has \d+"):
        open_store(tmp_path / "s")


def test_nan_in_layer_file(tmp_path, meta, latents_matrix):
    write_store(tmp_path / "s", meta, {"a": latents_matrix})
    bad = latents_matrix.copy()
    bad[7] = np.inf
    np.save(tmp_path / "s" / "layers" / "a.npy", bad)
    store = open_store(tmp_path / "s")
    with pytest.raises(StoreError, match=r"a.npy.*NaN or Inf.*first rows: 7"):
        store.latents("a")


def test_missing_column(tmp_path, meta, latents_matrix):
    with pytest.raises(LatentsError, match=r"missing required column\(s\) \['stage'\]"):
        Latents(latents_matrix, meta.drop(columns=[C.STAGE]))
    write_store(tmp_path / "s", meta, {"a": latents_matrix})
    meta.drop(columns=[C.TASK]).to_parquet(tmp_path / "s" / "meta.parquet")
    with pytest.raises(StoreError, match=r"meta.parquet: missing required column\(s\) \['task'\]"):
        open_store(tmp_path / "s")


def test_duplicate_sample_id(meta, latents_matrix):
    meta.loc[5, C.SAMPLE_ID] = meta.loc[4, C.SAMPLE_ID]
    with pytest.raises(LatentsError, match="must be unique.*1 ids repeat"):
        Latents(latents_matrix, meta)


def test_wrong_dtype_and_shape(meta, latents_matrix):
    with pytest.raises(LatentsError, match="float32.*astype"):
        Latents(latents_matrix.astype(np.float64), meta)
    with pytest.raises(LatentsError, match="2-D"):
        Latents(latents_matrix[:, 0].copy(), meta)
    with pytest.raises(LatentsError, match="rows but the latent matrix has"):
        Latents(latents_matrix[:-1].copy(), meta)


def test_unknown_layer_lists_close_matches(tmp_path, meta, latents_matrix):
    store = write_store(tmp_path / "s", meta, {"trunk.block1": latents_matrix, "trunk.block2": latents_matrix})
    with pytest.raises(KeyError, match="layer 'trunk.block9' not found.*close matches: trunk.block[12], trunk.block[12]"):
        store.latents("trunk.block9")


def test_streaming_writer_and_resume(tmp_path, meta, latents_matrix):
    n = len(meta)
    w = StoreWriter(tmp_path / "s", meta)
    w.write(np.arange(0, 50), {"a": latents_matrix[:50]})
    w.write(np.arange(50, 60), {"a": latents_matrix[50:60]})
    w.sync()  # what extraction does when interrupted
    w.write(np.arange(60, 70), {"a": latents_matrix[60:70]})  # not synced: written again on resume
    del w  # interrupted: nothing at the target, a partial directory beside it
    assert not (tmp_path / "s").exists()
    w = StoreWriter(tmp_path / "s", meta, resume=True)
    assert w.done[:60].all() and not w.done[60:].any()
    with pytest.raises(StoreError, match="never written; resume"):
        w.commit()
    w.write(np.arange(60, n), {"a": latents_matrix[60:]})
    store = w.commit()
    np.testing.assert_array_equal(np.asarray(store.matrix("a")), latents_matrix)
    fresh = write_store(tmp_path / "t", meta, {"a": latents_matrix})
    assert fresh.fingerprint == store.fingerprint
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s", "t"]


def test_probe_info_counts_episodes_of_each_dataset(tmp_path, capsys, monkeypatch):
    """Two human datasets that both hold an episode 0 are two episodes: info counts (dataset, episode) pairs."""
    from conftest import clustered_latents, synthetic_meta
    from probe.cli import main
    from probe.console import console

    meta = synthetic_meta(n_episodes=1, frames=6, tasks=("pick",))
    human = meta[meta[C.EMBODIMENT] == "human"]
    other = human.assign(**{C.DATASET: "human-data-2", C.SAMPLE_ID: human[C.SAMPLE_ID] + "/2"})
    meta = pd.concat([human, other, meta[meta[C.EMBODIMENT] == "robot"]], ignore_index=True)
    meta.loc[meta[C.EMBODIMENT] == "human", C.EPISODE] = 0
    write_store(tmp_path / "s", meta, {"a": clustered_latents(meta, dim=4)})
    monkeypatch.setattr(console, "width", 200)
    assert main(["info", str(tmp_path / "s")]) == 0
    cells = [[c.strip() for c in line.strip("│ ").split("│")] for line in capsys.readouterr().out.splitlines()
             if line.startswith("│")]
    # embodiment, task, episodes, samples
    assert cells[:2] == [["human", "pick", "2", "12"], ["robot", "pick", "1", "6"]]


def test_a_dataset_or_a_directory_where_a_store_goes_is_named(tmp_path, capsys):
    """A LeRobot dataset given as a store says to extract first; a directory given to probe import says what import
    takes (one file), and a store given to it says it opens as it is."""
    from probe.cli import main
    from probe.store.importer import import_latents

    dataset = tmp_path / "my_dataset"
    (dataset / "meta").mkdir(parents=True)
    (dataset / "meta" / "info.json").write_text("{}")
    with pytest.raises(StoreError, match=r"is a LeRobot dataset, not a latent store; extract one from it first: "
                                         r"probe extract --checkpoint CKPT --data .*my_dataset --out STORE"):
        open_store(dataset)
    assert main(["metrics", str(dataset)]) == 2
    err = capsys.readouterr().err
    assert "is a LeRobot dataset" in err and "Traceback" not in err
    hand = tmp_path / "hand"  # a hand-keypoints recording is named as one too (it was "manifest.json is missing")
    hand.mkdir()
    np.save(hand / "joints.npy", np.zeros((4, 21, 3), np.float32))
    (hand / "video.mp4").write_bytes(b"\0")
    with pytest.raises(StoreError, match=r"is a hand-keypoints recording, not a latent store; extract one from it"):
        open_store(hand)
    from probe.errors import ImportSourceError

    with pytest.raises(ImportSourceError, match="is a directory; probe import takes one .parquet or .npz file"):
        import_latents(dataset, tmp_path / "out")
    store = tmp_path / "store"
    np.savez(tmp_path / "x.npz", X=np.ones((2, 3), np.float32), embodiment=np.array(["human", "robot"]),
             episode=np.array([0, 0]), task=np.array(["t", "t"]), stage=np.array(["a", "a"]))
    import_latents(tmp_path / "x.npz", store)
    with pytest.raises(ImportSourceError, match="is a latent store already"):
        import_latents(store, tmp_path / "out2")
    assert not (tmp_path / "out").exists() and not (tmp_path / "out2").exists()
