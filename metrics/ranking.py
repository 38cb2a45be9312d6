"""Per-query ranking: which neighbours of a query carry its label, and the per-query scores built on that.

Every function takes a neighbour index matrix ``(n_query, k)`` into the reference
(``metrics.knn.knn(query, reference, k).indices`` or the :class:`~metrics.knn.Neighbors`
itself), the query labels and the reference labels; a query whose label the reference
lacks scores ``nan``. Matches are formed block by block (:data:`BLOCK` queries at a
time), so memory stays bounded for large query sets. :mod:`metrics.retrieval`
averages these per-query forms into the retrieval metrics.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from metrics.knn import Neighbors

BLOCK = 4096  # query rows per block when forming (block, k) match matrices

__all__ = [
    "APatR",
    "ap_at_r_samples",
    "check_width",
    "combine_labels",
    "finite_mean",
    "hit_at_k_samples",
    "match_matrix",
    "neighbor_indices",
    "reciprocal_rank_samples",
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


def neighbor_indices(neighbors: Neighbors | np.ndarray) -> np.ndarray:
    """The ``(n_query, k)`` integer neighbour index matrix of a graph or of an index array, checked.

    Raises
    ------
    ValueError
        Not 2-D with k >= 1, or not integers.
    """
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
    for start in range(0, n, BLOCK):
        yield slice(start, min(start + BLOCK, n))


def _match_block(idx: np.ndarray, q: np.ndarray, r: np.ndarray) -> np.ndarray:
    valid = idx >= 0
    return valid & (r[np.where(valid, idx, 0)] == q[:, None])


def match_matrix(neighbors: Neighbors | np.ndarray, query_labels: np.ndarray,
                 reference_labels: np.ndarray) -> np.ndarray:
    """``(n_query, k)`` bool: is the j-th neighbour of query i of the query's label.

    Missing neighbours (index -1) never match. Use on small sets (dashboard, examples):
    the other functions work block by block.
    """
    idx = neighbor_indices(neighbors)
    q, r = _encode(query_labels, reference_labels, idx.shape[0], idx)
    return _match_block(idx, q, r)


# ----------------------------------------------------------------------------- per query


def hit_at_k_samples(neighbors: Neighbors | np.ndarray, query_labels: np.ndarray,
                     reference_labels: np.ndarray, k: int) -> np.ndarray:
    """Per query: 1.0 if one of its first ``k`` neighbours has its label, else 0.0; nan if the reference lacks it.

    ``k = 1`` gives precision@1 per query. The graph must hold ``k`` neighbours, or all of
    the reference when it has fewer than ``k`` samples (then top-k is the whole reference).
    """
    idx = neighbor_indices(neighbors)
    q, r = _encode(query_labels, reference_labels, idx.shape[0], idx)
    check_width(idx, k, len(r), f"recall@{k}")
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
    idx = neighbor_indices(neighbors)
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
    idx = neighbor_indices(neighbors)
    q, r = _encode(query_labels, reference_labels, idx.shape[0], idx)
    R = _label_counts(q, r)
    out = np.empty(len(q), dtype=np.float64)
    for s in _blocks(len(q)):
        match = _match_block(idx[s], q[s], r)
        first = np.argmax(match, axis=1)
        out[s] = np.where(match.any(axis=1), 1.0 / (first + 1.0), 0.0)
    out[R == 0] = np.nan
    return out


def check_width(idx: np.ndarray, k: int, n_reference: int, name: str) -> None:
    """Check that ``idx`` holds the ``min(k, n_reference)`` neighbours per query metric ``name`` needs.

    Raises
    ------
    ValueError
        ``k < 1``, or the graph is narrower than needed (the message says which k to search with).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1 for {name}; got {k}")
    if idx.shape[1] < min(k, n_reference):
        raise ValueError(
            f"{name} needs {min(k, n_reference)} neighbours per query but the graph holds {idx.shape[1]}; "
            f"search with k >= {min(k, n_reference)}"
        )


def finite_mean(values: np.ndarray) -> float:
    """Mean of the non-NaN ``values`` (queries whose label the reference lacks are NaN); NaN when none."""
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else float("nan")
