"""Families that compare the embodiments on what both have seen, registered in the suite: paired similarity of
matched moments, distribution distances, cross-embodiment retrieval and temporal alignment (the within-space
families, mixing and conservation, are in :mod:`metrics.families`)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from scipy.linalg import LinAlgWarning

from metrics.family_support import (STAGE_TASK, TASK, few_threads, prep_fit, requires_human, requires_shared, spec,
                                    two_sides)
from metrics.spec import Better, Context, Family, Kind, Labels, Null, register, repeat_rows, weights_key


# ---------------------------------------------------------------- paired similarity (matched moments)

_PAIRED = {"cka_linear": Better.HIGHER, "cka_debiased": Better.HIGHER, "mutual_knn": Better.HIGHER,
           "procrustes_angular": Better.LOWER, "svcca": Better.HIGHER}
_DISTRIBUTION = ("mmd_rbf", "frechet_distance", "sliced_wasserstein", "sinkhorn_divergence")
# headline places of the metrics registered in the loops below (the others are set in their MetricSpec)
_HEADLINE = {"retrieval_precision_at_1_robot_to_human": 9, "retrieval_map_at_r_robot_to_human": 10,
             "cka_linear": 11, "mutual_knn": 12, "mmd_rbf": 13}


def _prep_all_rows(ctx: Context, labels: Labels, rows: Any) -> dict[str, Any]:
    """Linear-cost metrics use every row (group means / moments), whatever the subsample."""
    return {"rows": np.arange(len(labels)), "cache": {}}


def _paired_scores(ctx: Context, state: dict, labels: Labels, w: np.ndarray) -> dict[str, float]:
    from metrics.pairs import matched_pairs
    from metrics.paired import paired_scores

    key = ("paired", weights_key(w))
    if key not in state["cache"]:
        r = repeat_rows(state["rows"], w)
        a, b = two_sides(ctx, labels.embodiment)
        if labels.stage_progress is None:
            raise ValueError("matched pairs need stage_progress (position within each stage) for every sample")
        sp = labels.stage_progress
        pairs = matched_pairs(ctx.X[r], labels.embodiment[r], labels.task[r], labels.stage[r], sp[r], a, b)
        state["cache"][key] = {**paired_scores(pairs.A, pairs.B, k=_MUTUAL_K), "pair_of": (a, b)}
    return state["cache"][key]


_MUTUAL_K = 10  # neighbours of mutual_knn among the matched pairs


def too_few_pairs(m: int, a: str, b: str) -> str:
    """Why the paired metrics are undefined on ``m`` matched pairs: one text for all five, so that a scope's
    notes group into one line (:func:`metrics.notes.group_notes`)."""
    from metrics.paired import MIN_PAIRS

    return (f"{m} matched pairs ((task, stage, stage-progress bin) cells seen by both '{a}' and '{b}'); "
            f"cka_linear, cka_debiased, procrustes_angular and svcca need at least {MIN_PAIRS}, mutual_knn at "
            f"least {_MUTUAL_K + 1}")


def _paired(name: str):
    def score(ctx: Context, state: dict, labels: Labels, w: np.ndarray) -> float:
        from metrics.paired import min_pairs

        scores = _paired_scores(ctx, state, labels, w)
        if scores["n_pairs"] < min_pairs(_MUTUAL_K)[name]:  # undefined, and said (once per scope: metrics.notes)
            raise ValueError(too_few_pairs(scores["n_pairs"], *scores["pair_of"]))
        return scores[name]
    return score


# ---------------------------------------------------------------- distribution distances (two point clouds)


def _distribution(name: str):
    def score(ctx: Context, state: dict, labels: Labels, w: np.ndarray) -> float:
        from metrics import distribution as dist

        r = repeat_rows(state["rows"], w)
        a, b = two_sides(ctx, labels.embodiment)
        P, Q = ctx.X[r[labels.embodiment[r] == a]], ctx.X[r[labels.embodiment[r] == b]]
        seed = ctx.config.seed
        with few_threads(len(r)):
            if name == "mmd_rbf":
                return dist.mmd_rbf(P, Q, seed=seed)
            if name == "frechet_distance":
                return _frechet(ctx, P, Q)
            if name == "sliced_wasserstein":
                return dist.sliced_wasserstein(P, Q, seed=seed)
            return dist.sinkhorn_divergence(P, Q, seed=seed)
    return score


def _frechet(ctx: Context, P: np.ndarray, Q: np.ndarray) -> float:
    """:func:`~metrics.distribution.frechet_distance`, SciPy's LinAlgWarning on singular covariances (once per
    replicate, null and scope) made one note; other warnings pass as they were."""
    from metrics.distribution import frechet_distance

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LinAlgWarning)
        value = frechet_distance(P, Q)
    for w in caught:
        if issubclass(w.category, LinAlgWarning):
            ctx.note("frechet_distance: the embodiments' covariances are singular (constant latent dimensions, or "
                     "fewer samples than dimensions): its matrix square root, and so the distance, is approximate")
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return value


# ---------------------------------------------------------------- cross-embodiment retrieval (per query)

_RETRIEVAL = ("precision_at_1", "map_at_r", "mrr", "recall_at_5", "recall_at_10")
_RETRIEVAL_FIELDS = {"precision_at_1": "hit_at_1", "map_at_r": "ap_at_r", "mrr": "reciprocal_rank",
                     "recall_at_5": "hit_at_5", "recall_at_10": "hit_at_10"}


def _cross_graph(ctx: Context, rows: np.ndarray, query: np.ndarray, reference: np.ndarray,
                 ref_labels: np.ndarray) -> Any:
    """The query -> reference kNN graph among the subsample, searched once (k = largest R, capped)."""
    from metrics.knn import knn
    from metrics.retrieval import retrieval_k

    key = ("cross", weights_key(rows), weights_key(query))
    if key not in ctx.cache:
        k = retrieval_k(ref_labels, ctx.config.retrieval_max_r)
        full = retrieval_k(ref_labels, None)
        if k < full:
            ctx.note(f"MAP@R is capped at R={k} (largest label count {full}); raise retrieval_max_r for exact values")
        ctx.cache[key] = knn(ctx.X[query], ctx.X[reference], k, ctx.config.metric)
    return ctx.cache[key]


def _prep_retrieval(ctx: Context, labels: Labels, rows: np.ndarray) -> dict[str, Any]:
    from metrics.ranking import combine_labels
    from metrics.retrieval import evaluate_retrieval

    human = ctx.config.human
    emb = labels.embodiment[rows]
    lab = combine_labels(labels.task[rows], labels.stage[rows])
    out: dict[str, Any] = {}
    for direction, q_mask in (("robot_to_human", emb != human), ("human_to_robot", emb == human)):
        q, ref = rows[q_mask], rows[~q_mask]
        graph = _cross_graph(ctx, rows, q, ref, lab[~q_mask])
        out[direction] = (q, evaluate_retrieval(graph, lab[q_mask], lab[~q_mask], ctx.config.retrieval_max_r))
    return out


def _retrieval(name: str, direction: str):
    field = _RETRIEVAL_FIELDS[name]

    def score(ctx: Context, state: dict, labels: Labels, w: np.ndarray) -> float:
        q, result = state[direction]
        values = getattr(result, field)
        wq = w[q].astype(np.float64)
        ok = ~np.isnan(values) & (wq > 0)
        return float(np.average(values[ok], weights=wq[ok])) if ok.any() else float("nan")
    return score


register(*[
    spec(name, Family.PAIRED, better, Kind.FIT, Null.EMBODIMENT, _prep_all_rows, _paired(name), STAGE_TASK,
          requires=requires_shared("(task, stage)", True), headline=_HEADLINE.get(name),
          description="paired similarity of matched (task, stage, stage-progress bin) means")
    for name, better in _PAIRED.items()
])
register(*[
    spec(name, Family.DISTRIBUTION, Better.LOWER, Kind.FIT, Null.EMBODIMENT, prep_fit, _distribution(name),
          STAGE_TASK, requires=requires_human, description="distance between the embodiments' distributions",
          # Sinkhorn takes ~20 s per call on 1000 x 1000 points (log-domain fallback): opt-in by name
          default=name != "sinkhorn_divergence", headline=_HEADLINE.get(name))
    for name in _DISTRIBUTION
])
register(*[
    spec(f"retrieval_{name}_{direction}", Family.RETRIEVAL, Better.HIGHER, Kind.SAMPLES, Null.STAGE,
          _prep_retrieval, _retrieval(name, direction), STAGE_TASK,
          requires=requires_shared("(task, stage)", False),
          description=f"cross-embodiment retrieval of the same (task, stage), {direction.replace('_', ' ')}",
          headline=_HEADLINE.get(f"retrieval_{name}_{direction}"))
    for direction in ("robot_to_human", "human_to_robot") for name in _RETRIEVAL
])


# ---------------------------------------------------------------- temporal alignment (episode pairs)


def _prep_temporal(ctx: Context, labels: Labels, rows: Any) -> dict[str, Any]:
    """Episode pairs of every shared task, over all rows (the pair cap bounds the cost)."""
    from metrics.temporal import episode_alignment

    a, b = two_sides(ctx, labels.embodiment)
    frame = labels.frame if labels.frame is not None else np.arange(len(labels))
    result = episode_alignment(ctx.X, labels.embodiment, labels.task, labels.episode, frame, a, b,
                               seed=ctx.config.seed, metric=ctx.config.metric)
    if result.n_pairs_total > len(result.pairs):
        ctx.note(f"temporal metrics use {len(result.pairs)} of {result.n_pairs_total} (human, robot) episode pairs")
    _, first = np.unique(labels.episode, return_index=True)
    # the pairs name episodes as strings (their table's dtype), whatever the labels' type
    return {"pairs": result.pairs, "episode_row": dict(zip(labels.episode[first].astype(str).tolist(), first.tolist()))}


def _temporal(field: str):
    def score(ctx: Context, state: dict, labels: Labels, w: np.ndarray) -> float:
        pairs, row = state["pairs"], state["episode_row"]
        if len(pairs) == 0:
            raise ValueError("no task is seen by both embodiments: no episode pairs")
        wa = np.array([w[row[e]] for e in pairs["episode_a"]], dtype=np.float64)
        wb = np.array([w[row[e]] for e in pairs["episode_b"]], dtype=np.float64)
        values, weight = pairs[field].astype(np.float64), wa * wb
        ok = ~np.isnan(values) & (weight > 0)
        return float(np.average(values[ok], weights=weight[ok])) if ok.any() else float("nan")
    return score


register(
    spec("kendall_tau", Family.TEMPORAL, Better.HIGHER, Kind.SAMPLES, Null.FRAME, _prep_temporal,
          _temporal("tau"), TASK, requires=requires_shared("task", True),
          description="order agreement of nearest-frame matches between human and robot episodes"),
    spec("cycle_consistency", Family.TEMPORAL, Better.HIGHER, Kind.SAMPLES, Null.FRAME, _prep_temporal,
          _temporal("cycle"), TASK, requires=requires_shared("task", True),
          description="share of frames whose nearest-frame match cycles back (Dwibedi et al. 2019)"),
)
