"""The suite's one kNN graph: exact FAISS search, or an approximate index whose recall is measured.

:func:`build_graph` searches every row's k nearest neighbours once (the largest k any
metric needs); the metrics slice it. For millions of rows an IVF-flat or HNSW index
replaces exact search, and :func:`graph_recall` checks it against exact search on a
sample of rows so the output can say how approximate it was.
"""

from __future__ import annotations

import dataclasses
from enum import Enum

import numpy as np

from metrics.knn import Metric, Neighbors, knn, prepare


class IndexKind(str, Enum):
    """kNN index: exact (FAISS flat) or approximate (FAISS HNSW or IVF-flat, for very large stores)."""

    EXACT = "exact"
    HNSW = "hnsw"
    IVF = "ivf"


def build_graph(X: np.ndarray, k: int, metric: Metric, index: IndexKind) -> Neighbors:
    """The one kNN graph: exact FAISS flat, or an approximate index for very large stores.

    ``hnsw``: HNSW (M=32, efConstruction 80, efSearch max(2k, 128)); ``ivf``: IVF-flat
    (nlist 4 sqrt(n), nprobe 16). An approximate graph is checked against exact search
    on up to 1,000 sampled rows; the index and its recall@k are the graph's ``note``.
    """
    if index is IndexKind.EXACT:
        return knn(X, None, k, metric)
    import faiss

    Z = prepare(X, metric)
    n, d = Z.shape
    faiss_metric = faiss.METRIC_INNER_PRODUCT if metric is Metric.COSINE else faiss.METRIC_L2
    if index is IndexKind.HNSW:
        ann = faiss.IndexHNSWFlat(d, 32, faiss_metric)
        ann.hnsw.efConstruction = 80
        ann.add(Z)
        ann.hnsw.efSearch = max(2 * k, 128)
        what = f"HNSW (M=32, efSearch={ann.hnsw.efSearch})"
    else:
        nlist = max(1, min(int(4 * np.sqrt(n)), n // 39))  # FAISS wants >= 39 training rows per list
        quantizer = faiss.IndexFlatIP(d) if metric is Metric.COSINE else faiss.IndexFlatL2(d)
        ann = faiss.IndexIVFFlat(quantizer, d, nlist, faiss_metric)
        train = np.random.default_rng(0).choice(n, size=min(n, 64 * nlist), replace=False)
        ann.train(Z[np.sort(train)])
        ann.add(Z)
        ann.nprobe = min(nlist, IVF_NPROBE)
        what = f"IVF-flat (nlist={nlist}, nprobe={ann.nprobe})"
    graph = knn(Z, None, k, metric, index=ann)
    del ann
    rows, recall = graph_recall(Z, graph, metric)
    return dataclasses.replace(graph, note=f"neighbours from an approximate {what} index, not exact search: "
                               f"recall@{k} {recall:.3f} against exact search on {rows} sampled rows")


IVF_NPROBE = 16


def graph_recall(X: np.ndarray, graph: Neighbors, metric: Metric, sample: int = 1000, seed: int = 0
                 ) -> tuple[int, float]:
    """Share of each sampled row's ``graph`` neighbours that exact search also finds (recall@k), averaged."""
    n, k = len(graph), graph.k
    rows = np.sort(np.random.default_rng(seed).choice(n, size=min(sample, n), replace=False))
    exact = knn(X[rows], X, min(k + 1, n), metric).indices
    hits = [len(np.intersect1d(graph.indices[i], exact[j][exact[j] != i][:k])) for j, i in enumerate(rows)]
    return len(rows), float(np.mean(hits) / k)


def approximate_note(index: IndexKind) -> str:
    return f"neighbours from an approximate {index.value} index, not exact search (graph given by the caller)"
