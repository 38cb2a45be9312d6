"""The suite's one kNN graph: exact FAISS search, or an approximate index whose recall is measured.

:func:`build_graph` searches every row's k nearest neighbours once (the largest k any
metric needs); the metrics slice it. For millions of rows an IVF or HNSW index (built by
:func:`metrics.index.new_index`) replaces exact search, and :func:`graph_recall` checks it
against exact search on a sample of rows so the output can say how approximate it was.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from metrics.index import EF_SEARCH, IndexKind, IndexParams, new_index, resolve_params, training_rows
from metrics.knn import Metric, Neighbors, knn, prepare

IVF_NPROBE: int | None = None  # IVF lists probed per query; None: resolve_params's rule, max(16, nlist / 40)


def build_graph(X: np.ndarray, k: int, metric: Metric, index: IndexKind) -> Neighbors:
    """The one kNN graph: exact FAISS flat, or an approximate index for very large stores.

    Parameters
    ----------
    X : (n, d) float array
    k : int
        Neighbours per row (self excluded).
    metric : Metric
    index : IndexKind
        ``exact`` (or ``flat``): exact search. ``hnsw``: HNSW (M=32, efConstruction 80,
        efSearch max(2k, 128)); ``ivf`` / ``ivfpq``: IVF-flat / IVF-PQ with the parameters
        :func:`metrics.index.resolve_params` chooses from the data size (nlist ~ 4 sqrt(n),
        nprobe max(16, nlist / 40)).

    Returns
    -------
    Neighbors
        An approximate graph is checked against exact search on up to 1,000 sampled rows;
        the index and its recall@k are the graph's ``note``.
    """
    index = IndexKind(index)
    if index.exact:
        return knn(X, None, k, metric)
    Z = prepare(X, metric)
    n, d = Z.shape
    params = resolve_params(index, n, d, nprobe=IVF_NPROBE, ef_search=max(2 * k, EF_SEARCH))
    ann = new_index(index, d, metric, params)
    if not ann.is_trained:
        ann.train(Z[training_rows(n, index, params, seed=0)])
    ann.add(Z)
    if index is IndexKind.HNSW:
        ann.hnsw.efSearch = params["ef_search"]
    else:
        ann.nprobe = params["nprobe"]
    graph = knn(Z, None, k, metric, index=ann)
    del ann
    rows, recall = graph_recall(Z, graph, metric)
    return dataclasses.replace(graph, note=f"neighbours from an approximate {_describe(index, params)} index, "
                               f"not exact search: recall@{k} {recall:.3f} against exact search on {rows} sampled rows")


def _describe(index: IndexKind, params: IndexParams) -> str:
    """The index and its parameters, as the graph's note names them."""
    if index is IndexKind.HNSW:
        return f"HNSW (M={params['hnsw_m']}, efSearch={params['ef_search']})"
    if index is IndexKind.IVFPQ:
        return (f"IVF-PQ (nlist={params['nlist']}, m={params['pq_m']}, nbits={params['pq_nbits']}, "
                f"nprobe={params['nprobe']})")
    return f"IVF-flat (nlist={params['nlist']}, nprobe={params['nprobe']})"


def graph_recall(X: np.ndarray, graph: Neighbors, metric: Metric, sample: int = 1000, seed: int = 0
                 ) -> tuple[int, float]:
    """Share of each sampled row's ``graph`` neighbours that exact search also finds (recall@k), averaged."""
    n, k = len(graph), graph.k
    rows = np.sort(np.random.default_rng(seed).choice(n, size=min(sample, n), replace=False))
    exact = knn(X[rows], X, min(k + 1, n), metric).indices
    hits = [len(np.intersect1d(graph.indices[i], exact[j][exact[j] != i][:k])) for j, i in enumerate(rows)]
    return len(rows), float(np.mean(hits) / k)


def approximate_note(index: IndexKind) -> str:
    """The note for a graph a caller built with an approximate ``index`` and handed over without one."""
    return f"neighbours from an approximate {index.value} index, not exact search (graph given by the caller)"
