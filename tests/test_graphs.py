"""probe.cache.graphs: one kNN graph per store layer, cached and shared by metrics and layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from metrics.knn import knn
from metrics.spec import MetricsConfig
from probe.measure.suite import evaluate
from probe.cache.graphs import SUBDIR, graph_file, shared_graph
from probe.projection.layout import ProjectionConfig
from probe.projection.project import project
from probe.store.writer import write_store


def test_graph_is_searched_once_and_sliced(tmp_path: Path) -> None:
    X = np.random.default_rng(0).normal(size=(300, 16)).astype(np.float32)
    g = shared_graph(X, fingerprint="fp", layer="a", k=20, cache_dir=tmp_path)
    file = graph_file(tmp_path, "fp", "a", "cosine", "exact")
    assert file.is_file()
    stamp = file.stat().st_ino  # an atomic rewrite makes a new file; a cache hit only touches it
    small = shared_graph(X, fingerprint="fp", layer="a", k=5, cache_dir=tmp_path)
    assert file.stat().st_ino == stamp  # served from the cache
    np.testing.assert_array_equal(small.indices, g.indices[:, :5])
    np.testing.assert_array_equal(small.indices, knn(X, None, 5, "cosine").indices)
    bigger = shared_graph(X, fingerprint="fp", layer="a", k=30, cache_dir=tmp_path)  # more than cached: search again
    assert bigger.k == 30 and file.stat().st_ino != stamp
    shared_graph(X, fingerprint="other", layer="a", k=5, cache_dir=tmp_path)  # another store: its own file
    assert len(list((tmp_path / SUBDIR).glob("*.npz"))) == 2


def test_corrupt_cached_graph_is_searched_again(tmp_path: Path) -> None:
    X = np.random.default_rng(1).normal(size=(100, 8)).astype(np.float32)
    file = graph_file(tmp_path, "fp", "a", "l2", "exact")
    file.parent.mkdir(parents=True)
    file.write_bytes(b"not a zip")
    g = shared_graph(X, fingerprint="fp", layer="a", k=4, metric="l2", cache_dir=tmp_path)
    np.testing.assert_array_equal(g.indices, knn(X, None, 4, "l2").indices)


def test_metrics_and_layout_share_the_graph(tmp_path: Path, meta, latents_matrix) -> None:
    store = write_store(tmp_path / "s", meta, {"a": latents_matrix})
    cache = tmp_path / "cache"
    evaluate(store.path, "a", MetricsConfig(bootstrap=0, null_repeats=0, families=("mixing",)), cache_dir=cache)
    files = list((cache / SUBDIR).glob("*.npz"))
    assert len(files) == 1
    stamp = files[0].stat().st_ino
    layout = project(store.latents("a"), ProjectionConfig(max_points=None, n_epochs=20), fingerprint=store.fingerprint,
                     cache_dir=cache)
    assert not layout.sampled and list((cache / SUBDIR).glob("*.npz")) == files
    assert files[0].stat().st_ino == stamp  # the layout read the metrics' graph


def test_a_graph_that_does_not_fit_is_refused() -> None:
    from metrics.spec import Labels, MetricInputError
    from metrics.suite import run_suite

    X = np.random.default_rng(2).normal(size=(60, 8)).astype(np.float32)
    labels = Labels(np.repeat(["human", "robot"], 30), np.tile(["a", "b"], 30), np.full(60, "t"),
                    np.repeat(np.arange(6), 10).astype(str))
    with pytest.raises(MetricInputError, match="does not fit"):
        run_suite(X, labels, graph=knn(X[:50], None, 10, "cosine"))


def test_an_ivf_graph_probes_lists_by_the_shared_rule() -> None:
    """The suite's IVF graph takes nlist and nprobe from metrics.index.resolve_params, as retrieval indexes do."""
    from metrics.graph import build_graph
    from metrics.index import resolve_params
    from metrics.knn import Metric

    X = np.random.default_rng(0).normal(size=(30_000, 4)).astype(np.float32)
    params = resolve_params("ivf", 30_000, 4)
    assert params["nprobe"] > 16  # nlist / 40 beyond the floor of 16
    graph = build_graph(X, 5, Metric.L2, "ivf")
    assert f"IVF-flat (nlist={params['nlist']}, nprobe={params['nprobe']})" in graph.note
