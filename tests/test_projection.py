"""Projection: UMAP on the shared FAISS graph, PCA, sampling, warm start, cache, trustworthiness."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import clustered_latents, synthetic_meta
from metrics.knn import knn
from probe import columns as C
from probe.errors import ConfigError
from probe.latents import Latents
from probe.projection.layout import Layout, ProjectionConfig
from probe.projection.project import _umap_knn, project, project_store, sample_rows
from metrics.layout_quality import trustworthiness
from probe.store.writer import write_store

FAST = ProjectionConfig(n_epochs=60, n_neighbors=10)


@pytest.fixture(scope="module")
def small() -> Latents:
    meta = synthetic_meta(n_episodes=3, frames=15)
    return Latents(clustered_latents(meta, dim=16, noise=0.3), meta, "trunk")


@pytest.fixture(scope="module")
def umap_layout(small: Latents, tmp_path_factory) -> tuple[Layout, object]:
    cache = tmp_path_factory.mktemp("cache")
    return project(small, FAST, cache_dir=cache), cache


def test_umap_layout_is_trustworthy_and_well_formed(small, umap_layout):
    layout, _ = umap_layout
    assert layout.coords.shape == (len(small), 2) and layout.coords.dtype == np.float32
    assert np.array_equal(layout.rows, np.arange(len(small)))
    assert not layout.sampled and layout.method == "umap"
    assert layout.trustworthiness > 0.9
    assert list(layout.sample_ids) == small.meta[C.SAMPLE_ID].tolist()


def test_umaps_epoch_bar_is_drawn_only_on_a_terminal(small, capsys, monkeypatch):
    """stderr is not a terminal here (as in a log): no "Epochs completed" bar; PROBE_PROGRESS=1 forces it."""
    monkeypatch.delenv("PROBE_PROGRESS", raising=False)
    project(small, FAST, progress=True)  # no cache: UMAP runs
    assert "Epochs completed" not in capsys.readouterr().err
    monkeypatch.setenv("PROBE_PROGRESS", "1")
    project(small, FAST, progress=True)
    assert "Epochs completed" in capsys.readouterr().err


def test_cache_returns_same_layout_and_other_params_miss(small, umap_layout):
    layout, cache = umap_layout
    again = project(small, FAST, cache_dir=cache)
    assert again.from_cache and again.cache_key == layout.cache_key
    np.testing.assert_array_equal(again.coords, layout.coords)
    assert again.trustworthiness == layout.trustworthiness
    files = list((cache / "projections").glob("*.npz"))
    assert [f.stem for f in files] == [layout.cache_key]
    assert not list((cache / "projections").glob(".*tmp*"))  # written atomically, no leftovers
    pca = project(small, ProjectionConfig(method="pca"), cache_dir=cache)
    assert pca.cache_key != layout.cache_key and not pca.from_cache


def test_precomputed_knn_has_self_first_and_matches_faiss_graph(small):
    idx, dist = _umap_knn(small.X, 10, "cosine", None)
    assert idx.shape == dist.shape == (len(small), 10)
    np.testing.assert_array_equal(idx[:, 0], np.arange(len(small)))
    assert np.all(dist[:, 0] == 0) and np.all(np.diff(dist, axis=1) >= -1e-6)
    ref = knn(small.X, k=9, metric="cosine")
    np.testing.assert_array_equal(idx[:, 1:], ref.indices)
    idx2, dist2 = _umap_knn(small.X, 10, "l2", None)  # umap's euclidean is not squared
    ref2 = knn(small.X, k=9, metric="l2")
    np.testing.assert_allclose(dist2[:, 1:] ** 2, ref2.distances, rtol=1e-4, atol=1e-4)


def test_warm_start_keeps_next_checkpoint_close_to_previous(small, umap_layout):
    layout, cache = umap_layout
    # another checkpoint: same samples, a different geometry (a cold layout lands anywhere)
    moved = Latents(clustered_latents(small.meta, dim=16, noise=0.3, seed=1), small.meta, "trunk")
    warm = project(moved, FAST, cache_dir=cache, previous=layout)
    cold = project(moved, FAST, cache_dir=cache)
    assert warm.params["warm_start_from"] == layout.cache_key and cold.params["warm_start_from"] is None
    assert warm.cache_key != cold.cache_key
    assert warm.trustworthiness > 0.85

    def z(c: np.ndarray) -> np.ndarray:  # umap rescales its init: compare standardised layouts
        return (c - c.mean(axis=0)) / c.std()

    def gap(other: Layout) -> float:  # mean displacement of each sample from the previous layout
        return float(np.linalg.norm(z(other.coords) - z(layout.coords), axis=1).mean())

    assert gap(warm) < 0.6 * gap(cold)


def test_sampling_is_stratified_and_said(small):
    rows = sample_rows(small.meta, 40, seed=1)
    assert len(rows) == 40 and np.all(np.diff(rows) > 0)
    strata = small.meta.iloc[rows].groupby([C.EMBODIMENT, C.TASK, C.STAGE]).size()
    assert len(strata) == small.meta.groupby([C.EMBODIMENT, C.TASK, C.STAGE]).ngroups
    assert strata.max() - strata.min() <= 2
    layout = project(small, ProjectionConfig(method="pca", max_points=40))
    assert layout.sampled and len(layout) == 40 and layout.n_total == len(small)
    assert "sample of 40 of" in layout.note
    assert np.array_equal(sample_rows(small.meta, None), np.arange(len(small)))


def test_pca_and_trustworthiness_discriminate(small):
    pca = project(small, ProjectionConfig(method="pca"))
    assert pca.trustworthiness > 0.8
    rng = np.random.default_rng(0)
    assert trustworthiness(small.X, rng.normal(size=(len(small), 2))) < 0.7


def test_store_is_not_touched_by_caching(small, tmp_path):
    store = write_store(tmp_path / "s", small.meta, {"trunk": np.asarray(small.X)})
    before = sorted(p.name for p in store.path.rglob("*"))
    layout = project_store(store, "trunk", ProjectionConfig(method="pca"), cache_dir=tmp_path / "cache")
    assert sorted(p.name for p in store.path.rglob("*")) == before
    assert (tmp_path / "cache" / "projections" / f"{layout.cache_key}.npz").exists()


@pytest.mark.parametrize("kwargs, message", [
    ({"metric": "dot"}, "metric must be 'cosine' or 'l2'"),
    ({"max_points": 3}, "max_points must be >= 10"),
    ({"method": "tsne"}, "tsne"),
])
def test_bad_config(kwargs, message):
    with pytest.raises((ConfigError, ValueError), match=message):
        ProjectionConfig(**kwargs)
