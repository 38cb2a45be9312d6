"""2-D layouts of a layer's latents: UMAP on the shared FAISS graph, PCA, AlignedUMAP; cached on disk.

UMAP is fitted on the same exact kNN graph the metrics use (:func:`metrics.knn.knn`,
handed to umap-learn as ``precomputed_knn``), so the picture and the numbers see the
same neighbourhoods. When a layout covers every row of a layer and a cache directory
is given, the graph itself is shared: :func:`probe.cache.graphs.shared_graph` searches it
once (k=90, the metrics' k) and both read it from the cache. Very large stores are sampled, stratified by embodiment, task
and stage, and a layout always says whether it was (``sampled``). Quality is
measured: every layout carries its trustworthiness (scikit-learn, on a subsample).

Layouts are cached in a cache directory (never inside a store: stores are
immutable) under a key hashing the store fingerprint, the layer, the rows, the
parameters and any warm-start initialisation; cache files are written atomically.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from metrics.layout_quality import trustworthiness
from probe import columns as C
from probe.errors import ConfigError
from probe.projection.layout import Layout, Method, ProjectionConfig
from probe.latents import Latents
from probe.cache.layouts import cache_key, latents_fingerprint, read_layout, write_layout
from probe.projection.warm_start import shares_most, warm_init

log = logging.getLogger(__name__)

__all__ = ["aligned_layouts", "project", "project_series", "project_store", "sample_rows"]








# ---------------------------------------------------------------- sampling

def sample_rows(meta: pd.DataFrame, max_points: int | None, *, seed: int = 0,
                by: Sequence[str] = (C.EMBODIMENT, C.TASK, C.STAGE)) -> np.ndarray:
    """Sorted row positions of a stratified sample of at most ``max_points`` rows.

    Strata are the combinations of the ``by`` columns; each gets a share proportional
    to its size (largest remainders), and at least one row while the budget allows,
    so small embodiments, tasks and stages stay visible. All rows when
    ``max_points`` is None or not smaller than the table.
    """
    n = len(meta)
    if max_points is None or n <= max_points:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(seed)
    groups = meta.groupby(list(by), sort=True, observed=True).indices
    keys = list(groups)
    sizes = np.array([len(groups[k]) for k in keys], dtype=np.int64)
    quota = np.zeros(len(keys), dtype=np.int64)
    # one per stratum first (largest strata first if even that does not fit)
    order = np.argsort(-sizes, kind="stable")
    first = order[: min(len(keys), max_points)]
    quota[first] = 1
    left = max_points - int(quota.sum())
    if left > 0:
        room = sizes - quota
        share = room / room.sum() * left
        extra = np.floor(share).astype(np.int64)
        rest = left - int(extra.sum())
        if rest > 0:
            extra[np.argsort(-(share - extra), kind="stable")[:rest]] += 1
        quota += np.minimum(extra, room)
    picked = [rng.choice(groups[k], size=int(q), replace=False) for k, q in zip(keys, quota) if q > 0]
    return np.sort(np.concatenate(picked)).astype(np.int64)


# ---------------------------------------------------------------- cache

def _load_cached(cache_dir: Path | None, key: str, latents: Latents, n_total: int) -> Layout | None:
    found = read_layout(cache_dir, key)
    if found is None:
        return None
    coords, rows, info = found
    return Layout(coords, rows, info["method"], info["params"], float(info["trustworthiness"]), bool(info["sampled"]),
                  key, n_total, latents.meta[C.SAMPLE_ID].to_numpy()[rows], from_cache=True)


def _save_cached(cache_dir: Path | None, layout: Layout) -> None:
    info = {"method": layout.method, "params": layout.params, "trustworthiness": layout.trustworthiness,
            "sampled": layout.sampled}
    write_layout(cache_dir, layout.cache_key, layout.coords, layout.rows, info)


# ---------------------------------------------------------------- layouts

def _umap_knn(X: np.ndarray, n_neighbors: int, metric: str, neighbors: Any | None) -> tuple[np.ndarray, np.ndarray]:
    """umap-learn's ``precomputed_knn`` arrays from the shared FAISS graph (self in column 0)."""
    from metrics.knn import knn

    k = n_neighbors - 1
    if neighbors is None or len(neighbors) != X.shape[0] or neighbors.k < k or str(getattr(
            neighbors.metric, "value", neighbors.metric)) != metric:
        neighbors = knn(X, k=k, metric=metric)
    nb = neighbors.top(k)
    n = X.shape[0]
    indices = np.empty((n, n_neighbors), dtype=np.int64)
    dists = np.empty((n, n_neighbors), dtype=np.float32)
    indices[:, 0] = np.arange(n)
    dists[:, 0] = 0.0
    indices[:, 1:] = nb.indices
    d = np.maximum(nb.distances, 0.0)
    # umap's "euclidean" is the plain distance; metrics.knn's l2 is squared
    dists[:, 1:] = d if metric == "cosine" else np.sqrt(d)
    return indices, dists


