"""The one kNN graph of a store layer, computed once and shared by metrics and layouts (cached on disk).

The metrics suite needs the k=90 neighbours of every row; UMAP over the same rows
needs the first 14 of them. :func:`shared_graph` searches once (exact FAISS, or HNSW
when asked) and keeps the graph under ``CACHE/graphs``, keyed by the store
fingerprint, layer, distance and index kind, so whichever of ``probe metrics``,
``probe report`` or the dashboard runs first pays for it and the others slice it.
A request for more neighbours than the cached graph holds searches again and
replaces it.

    >>> graph = shared_graph(store.matrix("trunk.block2"), fingerprint=store.fingerprint,
    ...                      layer="trunk.block2", k=90, metric="cosine", cache_dir="cache")
"""

from __future__ import annotations

import hashlib
import logging
import zipfile
from pathlib import Path

import numpy as np

from metrics.knn import Metric, Neighbors
from probe.atomic import atomic_file
from probe.cache.directory import keep_within, touch

log = logging.getLogger(__name__)

SUBDIR = "graphs"


def graph_file(cache_dir: str | Path, fingerprint: str, layer: str, metric: str, index: str) -> Path:
    """Where the graph of one (store, layer, distance, index kind) is cached."""
    key = hashlib.sha256(f"{fingerprint}|{layer}|{metric}|{index}".encode()).hexdigest()[:24]
    return Path(cache_dir) / SUBDIR / f"{key}.npz"


def load_graph(file: Path, n: int, k: int, metric: Metric) -> Neighbors | None:
    """The cached graph sliced to ``k`` neighbours, or None if absent, too small or unreadable."""
    if not file.is_file():
        return None
    try:
        with np.load(file) as z:
            indices, distances = z["indices"], z["distances"]
            note = str(z["note"]) if "note" in z.files else ""
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        log.warning("ignoring unreadable cached graph %s (%s)", file, exc)
        return None
    if indices.shape[0] != n or indices.shape[1] < k or distances.shape != indices.shape:
        return None
    touch(file)
    return Neighbors(indices[:, :k].astype(np.int64), distances[:, :k], metric, note)


def shared_graph(X: np.ndarray, *, fingerprint: str, layer: str, k: int, metric: Metric | str = Metric.COSINE,
                 index: str = "exact", cache_dir: str | Path | None = None) -> Neighbors:
    """The ``k`` nearest neighbours (self excluded) of every row of ``X``, from the cache when it holds them.

    Parameters
    ----------
    X : (n, d) float32 latents of one store layer (all rows, in store order).
    fingerprint, layer : identify the rows (the store's fingerprint and the layer name).
    k : neighbours per row; capped at n - 1.
    metric : "cosine" or "l2" (as :func:`metrics.knn.knn`).
    index : "exact" (FAISS flat), or "ivf" / "hnsw" (approximate; see :func:`metrics.graph.build_graph`).
    cache_dir : cache root; None computes without caching.

    Returns
    -------
    Neighbors
    """
    from metrics.graph import build_graph
    from metrics.index import IndexKind

    metric = Metric(metric)
    n = int(X.shape[0])
    k = min(int(k), n - 1)
    file = graph_file(cache_dir, fingerprint, layer, metric.value, str(index)) if cache_dir is not None else None
    if file is not None:
        cached = load_graph(file, n, k, metric)
        if cached is not None:
            log.info("kNN graph of layer %s (k=%d) read from %s", layer, k, file)
            return cached
    graph = build_graph(np.ascontiguousarray(X, dtype=np.float32), k, metric, IndexKind(index))
    if file is not None:
        with atomic_file(file, what="cached graph") as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, indices=graph.indices.astype(np.int32), distances=graph.distances.astype(np.float32),
                         note=np.array(graph.note))
        keep_within(file.parent, keep=file)
    return graph
