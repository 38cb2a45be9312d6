"""Retrieval indexes: a FAISS index over one embodiment's latents of one store layer; building one.

Kinds: ``flat`` (exact, the default), ``hnsw`` (graph), ``ivf`` (inverted lists,
exact distances within the probed lists) and ``ivfpq`` (inverted lists with
product-quantised codes, the smallest). Approximate kinds take their parameters
from the data size when not given (nlist ~ 4 sqrt(n), PQ sub-vectors of about 16
dimensions) and can re-rank their top candidates exactly against the store.

This module builds indexes: :class:`IndexConfig` and :func:`build_index`, which
writes an index directory atomically and returns it opened. The on-disk format (the
directory layout, :class:`IndexManifest`, :func:`read_manifest`) is
:mod:`probe.retrieval.index_manifest`; opening and searching an index
(:func:`open_index`, :class:`OpenIndex`) is :mod:`probe.retrieval.index_search`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import faiss
import numpy as np

from metrics.index import (EF_CONSTRUCTION, HNSW_M, OPTIONS, IndexKind, IndexParams, check_options, index_kind,
                           new_index, resolve_params, training_rows)
from metrics.knn import Metric, prepare
from probe import columns as C
from probe.atomic import atomic_dir
from probe.errors import ConfigError
from probe.retrieval.index_manifest import INDEX_FILE, INDEX_KIND, MANIFEST, ROWS_FILE, IndexManifest
from probe.retrieval.index_search import OpenIndex
from probe.store.store import Store, open_store
from probe.validate import check_output_path

__all__ = [
    "IndexConfig",
    "build_index",
    "embodiment_rows",
]

log = logging.getLogger(__name__)

_ADD_BLOCK = 1 << 16  # rows prepared and added at a time: bounds memory for memory-mapped layers
KINDS = (IndexKind.FLAT, IndexKind.HNSW, IndexKind.IVF, IndexKind.IVFPQ)  # the kinds ``probe index`` builds


@dataclass(frozen=True)
class IndexConfig:
    """How to build and search an index. ``None`` parameters are chosen from the data size.

    Parameters
    ----------
    kind : flat | hnsw | ivf | ivfpq
    metric : cosine (rows L2-normalised, inner product) | l2 (squared Euclidean)
    nlist, pq_m, pq_nbits, hnsw_m, ef_construction, nprobe, ef_search, rerank : the build and search
        parameters of :func:`metrics.index.resolve_params`, which documents them and their defaults
    seed : seed for training-set sampling
    """

    kind: IndexKind = IndexKind.FLAT
    metric: Metric = Metric.COSINE
    nlist: int | None = None
    pq_m: int | None = None
    pq_nbits: int | None = None
    hnsw_m: int = HNSW_M
    ef_construction: int = EF_CONSTRUCTION
    nprobe: int | None = None
    ef_search: int | None = None
    rerank: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        known = [m.value for m in Metric]
        try:
            object.__setattr__(self, "kind", index_kind(self.kind, KINDS))
            if self.metric not in known:
                raise ValueError(f"metric must be one of {known}, got {self.metric!r}")
            object.__setattr__(self, "metric", Metric(self.metric))
            check_options(**self.options())
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    def options(self) -> dict[str, int | None]:
        """The build and search options, as :func:`metrics.index.resolve_params` takes them."""
        return {name: getattr(self, name) for name in OPTIONS}

    def resolve(self, n: int, d: int) -> IndexParams:
        """The concrete parameters for ``n`` vectors of dimension ``d``; :class:`ConfigError` if they cannot fit."""
        try:
            return resolve_params(self.kind, n, d, **self.options())
        except ValueError as exc:
            raise ConfigError(str(exc)) from None


def _sample_ids_hash(store: Store, rows: np.ndarray) -> str:
    ids = store.meta[C.SAMPLE_ID].astype(str).to_numpy()[rows]
    return hashlib.sha256("\n".join(ids).encode("utf-8")).hexdigest()


def embodiment_rows(store: Store, embodiment: str) -> np.ndarray:
    """Store row positions of one embodiment; :class:`ConfigError` listing the others when it has none."""
    emb = store.meta[C.EMBODIMENT].astype(str).to_numpy()
    rows = np.flatnonzero(emb == embodiment)
    if len(rows) == 0:
        counts = store.meta[C.EMBODIMENT].value_counts()
        listed = ", ".join(f"{k} ({v} samples)" for k, v in counts.items())
        raise ConfigError(f"embodiment '{embodiment}' has no samples in store '{store.path}'; "
                          f"its embodiments are: {listed} (pass one of them with --embodiment)")
    return rows


def build_index(store: Store | str | Path, layer: str, out: str | Path, *, embodiment: str = C.HUMAN,
                config: IndexConfig | None = None, overwrite: bool = False, progress: bool = False) -> OpenIndex:
    """Build an index over ``embodiment``'s latents of ``layer`` and write it atomically to ``out``.

    Returns the index opened against ``store``.
    """
    from probe.progress import bar

    check_output_path(out, overwrite, kind=INDEX_KIND)  # before any work
    config = config or IndexConfig()
    store = store if isinstance(store, Store) else open_store(store)
    X = store.matrix(layer)
    rows = embodiment_rows(store, embodiment)
    n, d = len(rows), int(X.shape[1])
    params = config.resolve(n, d)
    start = time.perf_counter()
    index = new_index(config.kind, d, config.metric, params)
    if not index.is_trained:
        train = prepare(X[rows[training_rows(n, config.kind, params, config.seed)]], config.metric)
        log.info("training %s index on %d vectors", config.kind.value, len(train))
        index.train(train)
        del train
    with bar(n, desc=f"indexing {embodiment}", enabled=progress, unit="vec") as pbar:
        for s in range(0, n, _ADD_BLOCK):
            block = prepare(X[rows[s : s + _ADD_BLOCK]], config.metric)
            index.add(block)
            pbar.update(len(block))
    seconds = time.perf_counter() - start
    manifest = IndexManifest(
        store_path=str(store.path.resolve()), store_fingerprint=store.fingerprint, layer=layer, dim=d,
        embodiment=embodiment, metric=config.metric, kind=config.kind, params=params, n=n,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"), build_seconds=round(seconds, 3),
        sample_ids_sha256=_sample_ids_hash(store, rows))
    with atomic_dir(out, overwrite=overwrite, kind=INDEX_KIND) as tmp:
        faiss.write_index(index, str(tmp / INDEX_FILE))
        np.save(tmp / ROWS_FILE, rows.astype(np.int64))
        (tmp / MANIFEST).write_text(json.dumps(manifest.to_dict(), indent=2) + "\n", encoding="utf-8")
    log.info("built %s index of %d vectors in %.2fs", config.kind.value, n, seconds)
    return OpenIndex(Path(out), manifest, index, rows, store)