def _fit_umap(X: np.ndarray, config: ProjectionConfig, init: np.ndarray | None, neighbors: Any | None,
              progress: bool) -> np.ndarray:
    import umap  # heavy (numba): imported on use

    from probe.progress import drawn

    n_neighbors = min(config.n_neighbors, X.shape[0] - 1)
    indices, dists = _umap_knn(X, n_neighbors, config.metric, neighbors)
    model = umap.UMAP(
        n_neighbors=n_neighbors, min_dist=config.min_dist,
        metric="cosine" if config.metric == "cosine" else "euclidean",
        n_epochs=config.n_epochs, random_state=config.seed,
        init=init if init is not None else "spectral",
        precomputed_knn=(indices, dists), verbose=False, tqdm_kwds={"disable": not drawn(progress)},
    )
    import warnings

    with warnings.catch_warnings():
        # we pass no NNDescent index on purpose (no transform of new data needed)
        warnings.filterwarnings("ignore", message=".*knn_search_index.*")
        warnings.filterwarnings("ignore", message=".*n_jobs value.*")
        coords = model.fit_transform(X)
    return np.asarray(coords, dtype=np.float32)


def _fit_pca(X: np.ndarray, config: ProjectionConfig) -> np.ndarray:
    from sklearn.decomposition import PCA

    from metrics.knn import prepare

    Xp = prepare(X, config.metric)
    return PCA(n_components=2, random_state=config.seed or 0).fit_transform(Xp).astype(np.float32)


def project(latents: Latents, config: ProjectionConfig = ProjectionConfig(), *, fingerprint: str | None = None,
            cache_dir: str | Path | None = None, previous: Layout | None = None, neighbors: Any | None = None,
            rows: np.ndarray | None = None, progress: bool = False) -> Layout:
    """Lay out ``latents`` in 2-D (UMAP or PCA), reading and writing the cache.

    Parameters
    ----------
    latents : Latents of one layer.
    config : ProjectionConfig
    fingerprint : the store's fingerprint (hashes the latents when None).
    cache_dir : directory for cached layouts (None: no cache).
    previous : a layout of another checkpoint or layer to warm-start from (rows
        matched by sample id) when ``config.warm_start``.
    neighbors : an optional :class:`metrics.knn.Neighbors` over exactly the rows laid
        out (e.g. the metrics' graph); computed with FAISS otherwise.
    rows : rows to lay out; a stratified sample of ``config.max_points`` when None.

    Returns
    -------
    Layout
    """
    if config.method is Method.ALIGNED_UMAP:
        raise ConfigError("aligned-umap lays out a series of checkpoints at once; use aligned_layouts(...)")
    n_total = len(latents)
    if rows is None:
        rows = sample_rows(latents.meta, config.max_points, seed=config.seed or 0)
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) < 4:
        raise ConfigError(f"a layout needs at least 4 points, got {len(rows)}")
    sampled = len(rows) < n_total
    sub = latents.take(rows) if sampled else latents
    X = np.ascontiguousarray(sub.X, dtype=np.float32)
    ids = sub.meta[C.SAMPLE_ID].to_numpy()
    warm = previous is not None and config.warm_start and config.method is Method.UMAP
    if warm and not shares_most(ids, previous):
        warm = False
    fp = fingerprint or latents_fingerprint(latents)
    key = cache_key(fp, latents.layer, rows, config.params(), previous.cache_key if warm else None)
    cdir = Path(cache_dir) if cache_dir is not None else None
    cached = _load_cached(cdir, key, latents, n_total)
    if cached is not None and len(cached.rows) == len(rows):
        log.info("layout %s of layer %s read from cache", key, latents.layer)
        return cached
    if config.method is Method.PCA:
        coords = _fit_pca(X, config)
    else:
        if neighbors is None and cdir is not None and not sampled and np.array_equal(rows, np.arange(n_total)):
            from metrics.spec import MetricsConfig
            from probe.cache.graphs import shared_graph

            neighbors = shared_graph(X, fingerprint=fp, layer=latents.layer, k=MetricsConfig.k, metric=config.metric,
                                     cache_dir=cdir)  # the metrics' graph: searched once for both
        init = None
        if warm:
            from metrics.knn import knn

            if neighbors is None:
                neighbors = knn(X, k=min(config.n_neighbors, len(X) - 1) - 1, metric=config.metric)
            init = warm_init(ids, previous, neighbors.indices, seed=config.seed or 0)
        coords = _fit_umap(X, config, init, neighbors, progress)
    trust = trustworthiness(X, coords, metric=config.metric, k=config.trust_k, max_points=config.trust_points,
                            seed=config.seed or 0)
    params = config.params() | {"warm_start_from": previous.cache_key if warm else None}
    layout = Layout(coords, rows, config.method.value, params, trust, sampled, key, n_total, ids)
    _save_cached(cdir, layout)
    return layout


