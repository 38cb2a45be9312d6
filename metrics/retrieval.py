"""Cross-embodiment retrieval: does a robot moment find the same (task, stage) among human moments?

Query / reference vocabulary as in pytorch-metric-learning's ``AccuracyCalculator``:
every function takes a neighbour index matrix ``(n_query, k)`` into the reference
(``metrics.knn.knn(query, reference, k).indices`` or the :class:`~metrics.knn.Neighbors`
itself), the query labels and the reference labels. A query whose label the reference
lacks scores ``nan`` (not 0): it is left out of every mean and counted in
:class:`RetrievalResult`. Labels are any 1-D array of hashables; use
:func:`combine_labels` to make one label from (task, stage).

Per-query forms (``*_samples``) pair with the aggregates (``retrieval_*``), as
scikit-learn's ``silhouette_samples`` / ``silhouette_score``. This module is the one
implementation used by the report and by ``probe retrieve --eval``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from metrics.knn import Metric, Neighbors, knn

log = logging.getLogger(__name__)

_BLOCK = 4096  # query rows per block when forming (block, k) match matrices

__all__ = [
    "APatR",
    "RetrievalResult",
    "ap_at_r_samples",
    "combine_labels",
    "cross_retrieval",
    "evaluate_retrieval",
    "hit_at_k_samples",
    "match_matrix",
    "reciprocal_rank_samples",
    "retrieval_map_at_r",
    "retrieval_mrr",
    "retrieval_precision_at_1",
    "retrieval_recall_at_10",
    "retrieval_recall_at_5",
    "retrieval_k",
    "retrieval_recall_at_k",
]


# ----------------------------------------------------------------------------- inputs


def combine_labels(*columns: np.ndarray) -> np.ndarray:
    """One label per sample from several label columns, e.g. ``combine_labels(task, stage)``.

    Returns a string array ``"task\\x1fstage"`` (unit separator, so no real label collides).
    """
    if not columns:
        raise ValueError("combine_labels needs at least one label column; pass e.g. (task, stage)")
    cols = [np.asarray(c).astype(str) for c in columns]
    n = len(cols[0])
    for c in cols:
        if c.ndim != 1 or len(c) != n:
            raise ValueError(f"label columns must be 1-D and of equal length; got shapes {[x.shape for x in cols]}")
    out = cols[0]
    for c in cols[1:]:
        out = np.char.add(np.char.add(out, "\x1f"), c)
    return out


def _indices(neighbors: Neighbors | np.ndarray) -> np.ndarray:
    idx = neighbors.indices if isinstance(neighbors, Neighbors) else np.asarray(neighbors)
    if idx.ndim != 2 or idx.shape[1] < 1:
        raise ValueError(
            f"neighbour indices must be a 2-D (n_query, k) integer array with k >= 1; got shape {idx.shape}; "
            "pass metrics.knn.knn(query, reference, k) or its .indices"
        )
    if not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"neighbour indices must be integers; got dtype {idx.dtype}")
    return idx


def _encode(query_labels: np.ndarray, reference_labels: np.ndarray, n_query: int, idx: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    """Joint integer codes of query and reference labels, with shape checks."""
    ql = np.asarray(query_labels)
    rl = np.asarray(reference_labels)
    if ql.ndim != 1 or rl.ndim != 1:
        raise ValueError(
            f"labels must be 1-D; got query {ql.shape} and reference {rl.shape}; "
            "use combine_labels(task, stage) to make one label from several columns"
        )
    if len(ql) != n_query:
        raise ValueError(
            f"query labels hold {len(ql)} entries but the neighbour matrix has {n_query} query rows; "
            "pass the labels of the rows that were searched"
        )
    if len(rl) == 0:
        raise ValueError("the reference is empty; retrieval needs at least one reference sample")
    if idx.size and (idx.max() >= len(rl) or idx.min() < -1):
        raise ValueError(
            f"neighbour indices must lie in [-1, {len(rl) - 1}] (the reference holds {len(rl)} samples); "
            f"got range [{idx.min()}, {idx.max()}]; were query and reference swapped?"
        )
    numeric = set("biuf")
    if not (ql.dtype.kind in numeric and rl.dtype.kind in numeric):
        ql, rl = ql.astype(str), rl.astype(str)
    _, codes = np.unique(np.concatenate([ql, rl]), return_inverse=True)
    codes = codes.reshape(-1)
    return codes[:n_query].astype(np.int64), codes[n_query:].astype(np.int64)


def _label_counts(q: np.ndarray, r: np.ndarray) -> np.ndarray:
    """R per query: how many reference samples carry the query's label."""
    n_codes = int(max(q.max(initial=-1), r.max(initial=-1))) + 1
    return np.bincount(r, minlength=n_codes)[q].astype(np.int64)


