"""Retrieval indexes: a FAISS index over one embodiment's latents of one store layer.

Layout (format ``probe-index``, version 1)::

    INDEX_DIR/
      index.json     manifest: store path and fingerprint, layer, embodiment, metric,
                     normalisation, kind and resolved parameters, n, build time
      index.faiss    the FAISS index (faiss.write_index), ids 0..n-1
      rows.npy       int64 (n,): row positions in the store of index ids 0..n-1

Kinds: ``flat`` (exact, the default), ``hnsw`` (graph), ``ivf`` (inverted lists,
exact distances within the probed lists) and ``ivfpq`` (inverted lists with
product-quantised codes, the smallest). Approximate kinds take their parameters
from the data size when not given (nlist ~ 4 sqrt(n), PQ sub-vectors of about 16
dimensions) and can re-rank their top candidates exactly against the store.

Opening an index against a store whose fingerprint differs from the one recorded
at build time, or for another layer, raises :class:`IndexMismatchError`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from metrics.index import (EF_CONSTRUCTION, HNSW_M, OPTIONS, IndexKind, IndexParams, check_options, few_threads,
                           index_kind, new_index, resolve_params, training_rows)
from metrics.knn import Metric, prepare
from probe import columns as C
from probe.atomic import atomic_dir
from probe.errors import ConfigError, IndexFileError, IndexMismatchError, LatentsError
from probe.store.store import Store, open_store
from probe.validate import OutputKind, check_output_path

__all__ = [
    "IndexConfig",
    "IndexManifest",
    "OpenIndex",
    "build_index",
    "embodiment_rows",
    "open_index",
    "read_manifest",
    "resolve_layer",
]

log = logging.getLogger(__name__)

FORMAT = "probe-index"
VERSION = 1
MANIFEST = "index.json"
INDEX_FILE = "index.faiss"
ROWS_FILE = "rows.npy"
INDEX_KIND = OutputKind("index directory", MANIFEST, FORMAT)  # what --overwrite may replace

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


@dataclass(frozen=True)
class IndexManifest:
    """What ``index.json`` records about an index."""

    store_path: str
    store_fingerprint: str
    layer: str
    dim: int
    embodiment: str
    metric: Metric
    kind: IndexKind
    params: dict[str, Any]
    n: int
    created: str = ""
    build_seconds: float = 0.0
    sample_ids_sha256: str = ""
    normalization: str = field(default="")

    def __post_init__(self) -> None:
        object.__setattr__(self, "metric", Metric(self.metric))
        object.__setattr__(self, "kind", IndexKind(self.kind))
        if not self.normalization:
            object.__setattr__(self, "normalization", "l2" if self.metric is Metric.COSINE else "none")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["metric"], out["kind"] = self.metric.value, self.kind.value
        return {"format": FORMAT, "version": VERSION, **out, "index_file": INDEX_FILE, "rows_file": ROWS_FILE}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> IndexManifest:
        keys = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in keys})


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


def read_manifest(path: str | Path) -> IndexManifest:
    """Read and check ``index.json`` of an index directory."""
    path = Path(path)
    if not path.exists():
        raise IndexFileError(f"index directory '{path}' does not exist; build one with 'probe index STORE --out {path}'")
    file = path / MANIFEST
    if not file.is_file():
        raise IndexFileError(f"'{path}' is not an index directory: {MANIFEST} is missing; "
                             "build one with 'probe index STORE --out DIR'")
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise IndexFileError(f"'{file}' is not valid JSON ({exc}); the index is corrupt: rebuild it "
                             "with 'probe index ... --overwrite'") from exc
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise IndexFileError(f"'{file}' is not a {FORMAT} manifest; rebuild the index with 'probe index'")
    if raw.get("version") != VERSION:
        raise IndexFileError(f"index '{path}' has format version {raw.get('version')!r}, this toolkit reads "
                             f"version {VERSION}; rebuild it with 'probe index ... --overwrite'")
    try:
        return IndexManifest.from_dict(raw)
    except (TypeError, ValueError) as exc:
        raise IndexFileError(f"'{file}' is incomplete or invalid ({exc}); rebuild the index") from exc


def open_index(path: str | Path, store: Store | str | Path | None = None, *, layer: str | None = None) -> OpenIndex:
    """Open an index directory against ``store`` (default: the store recorded at build time).

    Raises
    ------
    IndexMismatchError
        The store's fingerprint differs from the one the index was built from, or
        ``layer`` is given and is not the index's layer.
    IndexFileError
        The directory is not an index or its files are corrupt.
    """
    path = Path(path)
    manifest = read_manifest(path)
    if layer is not None and layer != manifest.layer:
        raise IndexMismatchError(f"index '{path}' holds layer '{manifest.layer}', not '{layer}'; build an index "
                                 f"for '{layer}' with 'probe index STORE --layer {layer} --out DIR'")
    if store is None:
        store = open_store(manifest.store_path)
    elif not isinstance(store, Store):
        store = open_store(store)
    if store.fingerprint != manifest.store_fingerprint:
        raise IndexMismatchError(
            f"index '{path}' was built from store '{manifest.store_path}' (fingerprint "
            f"{manifest.store_fingerprint[:12]}) but store '{store.path}' has fingerprint {store.fingerprint[:12]}: "
            f"another or a changed store; rebuild the index with 'probe index {store.path} --layer "
            f"{manifest.layer} --embodiment {manifest.embodiment} --out {path} --overwrite'")
    if manifest.layer not in store.layers:  # same fingerprint implies same layers; kept for hand-edited manifests
        raise IndexMismatchError(f"index '{path}' holds layer '{manifest.layer}' which store '{store.path}' lacks")
    rows_file, index_file = path / ROWS_FILE, path / INDEX_FILE
    try:
        rows = np.load(rows_file)
    except (OSError, ValueError, EOFError) as exc:
        raise IndexFileError(f"'{rows_file}' cannot be read ({exc}); the index is corrupt: rebuild it") from exc
    if not np.issubdtype(rows.dtype, np.integer):
        raise IndexFileError(f"'{rows_file}' holds {rows.dtype}, expected integer row positions; rebuild the index")
    if not index_file.is_file():
        raise IndexFileError(f"index '{path}' lacks {INDEX_FILE}; the index is corrupt: rebuild it")
    try:
        index = faiss.read_index(str(index_file))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise IndexFileError(f"'{index_file}' is not a readable FAISS index ({first}); the file is corrupt or "
                             "truncated: rebuild it with 'probe index ... --overwrite'") from exc
    if index.ntotal != manifest.n or index.d != manifest.dim or rows.shape != (manifest.n,):
        raise IndexFileError(f"index '{path}' is inconsistent: {INDEX_FILE} holds {index.ntotal} vectors of dim "
                             f"{index.d}, {ROWS_FILE} {rows.shape[0] if rows.ndim else 0} rows, the manifest says "
                             f"{manifest.n} x {manifest.dim}; rebuild it")
    if rows.size and (rows.min() < 0 or rows.max() >= store.n):
        raise IndexFileError(f"'{rows_file}' points outside store '{store.path}'; rebuild the index")
    return OpenIndex(path, manifest, index, rows.astype(np.int64), store)


@dataclass(frozen=True, eq=False)
class OpenIndex:
    """An index opened against its store. ``rows[i]`` is the store row of index id ``i``."""

    path: Path
    manifest: IndexManifest
    index: faiss.Index = field(repr=False)
    rows: np.ndarray = field(repr=False)
    store: Store = field(repr=False)

    @property
    def n(self) -> int:
        return self.manifest.n

    @property
    def metric(self) -> Metric:
        return self.manifest.metric

    @property
    def kind(self) -> IndexKind:
        return self.manifest.kind

    @property
    def exact(self) -> bool:
        return self.kind.exact

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """Prepared (normalised for cosine) reference vectors of index ids ``ids``."""
        return prepare(self.store.matrix(self.manifest.layer)[self.rows[ids]], self.metric)

    def search(self, queries: np.ndarray, k: int, *, allowed: np.ndarray | None = None,
               nprobe: int | None = None, ef_search: int | None = None,
               rerank: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest index ids of each query row.

        Parameters
        ----------
        queries : (nq, dim) float array of raw latents (normalised here for cosine)
        k : neighbours per query (``<= n``)
        allowed : optional index ids to restrict the search to (e.g. one task)
        nprobe, ef_search, rerank : override the manifest's search parameters

        Returns
        -------
        distances, ids : (nq, k) arrays; distances ascending (``1 - cosine`` or squared
            L2), ids -1 with distance ``inf`` where fewer than ``k`` were found.
        """
        q = np.asarray(queries)
        if q.ndim == 1:
            q = q[None, :]
        if q.ndim != 2 or q.shape[1] != self.manifest.dim:
            raise LatentsError(f"queries must be (n, {self.manifest.dim}) for index '{self.path}' (layer "
                               f"'{self.manifest.layer}'), got shape {q.shape}")
        if not np.isfinite(q).all():
            raise LatentsError("queries hold NaN or Inf values; check the model outputs for these samples")
        n_ref = self.n if allowed is None else len(allowed)
        if k < 1 or k > n_ref:
            raise ConfigError(f"k={k} must lie in 1..{n_ref}: the reference set ({self.manifest.embodiment}"
                              f"{'' if allowed is None else ', filtered'}) holds {n_ref} samples; lower -k")
        q = prepare(q, self.metric)
        p = self.manifest.params
        rerank = p.get("rerank", 0) if rerank is None else rerank
        depth = min(n_ref, max(k, rerank)) if rerank and not self.exact else k
        sel = None if allowed is None else faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))
        with few_threads(len(q)):
            D, I = self.index.search(q, depth, params=self._params(depth, sel, nprobe, ef_search))
        if self.metric is Metric.COSINE:
            D = np.where(I >= 0, 1.0 - D, np.inf).astype(np.float32)
        else:
            D = np.where(I >= 0, D, np.inf).astype(np.float32)
        if rerank and not self.exact:
            D, I = self._rerank(q, I)
        return D[:, :k], I[:, :k]

    def _params(self, depth: int, sel: faiss.IDSelector | None, nprobe: int | None,
                ef_search: int | None) -> faiss.SearchParameters | None:
        p = self.manifest.params
        if self.kind.inverted:
            params = faiss.SearchParametersIVF()
            params.nprobe = int(nprobe or p["nprobe"])
        elif self.kind is IndexKind.HNSW:
            params = faiss.SearchParametersHNSW()
            params.efSearch = max(int(ef_search or p["ef_search"]), depth)
        elif sel is not None:
            params = faiss.SearchParameters()
        else:
            return None
        if sel is not None:
            params.sel = sel  # the caller keeps ``sel`` alive during the search
        return params

    def _rerank(self, q: np.ndarray, I: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact distances to each query's candidates (gathered once, in row order), re-sorted."""
        valid = I >= 0
        ids = np.unique(I[valid])
        V = self.vectors(ids)  # sorted ids: memory-mapped rows read forward
        pos = np.searchsorted(ids, np.where(valid, I, ids[0] if len(ids) else 0))
        cand = V[pos]  # (nq, R, d)
        if self.metric is Metric.COSINE:
            D = 1.0 - np.einsum("qrd,qd->qr", cand, q)
        else:
            diff = cand - q[:, None, :]
            D = np.einsum("qrd,qrd->qr", diff, diff)
        D = np.where(valid, D, np.inf).astype(np.float32)
        order = np.argsort(D, axis=1, kind="stable")
        return np.take_along_axis(D, order, 1), np.take_along_axis(I, order, 1)


def resolve_layer(store: Store, layer: str | None) -> str:
    """``layer`` checked against the store, or the store's only layer when ``None``."""
    if layer is None:
        if len(store.layers) == 1:
            return store.layers[0]
        raise ConfigError(f"store '{store.path}' holds {len(store.layers)} layers; choose one with --layer: "
                          f"{', '.join(store.layers[:8])}{' ...' if len(store.layers) > 8 else ''}")
    store.layer_info(layer)  # raises LayerNotFoundError with close matches
    return layer