def project_store(store: Any, layer: str, config: ProjectionConfig = ProjectionConfig(), *,
                  cache_dir: str | Path | None = None, previous: Layout | None = None,
                  progress: bool = False) -> Layout:
    """:func:`project` a layer of an opened store, keyed by the store's fingerprint."""
    return project(store.latents(layer), config, fingerprint=store.fingerprint, cache_dir=cache_dir,
                   previous=previous, progress=progress)


def project_series(items: Sequence[tuple[Latents, str | None]], config: ProjectionConfig = ProjectionConfig(),
                   *, cache_dir: str | Path | None = None, progress: bool = False) -> list[Layout]:
    """Comparable layouts of several checkpoints or layers, each warm-started from the previous.

    ``items`` are ``(latents, fingerprint)`` pairs in display order. With
    ``config.method == aligned-umap`` the series is fitted jointly by umap-learn's
    AlignedUMAP (its own NN-descent graphs; relations by sample id) instead.
    """
    if config.method is Method.ALIGNED_UMAP:
        return aligned_layouts(items, config, cache_dir=cache_dir)
    layouts: list[Layout] = []
    previous = None
    for latents, fp in items:
        layout = project(latents, config, fingerprint=fp, cache_dir=cache_dir, previous=previous, progress=progress)
        layouts.append(layout)
        previous = layout
    return layouts


def aligned_layouts(items: Sequence[tuple[Latents, str | None]], config: ProjectionConfig = ProjectionConfig(),
                    *, cache_dir: str | Path | None = None) -> list[Layout]:
    """Joint layouts of a series with umap-learn's AlignedUMAP (samples related by sample id)."""
    import umap

    parts = []
    for latents, fp in items:
        rows = sample_rows(latents.meta, config.max_points, seed=config.seed or 0)
        sub = latents.take(rows) if len(rows) < len(latents) else latents
        parts.append((latents, fp or latents_fingerprint(latents), rows, sub))
    key = hashlib.sha256(json.dumps([cache_key(fp, lt.layer, rows, config.params()) for lt, fp, rows, _ in parts]).encode()
                         ).hexdigest()[:32]
    cdir = Path(cache_dir) if cache_dir is not None else None
    cached = [_load_cached(cdir, f"{key}-{i}", lt, len(lt)) for i, (lt, _, _, _) in enumerate(parts)]
    if all(c is not None for c in cached):
        return cached  # type: ignore[return-value]
    relations = []
    for (_, _, _, a), (_, _, _, b) in zip(parts, parts[1:]):
        pos_b = pd.Series(np.arange(len(b)), index=pd.Index(b.meta[C.SAMPLE_ID]))
        idx = pos_b.reindex(pd.Index(a.meta[C.SAMPLE_ID])).to_numpy()
        relations.append({int(i): int(j) for i, j in enumerate(idx) if not np.isnan(j)})
    Xs = [np.ascontiguousarray(sub.X) for *_, sub in parts]
    if config.metric == "cosine":
        from metrics.knn import normalize_rows

        Xs = [normalize_rows(X) for X in Xs]
    model = umap.AlignedUMAP(n_neighbors=config.n_neighbors, min_dist=config.min_dist, metric="euclidean",
                             n_epochs=config.n_epochs or 200, random_state=config.seed)
    model.fit(Xs, relations=relations)
    out = []
    for i, ((lt, _, rows, sub), coords) in enumerate(zip(parts, model.embeddings_)):
        coords = np.asarray(coords, dtype=np.float32)
        trust = trustworthiness(sub.X, coords, metric=config.metric, k=config.trust_k,
                                max_points=config.trust_points, seed=config.seed or 0)
        layout = Layout(coords, rows, Method.ALIGNED_UMAP.value, config.params(), trust, len(rows) < len(lt),
                        f"{key}-{i}", len(lt), sub.meta[C.SAMPLE_ID].to_numpy())
        _save_cached(cdir, layout)
        out.append(layout)
    return out