def _blocks(n: int):
    for start in range(0, n, _BLOCK):
        yield slice(start, min(start + _BLOCK, n))


def _match_block(idx: np.ndarray, q: np.ndarray, r: np.ndarray) -> np.ndarray:
    valid = idx >= 0
    return valid & (r[np.where(valid, idx, 0)] == q[:, None])


def match_matrix(neighbors: Neighbors | np.ndarray, query_labels: np.ndarray,
                 reference_labels: np.ndarray) -> np.ndarray:
    """``(n_query, k)`` bool: is the j-th neighbour of query i of the query's label.

    Missing neighbours (index -1) never match. Use on small sets (dashboard, examples):
    the other functions work block by block.
    """
    idx = _indices(neighbors)
    q, r = _encode(query_labels, reference_labels, idx.shape[0], idx)
    return _match_block(idx, q, r)


# ----------------------------------------------------------------------------- per query


def hit_at_k_samples(neighbors: Neighbors | np.ndarray, query_labels: np.ndarray,
                     reference_labels: np.ndarray, k: int) -> np.ndarray:
    """Per query: 1.0 if one of its first ``k`` neighbours has its label, else 0.0; nan if the reference lacks it.

    ``k = 1`` gives precision@1 per query. The graph must hold ``k`` neighbours, or all of
    the reference when it has fewer than ``k`` samples (then top-k is the whole reference).
    """
    idx = _indices(neighbors)
    q, r = _encode(query_labels, reference_labels, idx.shape[0], idx)
    _check_width(idx, k, len(r), f"recall@{k}")
    R = _label_counts(q, r)
    out = np.empty(len(q), dtype=np.float64)
    for s in _blocks(len(q)):
        out[s] = _match_block(idx[s, :k], q[s], r).any(axis=1)
    out[R == 0] = np.nan
    return out


@dataclass(frozen=True)
class APatR:
    """Per-query AP@R: ``values`` (nan where the reference lacks the label), the true
    ``r`` (reference samples with the query's label) and the ``r_used`` in the sum
    (``min(r, r_cap, k)``); ``capped`` marks queries where ``r_used < r``."""

    values: np.ndarray
    r: np.ndarray
    r_used: np.ndarray

    @property
    def capped(self) -> np.ndarray:
        return self.r_used < self.r


def ap_at_r_samples(neighbors: Neighbors | np.ndarray, query_labels: np.ndarray,
                    reference_labels: np.ndarray, r_cap: int | None = None) -> APatR:
    """Per-query average precision at R (Musgrave et al. 2020, "A Metric Learning Reality Check").

    ``AP@R = (1/R) * sum_{i<=R} P@i * rel_i`` where R is the number of reference samples with
    the query's label and rel_i says whether the i-th neighbour matches. Range [0, 1], higher
    is better; 1 means the R nearest references are exactly those of the query's label.

    Exact only when the graph holds ``k >= R`` neighbours (search at the largest label
    count). Otherwise, or when ``r_cap`` is given, R is replaced by ``min(R, r_cap, k)`` in
    both the sum and the denominator (AP at a truncated R, which can still reach 1); the
    queries concerned are flagged (``capped``). Deviation: pytorch-metric-learning 2.x, when
    its ``k`` is below the label count, sums the first k terms but divides by the full R
    (a lower bound it warns is "incorrect"); that number is ``values * r_used / r``.
    """
    idx = _indices(neighbors)
    if r_cap is not None and r_cap < 1:
        raise ValueError(f"r_cap must be >= 1 or None; got {r_cap}")
    q, r = _encode(query_labels, reference_labels, idx.shape[0], idx)
    R = _label_counts(q, r)
    width = idx.shape[1]
    r_used = np.minimum(R, width if r_cap is None else min(width, r_cap))
    values = np.empty(len(q), dtype=np.float64)
    ranks = np.arange(1, width + 1, dtype=np.float64)
    for s in _blocks(len(q)):
        match = _match_block(idx[s], q[s], r)
        relevant = ranks[None, :] <= r_used[s, None]
        eq = match & relevant
        cum = np.cumsum(eq, axis=1, dtype=np.float64)
        precision_sum = (cum * eq / ranks).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            values[s] = precision_sum / r_used[s]
    values[R == 0] = np.nan
    return APatR(values, R, r_used)


