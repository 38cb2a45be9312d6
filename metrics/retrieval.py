"""Cross-embodiment retrieval: does a robot moment find the same (task, stage) among human moments?

Query / reference vocabulary as in pytorch-metric-learning's ``AccuracyCalculator``:
every function takes a neighbour index matrix ``(n_query, k)`` into the reference
(``metrics.knn.knn(query, reference, k).indices`` or the :class:`~metrics.knn.Neighbors`
itself), the query labels and the reference labels. A query whose label the reference
lacks scores ``nan`` (not 0): it is left out of every mean and counted in
:class:`RetrievalResult`. Labels are any 1-D array of hashables; use
:func:`combine_labels` to make one label from (task, stage).

Per-query forms (``*_samples``, in :mod:`metrics.ranking` and importable from here)
pair with the aggregates (``retrieval_*``), as scikit-learn's ``silhouette_samples`` /
``silhouette_score``. This module is the one implementation used by the report and
by ``probe retrieve --eval``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from metrics.knn import Metric, Neighbors, knn
from metrics.ranking import (ap_at_r_samples, check_width, finite_mean, hit_at_k_samples, neighbor_indices,
                             reciprocal_rank_samples)

log = logging.getLogger(__name__)

__all__ = [
    "RetrievalResult",
    "cross_retrieval",
    "evaluate_retrieval",
    "retrieval_map_at_r",
    "retrieval_mrr",
    "retrieval_precision_at_1",
    "retrieval_recall_at_10",
    "retrieval_recall_at_5",
    "retrieval_k",
    "retrieval_recall_at_k",
]


# ----------------------------------------------------------------------------- aggregates


def retrieval_precision_at_1(neighbors: Neighbors | np.ndarray, query_labels: np.ndarray,
                             reference_labels: np.ndarray) -> float:
    """Share of queries whose nearest reference has the same label.

    Range [0, 1], higher is better; chance is about the reference's label frequency.
    Queries whose label the reference lacks are excluded (pytorch-metric-learning's
    ``precision_at_1`` drops these "lone" queries too); nan if no query remains.
    """
    return finite_mean(hit_at_k_samples(neighbors, query_labels, reference_labels, 1))


def retrieval_map_at_r(neighbors: Neighbors | np.ndarray, query_labels: np.ndarray,
                       reference_labels: np.ndarray, r_cap: int | None = None) -> float:
    """Mean AP@R over queries (Musgrave et al. 2020); see :func:`ap_at_r_samples`.

    Range [0, 1], higher is better. Exact when the graph holds at least the largest label
    count of the reference (and ``r_cap`` is None); otherwise R is capped, and
    :func:`evaluate_retrieval` reports how many queries were.
    """
    return finite_mean(ap_at_r_samples(neighbors, query_labels, reference_labels, r_cap).values)


def retrieval_mrr(neighbors: Neighbors | np.ndarray, query_labels: np.ndarray,
                  reference_labels: np.ndarray) -> float:
    """Mean reciprocal rank of the first same-label neighbour (0 for a query without one in the
    graph). Range [0, 1], higher is better. As pytorch-metric-learning's ``mean_reciprocal_rank``."""
    return finite_mean(reciprocal_rank_samples(neighbors, query_labels, reference_labels))


def retrieval_recall_at_k(neighbors: Neighbors | np.ndarray, query_labels: np.ndarray,
                          reference_labels: np.ndarray, k: int) -> float:
    """Share of queries with at least one same-label reference among their ``k`` nearest.

    Range [0, 1], higher is better. This is the "recall@k" of the image-retrieval
    literature (a hit rate), not the share of all R relevant items retrieved.
    """
    return finite_mean(hit_at_k_samples(neighbors, query_labels, reference_labels, k))


def retrieval_recall_at_5(neighbors: Neighbors | np.ndarray, query_labels: np.ndarray,
                          reference_labels: np.ndarray) -> float:
    """:func:`retrieval_recall_at_k` with k = 5."""
    return retrieval_recall_at_k(neighbors, query_labels, reference_labels, 5)


def retrieval_recall_at_10(neighbors: Neighbors | np.ndarray, query_labels: np.ndarray,
                           reference_labels: np.ndarray) -> float:
    """:func:`retrieval_recall_at_k` with k = 10."""
    return retrieval_recall_at_k(neighbors, query_labels, reference_labels, 10)


# ----------------------------------------------------------------------------- all at once


@dataclass(frozen=True)
class RetrievalResult:
    """Per-query retrieval scores and their means (nan entries excluded).

    Per-query arrays, each ``(n_query,)`` float64 with nan where the reference lacks the
    query's label: ``hit_at_1``, ``hit_at_5``, ``hit_at_10``, ``ap_at_r``,
    ``reciprocal_rank``; ``r`` / ``r_used`` as in :class:`APatR`.
    """

    hit_at_1: np.ndarray
    hit_at_5: np.ndarray
    hit_at_10: np.ndarray
    ap_at_r: np.ndarray
    reciprocal_rank: np.ndarray
    r: np.ndarray
    r_used: np.ndarray
    k: int

    @property
    def n_queries(self) -> int:
        return int(len(self.hit_at_1))

    @property
    def n_missing_label(self) -> int:
        """Queries whose label the reference lacks (nan, excluded from the means)."""
        return int((self.r == 0).sum())

    @property
    def n_evaluated(self) -> int:
        return self.n_queries - self.n_missing_label

    @property
    def n_r_capped(self) -> int:
        """Queries whose R was capped (by ``r_cap`` or the graph width): their AP@R is approximate."""
        return int(((self.r_used < self.r) & (self.r > 0)).sum())

    @property
    def precision_at_1(self) -> float:
        return finite_mean(self.hit_at_1)

    @property
    def recall_at_5(self) -> float:
        return finite_mean(self.hit_at_5)

    @property
    def recall_at_10(self) -> float:
        return finite_mean(self.hit_at_10)

    @property
    def map_at_r(self) -> float:
        return finite_mean(self.ap_at_r)

    @property
    def mrr(self) -> float:
        return finite_mean(self.reciprocal_rank)

    def summary(self) -> dict[str, float | int]:
        """The aggregates and counts as a JSON-ready dict."""
        return {
            "precision_at_1": self.precision_at_1,
            "map_at_r": self.map_at_r,
            "mrr": self.mrr,
            "recall_at_5": self.recall_at_5,
            "recall_at_10": self.recall_at_10,
            "n_queries": self.n_queries,
            "n_evaluated": self.n_evaluated,
            "n_missing_label": self.n_missing_label,
            "n_r_capped": self.n_r_capped,
            "k": self.k,
        }


