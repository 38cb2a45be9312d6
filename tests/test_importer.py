"""probe import: parquet and npz sources, derived columns, bad sources."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from probe import columns as C
from probe.cli import main
from probe.errors import ImportSourceError, OutputExistsError
from probe.store.importer import import_latents
from probe.store.store import open_store
from probe.store.writer import write_store


def _parquet_from_store(store, path):
    table = store.meta.copy()
    for layer in store.layers:
        table[layer] = list(np.asarray(store.matrix(layer)))
    table.to_parquet(path)


def test_parquet_round_trips_a_store(tmp_path, meta, latents_matrix):
    original = write_store(tmp_path / "orig", meta, {"latent": latents_matrix, "trunk.b2": latents_matrix * 2})
    _parquet_from_store(original, tmp_path / "x.parquet")
    store = import_latents(tmp_path / "x.parquet", tmp_path / "imported")
    assert sorted(store.layers) == ["latent", "trunk.b2"]
    for layer in original.layers:
        np.testing.assert_array_equal(np.asarray(store.matrix(layer)), np.asarray(original.matrix(layer)))
    pd.testing.assert_frame_equal(store.meta[list(C.REQUIRED)], original.meta[list(C.REQUIRED)], check_dtype=False)


def test_npz_with_derived_columns(tmp_path, meta, latents_matrix):
    np.savez(tmp_path / "x.npz", X=latents_matrix, embodiment=meta[C.EMBODIMENT].to_numpy(str),
             episode=meta[C.EPISODE].to_numpy(), task=meta[C.TASK].to_numpy(str), stage=meta[C.STAGE].to_numpy(str))
    store = import_latents(tmp_path / "x.npz", tmp_path / "s")
    m = store.meta
    assert store.layers == ["latent"]
    # derived: frames count up within each episode, progress spans 0..1, stage progress within each stage run
    np.testing.assert_array_equal(m[C.FRAME].to_numpy(), meta[C.FRAME].to_numpy())
    np.testing.assert_allclose(m[C.PROGRESS].to_numpy(), meta[C.PROGRESS].to_numpy())
    first = m[(m[C.EPISODE] == m[C.EPISODE].iloc[0]) & (m[C.STAGE] == "grasp")]
    assert first[C.STAGE_PROGRESS].min() == 0.0 and first[C.STAGE_PROGRESS].max() == 1.0
    assert m[C.SAMPLE_ID].iloc[0] == f"x/human/{meta[C.EPISODE].iloc[0]}/0"
    assert (m[C.DATASET] == "x").all()


def test_cli_import_and_info(tmp_path, meta, latents_matrix, capsys):
    np.savez(tmp_path / "x.npz", X=latents_matrix, embodiment=meta[C.EMBODIMENT].to_numpy(str),
             episode=meta[C.EPISODE].to_numpy(), task=meta[C.TASK].to_numpy(str), stage=meta[C.STAGE].to_numpy(str))
    assert main(["import", str(tmp_path / "x.npz"), "--out", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert "wrote store" in out and "probe info" in out
    assert main(["info", str(tmp_path / "s")]) == 0
    assert "human" in capsys.readouterr().out
    # exists -> one clear line, exit 2, store untouched
    before = open_store(tmp_path / "s").fingerprint
    assert main(["import", str(tmp_path / "x.npz"), "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: store") and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert open_store(tmp_path / "s").fingerprint == before


def test_unknown_columns(tmp_path, meta, latents_matrix):
    table = meta.assign(latent=list(latents_matrix), robot_arm=1)
    table.to_parquet(tmp_path / "x.parquet")
    with pytest.raises(ImportSourceError, match=r"unknown column\(s\) \['robot_arm'\].*x_robot_arm"):
        import_latents(tmp_path / "x.parquet", tmp_path / "s")
    assert not (tmp_path / "s").exists()
    table.rename(columns={"robot_arm": "x_robot_arm"}).to_parquet(tmp_path / "y.parquet")
    assert "x_robot_arm" in import_latents(tmp_path / "y.parquet", tmp_path / "s").meta


def test_ragged_vectors(tmp_path, meta):
    vectors = [np.ones(4 if i % 7 else 5, dtype=np.float32) for i in range(len(meta))]
    pq.write_table(pa.Table.from_pandas(meta.assign(latent=vectors)), tmp_path / "x.parquet")
    with pytest.raises(ImportSourceError, match="ragged vectors.*lengths \\[4, 5\\]"):
        import_latents(tmp_path / "x.parquet", tmp_path / "s")
    assert not (tmp_path / "s").exists()


def test_missing_required_and_unknown_type(tmp_path, meta, latents_matrix):
    np.savez(tmp_path / "x.npz", X=latents_matrix, embodiment=meta[C.EMBODIMENT].to_numpy(str))
    with pytest.raises(ImportSourceError, match=r"lacks required column\(s\) \['episode', 'task', 'stage'\]"):
        import_latents(tmp_path / "x.npz", tmp_path / "s")
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(ImportSourceError, match="expected .parquet or .npz"):
        import_latents(tmp_path / "x.csv", tmp_path / "s")


def test_output_exists(tmp_path, meta, latents_matrix):
    (tmp_path / "s").mkdir()
    np.savez(tmp_path / "x.npz", X=latents_matrix, embodiment=meta[C.EMBODIMENT].to_numpy(str),
             episode=meta[C.EPISODE].to_numpy(), task=meta[C.TASK].to_numpy(str), stage=meta[C.STAGE].to_numpy(str))
    with pytest.raises(OutputExistsError):
        import_latents(tmp_path / "x.npz", tmp_path / "s")


def test_cli_info_reads_provenance_as_lines_lists_a_folder_of_stores_and_says_what_next(tmp_path, capsys):
    from conftest import clustered_latents, synthetic_meta

    meta = synthetic_meta(n_episodes=2, frames=10)
    provenance = {"checkpoint": {"path": "ckpts/level-100", "step": 1000, "recipe": "cotrained",
                                 "behaviour": {"ee_error": 0.0539353, "setting": "far_right"},
                                 "ci": [-0.1037011, 0.00709]},
                  "adapter": {"name": "world", "options": {"image_size": [64, 64]}}}
    for level in ("level-000", "level-100"):
        write_store(tmp_path / "stores" / level, meta, {"trunk": clustered_latents(meta, dim=8)},
                    provenance=provenance)
    assert main(["info", str(tmp_path / "stores" / "level-100")]) == 0
    out = capsys.readouterr().out
    assert "{'" not in out and "checkpoint:\n  path: ckpts/level-100\n  step: 1000" in out
    assert "  behaviour:\n    ee_error: 0.05394\n    setting: far_right" in out and "  ci: -0.1037, 0.00709" in out
    assert "adapter:\n  name: world\n  options:\n    image_size: 64, 64" in out
    steps = out.split("next:\n")[1].splitlines()
    assert steps[0].strip().startswith(f"probe metrics {tmp_path / 'stores' / 'level-100'}")
    assert main(["info", str(tmp_path / "stores")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a folder of 2 stores, not a store: level-000, level-100" in err
    assert f"run probe info {tmp_path / 'stores' / 'level-100'}" in err
    assert main(["metrics", str(tmp_path / "stores")]) == 2  # every command says so, not 'manifest.json is missing'
    assert "is a folder of 2 stores" in capsys.readouterr().err


def _two_layer_store(tmp_path, meta):
    """A store with two layers (the first is exported) and a store metadata column no plain import may hold."""
    from conftest import clustered_latents

    return write_store(tmp_path / "orig", meta.assign(robot_arm=np.arange(len(meta)) % 3),
                       {"vision": clustered_latents(meta, dim=12, seed=1), "trunk": clustered_latents(meta, seed=2)})


def _export(store, out, tmp_path, *extra: str) -> None:
    assert main(["export", str(store.path), "--layer", "vision", "--projection", "pca", "--cache",
                 str(tmp_path / "c"), "--out", str(out), *extra]) == 0


@pytest.mark.parametrize("max_points", [None, 30], ids=["all", "sample"])
def test_a_probe_export_file_imports_back_as_its_layer(tmp_path, meta, capsys, max_points):
    original = _two_layer_store(tmp_path, meta)
    out = tmp_path / "points.parquet"
    _export(original, out, tmp_path, *(["--max-points", str(max_points)] if max_points else []))
    capsys.readouterr()
    assert main(["import", str(out), "--out", str(tmp_path / "imported")]) == 0
    printed = capsys.readouterr().out.splitlines()
    sample = f" (a sample of 30 of {original.n} points)" if max_points else ""
    assert f"a probe export file{sample}: dropped its layout columns x, y, neighbors, text" in printed
    store = open_store(tmp_path / "imported")
    n = max_points or original.n
    assert store.layers == ["vision"] and store.n == n
    # the rows export wrote, in its order: their latents unchanged (float32) and their metadata as in the store
    rows = pd.Index(original.meta[C.SAMPLE_ID]).get_indexer(store.meta[C.SAMPLE_ID])
    assert (rows >= 0).all() and len(set(rows)) == n and (max_points or rows.tolist() == list(range(n)))
    assert store.meta[C.SAMPLE_ID].tolist() == pd.read_parquet(out, columns=[C.SAMPLE_ID])[C.SAMPLE_ID].tolist()
    X = store.matrix("vision")
    assert X.dtype == np.float32
    np.testing.assert_array_equal(np.asarray(X), np.asarray(original.matrix("vision"))[rows])
    expected = original.meta.iloc[rows].reset_index(drop=True)
    pd.testing.assert_frame_equal(store.meta[list(expected.columns)], expected, check_dtype=False)
    assert not {"x", "y", "neighbors", "text", "vector"} & set(store.meta.columns)
    exported = store.provenance["probe_export"]
    assert exported["layer"] == "vision" and exported["fingerprint"] == original.fingerprint
    assert exported["dropped"] == ["x", "y", "neighbors", "text"] and exported["sampled"] == bool(max_points)


def test_an_export_that_lost_its_metadata_is_known_by_its_columns(tmp_path, meta):
    original = _two_layer_store(tmp_path, meta)
    _export(original, tmp_path / "points.parquet", tmp_path)
    table = pq.read_table(tmp_path / "points.parquet")
    pq.write_table(table.replace_schema_metadata(None), tmp_path / "rewritten.parquet")  # as another tool might
    store = import_latents(tmp_path / "rewritten.parquet", tmp_path / "imported")
    assert store.layers == ["vector"] and "layer" not in store.provenance["probe_export"]
    np.testing.assert_array_equal(np.asarray(store.matrix("vector")), np.asarray(original.matrix("vision")))


def test_an_export_without_latents_is_refused_in_one_line(tmp_path, meta, capsys):
    from conftest import assert_refused

    original = _two_layer_store(tmp_path, meta)
    _export(original, tmp_path / "points.parquet", tmp_path, "--no-latents")
    capsys.readouterr()
    err = assert_refused(capsys, ["import", str(tmp_path / "points.parquet"), "--out", str(tmp_path / "imported")],
                         "written with --no-latents", "export again without --no-latents",
                         f"probe export {original.path} --layer vision")
    assert "unknown column" not in err
    assert not (tmp_path / "imported").exists()


def test_an_export_file_carries_only_confining_dataset_roots(tmp_path, meta):
    import json

    from probe.store.points_file import METADATA_KEY

    original = _two_layer_store(tmp_path, meta.assign(video="clip.mp4"))
    _export(original, tmp_path / "points.parquet", tmp_path)
    table = pq.read_table(tmp_path / "points.parquet")
    info = json.loads(table.schema.metadata[METADATA_KEY])
    assert info["datasets"] == []  # the source store records no roots: none to carry
    info["datasets"] = [{"name": "human-data", "root": "/"}, {"name": "robot-data", "root": str(tmp_path)},
                        {"name": "gone", "root": str(tmp_path)}, "junk", {"name": "x", "root": "relative/dir"}]
    pq.write_table(table.replace_schema_metadata({METADATA_KEY: json.dumps(info).encode()}),
                   tmp_path / "edited.parquet")
    store = import_latents(tmp_path / "edited.parquet", tmp_path / "imported")
    # a file system's root confines nothing, a relative root is no root, a dataset the rows lack is left out
    assert store.provenance["datasets"] == [{"name": "robot-data", "root": str(tmp_path)}]