def reciprocal_rank_samples(neighbors: Neighbors | np.ndarray, query_labels: np.ndarray,
                            reference_labels: np.ndarray) -> np.ndarray:
    """Per query: 1 / rank of the first neighbour with its label; 0 if none in the graph; nan if
    the reference lacks the label (pytorch-metric-learning's ``mean_reciprocal_rank``)."""
    idx = _indices(neighbors)
    q, r = _encode(query_labels, reference_labels, idx.shape[0], idx)
    R = _label_counts(q, r)
    out = np.empty(len(q), dtype=np.float64)
    for s in _blocks(len(q)):
        match = _match_block(idx[s], q[s], r)
        first = np.argmax(match, axis=1)
        out[s] = np.where(match.any(axis=1), 1.0 / (first + 1.0), 0.0)
    out[R == 0] = np.nan
    return out


def _check_width(idx: np.ndarray, k: int, n_reference: int, name: str) -> None:
    if k < 1:
        raise ValueError(f"k must be >= 1 for {name}; got {k}")
    if idx.shape[1] < min(k, n_reference):
        raise ValueError(
            f"{name} needs {min(k, n_reference)} neighbours per query but the graph holds {idx.shape[1]}; "
            f"search with k >= {min(k, n_reference)}"
        )


def _mean(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else float("nan")


# ----------------------------------------------------------------------------- aggregates


def retrieval_precision_at_1(neighbors: Neighbors | np.ndarray, query_labels: np.ndarray,
                             reference_labels: np.ndarray) -> float:
    """Share of queries whose nearest reference has the same label.

    Range [0, 1], higher is better; chance is about the reference's label frequency.
    Queries whose label the reference lacks are excluded (pytorch-metric-learning's
    ``precision_at_1`` drops these "lone" queries too); nan if no query remains.
    """
    return _mean(hit_at_k_samples(neighbors, query_labels, reference_labels, 1))


def retrieval_map_at_r(neighbors: Neighbors | np.ndarray, query_labels: np.ndarray,
                       reference_labels: np.ndarray, r_cap: int | None = None) -> float:
    """Mean AP@R over queries (Musgrave et al. 2020); see :func:`ap_at_r_samples`.

    Range [0, 1], higher is better. Exact when the graph holds at least the largest label
    count of the reference (and ``r_cap`` is None); otherwise R is capped, and
    :func:`evaluate_retrieval` reports how many queries were.
    """
    return _mean(ap_at_r_samples(neighbors, query_labels, reference_labels, r_cap).values)


def retrieval_mrr(neighbors: Neighbors | np.ndarray, query_labels: np.ndarray,
                  reference_labels: np.ndarray) -> float:
    """Mean reciprocal rank of the first same-label neighbour (0 for a query without one in the
    graph). Range [0, 1], higher is better. As pytorch-metric-learning's ``mean_reciprocal_rank``."""
    return _mean(reciprocal_rank_samples(neighbors, query_labels, reference_labels))


def retrieval_recall_at_k(neighbors: Neighbors | np.ndarray, query_labels: np.ndarray,
                          reference_labels: np.ndarray, k: int) -> float:
    """Share of queries with at least one same-label reference among their ``k`` nearest.

    Range [0, 1], higher is better. This is the "recall@k" of the image-retrieval
    literature (a hit rate), not the share of all R relevant items retrieved.
    """
    return _mean(hit_at_k_samples(neighbors, query_labels, reference_labels, k))


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
        return _mean(self.hit_at_1)

    @property
    def recall_at_5(self) -> float:
        return _mean(self.hit_at_5)

    @property
    def recall_at_10(self) -> float:
        return _mean(self.hit_at_10)

    @property
    def map_at_r(self) -> float:
        return _mean(self.ap_at_r)

    @property
    def mrr(self) -> float:
        return _mean(self.reciprocal_rank)

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
    idx = _indices(neighbors)
    n_ref = len(np.asarray(reference_labels))
    _check_width(idx, 10, n_ref, "recall@10")
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
