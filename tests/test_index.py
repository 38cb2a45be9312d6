"""Retrieval indexes: agreement with exact search, the manifest, and every bad input named in the issue."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import clustered_latents, synthetic_meta
from metrics.index import IndexKind
from metrics.knn import knn
from probe import columns as C
from probe.cli import main
from probe.errors import ConfigError, IndexFileError, IndexMismatchError, LayerNotFoundError, OutputExistsError
from probe.retrieval.index import IndexConfig, build_index
from probe.retrieval.index_search import open_index
from probe.store.writer import write_store


@pytest.fixture
def store(tmp_path):
    meta = synthetic_meta(n_episodes=6, frames=20)
    X = clustered_latents(meta, dim=16, noise=0.5)
    Y = clustered_latents(meta, dim=8, seed=1)
    return write_store(tmp_path / "store", meta, {"trunk": X, "head": Y})


def _human(store):
    return np.flatnonzero(store.meta[C.EMBODIMENT].to_numpy() == "human")


def _robot(store):
    return np.flatnonzero(store.meta[C.EMBODIMENT].to_numpy() == "robot")


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_flat_index_agrees_with_exact_knn(store, tmp_path, metric):
    idx = build_index(store, "trunk", tmp_path / "idx", config=IndexConfig(metric=metric))
    X = np.asarray(store.matrix("trunk"))
    q = X[_robot(store)]
    D, I = idx.search(q, 7)
    ref = knn(q, X[_human(store)], 7, metric)
    np.testing.assert_array_equal(I, ref.indices)
    np.testing.assert_allclose(D, ref.distances, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(idx.rows, _human(store))  # index id i is store row rows[i]


@pytest.mark.parametrize("kind", ["hnsw", "ivf", "ivfpq"])
def test_approximate_kinds_recall_against_exact(tmp_path, kind):
    rng = np.random.default_rng(0)
    meta = synthetic_meta(n_episodes=30, frames=20)
    X = rng.normal(size=(len(meta), 16)).astype(np.float32)  # no ties: recall is well defined
    store = write_store(tmp_path / "s", meta, {"l": X})
    idx = build_index(store, "l", tmp_path / kind, config=IndexConfig(kind=kind, metric="l2", rerank=100, nprobe=30))
    q = X[_robot(store)][:100]
    _, I = idx.search(q, 10)
    exact = knn(q, X[_human(store)], 10, "l2").indices
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(I, exact)])
    assert recall >= 0.9, f"{kind} recall@10 {recall:.3f}"
    again = open_index(tmp_path / kind)
    np.testing.assert_array_equal(again.search(q, 10)[1], I)


def test_manifest_records_provenance_of_the_index(store, tmp_path):
    build_index(store, "trunk", tmp_path / "idx", config=IndexConfig(kind="ivf", metric="cosine"))
    manifest = json.loads((tmp_path / "idx" / "index.json").read_text())
    assert manifest["format"] == "probe-index" and manifest["version"] == 1
    assert manifest["store_fingerprint"] == store.fingerprint
    assert manifest["store_path"] == str(store.path.resolve())
    assert (manifest["layer"], manifest["embodiment"], manifest["metric"], manifest["normalization"]) == \
        ("trunk", "human", "cosine", "l2")
    assert manifest["kind"] == "ivf" and manifest["n"] == len(_human(store)) and manifest["dim"] == 16
    assert manifest["params"]["nlist"] >= 1 and manifest["params"]["nprobe"] >= 1
    assert sorted(p.name for p in (tmp_path / "idx").iterdir()) == ["index.faiss", "index.json", "rows.npy"]
    assert open_index(tmp_path / "idx").store.fingerprint == store.fingerprint  # default: the recorded store


def test_resolve_params_follow_data_size():
    p = IndexConfig(kind=IndexKind.IVFPQ).resolve(100_000, 256)
    assert p["nlist"] == round(4 * 100_000 ** 0.5) and 256 % p["pq_m"] == 0 and p["pq_m"] == 16
    assert p["pq_nbits"] == 8 and p["rerank"] > 0
    assert IndexConfig(kind="ivf").resolve(100, 8)["nlist"] == 2  # at most n / 39 lists
    with pytest.raises(ConfigError, match="pq_m=5 must divide the dimension 16"):
        IndexConfig(kind="ivfpq", pq_m=5).resolve(1000, 16)
    with pytest.raises(ConfigError, match="index kind must be one of"):
        IndexConfig(kind="annoy")
    with pytest.raises(ConfigError, match="index kind must be one of"):
        IndexConfig(kind="exact")  # the metrics suite's spelling of flat: not a kind 'probe index' builds
    with pytest.raises(ConfigError, match="nprobe must be >= 1"):
        IndexConfig(kind="ivf", nprobe=0)


def test_allowed_ids_restrict_the_search(store, tmp_path):
    idx = build_index(store, "trunk", tmp_path / "idx")
    allowed = np.arange(0, idx.n, 3)
    _, I = idx.search(np.asarray(store.matrix("trunk"))[_robot(store)][:5], 4, allowed=allowed)
    assert set(I.ravel()) <= set(allowed)


def test_index_for_another_store_is_a_mismatch(store, tmp_path):
    build_index(store, "trunk", tmp_path / "idx")
    meta = store.meta.copy()
    other = write_store(tmp_path / "other", meta, {"trunk": clustered_latents(meta, dim=16, seed=5)})
    with pytest.raises(IndexMismatchError, match="was built from store .* but store .*other.* has fingerprint.*rebuild"):
        open_index(tmp_path / "idx", other)


def test_index_for_a_changed_store_is_a_mismatch(store, tmp_path):
    build_index(store, "trunk", tmp_path / "idx")
    meta = store.meta.copy()
    write_store(store.path, meta, {"trunk": clustered_latents(meta, dim=16, seed=9)}, overwrite=True)
    with pytest.raises(IndexMismatchError, match="another or a changed store"):
        open_index(tmp_path / "idx")


def test_index_for_another_layer_is_a_mismatch(store, tmp_path):
    build_index(store, "trunk", tmp_path / "idx")
    with pytest.raises(IndexMismatchError, match="holds layer 'trunk', not 'head'"):
        open_index(tmp_path / "idx", store, layer="head")


def test_corrupt_index_file_is_a_clear_error(store, tmp_path):
    build_index(store, "trunk", tmp_path / "idx")
    (tmp_path / "idx" / "index.faiss").write_bytes(b"not a faiss index" * 4)
    with pytest.raises(IndexFileError, match="not a readable FAISS index.*rebuild"):
        open_index(tmp_path / "idx")
    (tmp_path / "idx" / "index.json").write_text("{broken")
    with pytest.raises(IndexFileError, match="not valid JSON"):
        open_index(tmp_path / "idx")
    with pytest.raises(IndexFileError, match="does not exist"):
        open_index(tmp_path / "nothing")


def test_embodiment_without_samples_lists_the_others(store, tmp_path):
    with pytest.raises(ConfigError, match=r"embodiment 'humanoid' has no samples.*human \(240 samples\), robot"):
        build_index(store, "trunk", tmp_path / "idx", embodiment="humanoid")
    assert not (tmp_path / "idx").exists() and [p.name for p in tmp_path.iterdir()] == ["store"]


def test_k_larger_than_reference_set(store, tmp_path):
    idx = build_index(store, "trunk", tmp_path / "idx")
    with pytest.raises(ConfigError, match=r"k=241 must lie in 1..240.*lower -k"):
        idx.search(np.zeros((1, 16), np.float32), 241)


def test_query_of_wrong_dimension(store, tmp_path):
    idx = build_index(store, "trunk", tmp_path / "idx")
    with pytest.raises(ValueError, match=r"queries must be \(n, 16\).*got shape \(1, 8\)"):
        idx.search(np.zeros((1, 8), np.float32), 1)


def test_refuses_to_overwrite(store, tmp_path):
    build_index(store, "trunk", tmp_path / "idx")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        build_index(store, "trunk", tmp_path / "idx", config=IndexConfig(kind="hnsw"))
    assert open_index(tmp_path / "idx").kind is IndexKind.FLAT
    build_index(store, "trunk", tmp_path / "idx", config=IndexConfig(kind="hnsw"), overwrite=True)
    assert open_index(tmp_path / "idx").kind is IndexKind.HNSW


def test_progress_bars_are_drawn_only_on_a_terminal(store, tmp_path, capsys, monkeypatch):
    """stderr is not a terminal here (as in a log or a pipe): no bars, so an error line never lands after a bar's
    carriage return; PROBE_PROGRESS=1 draws them anyway, PROBE_PROGRESS=0 never."""
    from probe.progress import drawn

    monkeypatch.delenv("PROBE_PROGRESS", raising=False)
    assert main(["index", str(store.path), "--layer", "trunk", "--out", str(tmp_path / "a")]) == 0
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("PROBE_PROGRESS", "1")
    assert main(["index", str(store.path), "--layer", "trunk", "--out", str(tmp_path / "b")]) == 0
    assert "indexing human" in capsys.readouterr().err
    assert drawn(True) and not drawn(False)
    monkeypatch.setenv("PROBE_PROGRESS", "0")
    assert not drawn(True)


def test_cli_builds_and_reports_errors(store, tmp_path, capsys):
    out = tmp_path / "cli-idx"
    assert main(["index", str(store.path), "--layer", "head", "--kind", "hnsw", "--metric", "l2",
                 "--out", str(out)]) == 0
    assert open_index(out, layer="head").manifest.metric.value == "l2"
    assert "indexed 240 human samples" in capsys.readouterr().out
    assert main(["index", str(store.path), "--out", str(tmp_path / "x")]) == 0  # two layers: the last, said
    assert "layer head (the store's last of 2: trunk, head; --layer picks another)" in capsys.readouterr().out
    assert open_index(tmp_path / "x").manifest.layer == "head"
    with pytest.raises(LayerNotFoundError, match="close matches: trunk"):
        main(["--debug", "index", str(store.path), "--layer", "trunc", "--out", str(tmp_path / "y")])


# -- metrics.index: the one FAISS index factory (retrieval indexes and the suite's approximate graph) --------------


@pytest.mark.parametrize(("kind", "faiss_type"), [("exact", "IndexFlatIP"), ("flat", "IndexFlatIP"),
                                                  ("hnsw", "IndexHNSWFlat"), ("ivf", "IndexIVFFlat"),
                                                  ("ivfpq", "IndexIVFPQ")])
def test_new_index_builds_each_kind(kind, faiss_type):
    import faiss

    from metrics.index import new_index, resolve_params

    params = resolve_params(kind, 100_000, 16)
    index = new_index(kind, 16, "cosine", params)
    assert type(index).__name__ == faiss_type and index.d == 16 and index.ntotal == 0
    assert IndexKind(kind).exact == (faiss_type == "IndexFlatIP")
    if IndexKind(kind).inverted:
        assert index.nlist == params["nlist"] == round(4 * 100_000 ** 0.5) and not index.is_trained
        assert index.metric_type == faiss.METRIC_INNER_PRODUCT
    assert type(new_index(kind, 16, "l2", params)).__name__ == faiss_type.replace("FlatIP", "FlatL2")


def test_new_index_of_an_approximate_kind_needs_its_parameters():
    from metrics.index import new_index

    with pytest.raises(ValueError, match=r"needs its parameters; pass resolve_params\('ivf', n, d\)"):
        new_index("ivf", 8, "l2")


def test_nprobe_rule_is_shared_and_capped_by_nlist():
    from metrics.index import resolve_params

    assert resolve_params("ivf", 1_000_000, 8)["nprobe"] == 4000 // 40  # max(16, nlist / 40)
    assert resolve_params("ivf", 10_000, 8)["nprobe"] == 16
    assert resolve_params("ivf", 100, 8)["nprobe"] == 2  # never more than nlist
    assert resolve_params("ivf", 10_000, 8, nprobe=3)["nprobe"] == 3
    assert set(resolve_params("hnsw", 10, 8)) == {"hnsw_m", "ef_construction", "ef_search", "rerank"}
    with pytest.raises(ValueError, match="pq_nbits must be <= 16"):
        resolve_params("ivfpq", 1000, 16, pq_nbits=17)


def test_training_rows_sample_64_per_list_without_replacement():
    from metrics.index import resolve_params, training_rows

    params = resolve_params("ivf", 100_000, 8)
    rows = training_rows(100_000, "ivf", params, seed=0)
    assert len(rows) == 64 * params["nlist"] and np.all(np.diff(rows) > 0)
    np.testing.assert_array_equal(rows, training_rows(100_000, "ivf", params, seed=0))
    np.testing.assert_array_equal(training_rows(500, "ivf", resolve_params("ivf", 500, 8), seed=0), np.arange(500))
    assert len(training_rows(500, "flat", {}, seed=0)) == 1


def test_few_threads_runs_a_handful_of_queries_on_one_thread():
    import faiss

    from metrics.index import FEW_QUERIES, few_threads

    before = faiss.omp_get_max_threads()
    with few_threads(FEW_QUERIES):
        assert faiss.omp_get_max_threads() == 1
    assert faiss.omp_get_max_threads() == before
    with few_threads(FEW_QUERIES + 1):
        assert faiss.omp_get_max_threads() == before