def evaluate_retrieval(neighbors: Neighbors | np.ndarray, query_labels: np.ndarray,
                       reference_labels: np.ndarray, r_cap: int | None = None) -> RetrievalResult:
    """Every retrieval score of one direction from one neighbour graph.

    Parameters
    ----------
    neighbors : Neighbors or (n_query, k) int array
        Indices into the reference, nearest first (-1 = missing). For exact MAP@R, ``k``
        must be at least the largest label count of the reference (or ``r_cap``); recall@5
        and recall@10 need ``k >= min(10, n_reference)``.
    query_labels : (n_query,) array
    reference_labels : (n_reference,) array
    r_cap : int, optional
        Cap on R for MAP@R (bounds the graph needed on large stores); capped queries are
        counted in ``n_r_capped``.

    Returns
    -------
    RetrievalResult
    """
    idx = neighbor_indices(neighbors)
    n_ref = len(np.asarray(reference_labels))
    check_width(idx, 10, n_ref, "recall@10")
    ap = ap_at_r_samples(idx, query_labels, reference_labels, r_cap)
    result = RetrievalResult(
        hit_at_1=hit_at_k_samples(idx, query_labels, reference_labels, 1),
        hit_at_5=hit_at_k_samples(idx, query_labels, reference_labels, 5),
        hit_at_10=hit_at_k_samples(idx, query_labels, reference_labels, 10),
        ap_at_r=ap.values,
        reciprocal_rank=reciprocal_rank_samples(idx, query_labels, reference_labels),
        r=ap.r,
        r_used=ap.r_used,
        k=int(idx.shape[1]),
    )
    if result.n_missing_label:
        log.info("%d of %d queries have a label absent from the reference (nan, excluded)",
                 result.n_missing_label, result.n_queries)
    if result.n_r_capped:
        log.info("R was capped for %d queries: MAP@R is approximate (search with a larger k)", result.n_r_capped)
    return result


def retrieval_k(reference_labels: np.ndarray, r_cap: int | None = None, min_k: int = 10) -> int:
    """Graph width for exact MAP@R and recall@10: the largest reference label count
    (capped by ``r_cap``), at least ``min_k``, at most the reference size."""
    rl = np.asarray(reference_labels)
    if rl.size == 0:
        raise ValueError("the reference is empty; retrieval needs at least one reference sample")
    _, counts = np.unique(rl.astype(str) if rl.dtype.kind == "O" else rl, return_counts=True)
    k = int(counts.max())
    if r_cap is not None:
        k = min(k, int(r_cap))
    return int(min(max(k, min_k), len(rl)))


def cross_retrieval(X: np.ndarray, embodiment: np.ndarray, labels: np.ndarray, a: str = "human",
                    b: str = "robot", k: int | None = None, metric: Metric | str = Metric.COSINE,
                    r_cap: int | None = None) -> dict[str, RetrievalResult]:
    """Retrieval in both directions between two embodiments: ``"{b}_to_{a}"`` and ``"{a}_to_{b}"``.

    With the defaults the keys are ``"robot_to_human"`` (robot queries, human reference)
    and ``"human_to_robot"``. This is the retrieval entry point, so unlike the other
    metric functions it searches itself: one exact :func:`metrics.knn.knn` per direction.

    Parameters
    ----------
    X : (n, d) float array
    embodiment : (n,) array of embodiment names
    labels : (n,) array, e.g. ``combine_labels(task, stage)``
    a, b : the two embodiments
    k : int, optional
        Neighbours per query; default :func:`retrieval_k` of each reference (exact MAP@R).
    metric : "cosine" or "l2"
    r_cap : int, optional
        Cap on R (and on the default k) for large stores.
    """
    X = np.asarray(X)
    emb = np.asarray(embodiment).astype(str)
    labels = np.asarray(labels)
    if X.ndim != 2 or len(emb) != len(X) or len(labels) != len(X):
        raise ValueError(
            f"X must be (n, d) with embodiment and labels of length n; got X {X.shape}, "
            f"embodiment {emb.shape}, labels {labels.shape}"
        )
    rows = {}
    for name in (a, b):
        rows[name] = np.flatnonzero(emb == name)
        if rows[name].size == 0:
            raise ValueError(
                f"no samples of embodiment '{name}'; present: {sorted(set(emb.tolist()))}; "
                "pass a= and b= that exist in the store"
            )
    out: dict[str, RetrievalResult] = {}
    for query, ref in ((b, a), (a, b)):
        qi, ri = rows[query], rows[ref]
        kk = retrieval_k(labels[ri], r_cap) if k is None else min(int(k), len(ri))
        nb = knn(X[qi], X[ri], kk, metric)
        out[f"{query}_to_{ref}"] = evaluate_retrieval(nb, labels[qi], labels[ri], r_cap)
    return out
