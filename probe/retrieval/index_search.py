"""Opening a built retrieval index against its store, and searching it.

Opening an index against a store whose fingerprint differs from the one recorded
at build time, or for another layer, raises :class:`IndexMismatchError`; missing or
corrupt files raise :class:`IndexFileError`. Approximate kinds can re-rank their top
candidates exactly against the store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np

from metrics.index import IndexKind, few_threads
from metrics.knn import Metric, prepare
from probe.errors import ConfigError, IndexFileError, IndexMismatchError, LatentsError
from probe.retrieval.index_manifest import INDEX_FILE, ROWS_FILE, IndexManifest, read_manifest
from probe.store.store import Store, open_store

__all__ = ["OpenIndex", "open_index"]


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
