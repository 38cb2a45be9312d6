"""Adapters that put each metric family into the suite's registry.

Each adapter is a ``prepare`` (heavy work once per label set) and a ``score``
(weights -> one number); see :class:`metrics.suite.MetricSpec`. Adding a family is
a few ``register(MetricSpec(...))`` lines here.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from scipy.linalg import LinAlgWarning

from metrics import conservation as cons
from metrics import mixing as mix
from metrics.calibration import NO_INTERVAL
from metrics.lisi import clisi_score, ilisi_score, lisi_samples
from metrics.permutation import (lisi_kernel_of, permuted_clisi, permuted_ilisi, permuted_kbet,
                                 permuted_mixing)
from metrics.ranges import BOUNDS
from metrics.spec import (Better, By, Context, Family, Kind, Labels, MetricSpec, Null, register, repeat_rows,
                          weights_key)


def _spec(name: str, *args: Any, **kwargs: Any) -> MetricSpec:
    """A :class:`MetricSpec` carrying its calibration verdict (:data:`metrics.calibration.NO_INTERVAL`) and its
    range (:data:`metrics.ranges.BOUNDS`)."""
    return MetricSpec(name, *args, uncalibrated=NO_INTERVAL.get(name, ""), bounds=BOUNDS.get(name), **kwargs)


def _n_labels(values: np.ndarray) -> int:
    return len(np.unique(values))


# ---------------------------------------------------------------- kNN-graph metrics (all rows)


def _prep_ilisi(ctx: Context, labels: Labels, rows: Any) -> np.ndarray:
    return lisi_samples(ctx.graph, labels.embodiment, kernel=lisi_kernel_of(ctx))


def _score_ilisi(ctx: Context, lisi: np.ndarray, labels: Labels, w: np.ndarray) -> float:
    return ilisi_score(lisi, _n_labels(labels.embodiment), w)


def _prep_clisi(ctx: Context, labels: Labels, rows: Any) -> np.ndarray:
    return lisi_samples(ctx.graph, labels.stage, kernel=lisi_kernel_of(ctx))


def _score_clisi(ctx: Context, lisi: np.ndarray, labels: Labels, w: np.ndarray) -> float:
    return clisi_score(lisi, _n_labels(labels.stage), w)


def _prep_kbet(ctx: Context, labels: Labels, rows: Any) -> np.ndarray:
    """Each sample's kBET acceptance (1.0 / 0.0)."""
    test = mix.kbet_test(ctx.neighbors(ctx.config.kbet_k), labels.embodiment, ctx.config.alpha)
    return (test.p_value >= ctx.config.alpha).astype(np.float64)


def _score_kbet(ctx: Context, accepted: np.ndarray, labels: Labels, w: np.ndarray) -> float:
    if w.sum() == 0:
        return float("nan")
    return float(np.average(accepted, weights=w))


def _prep_mixing(ctx: Context, labels: Labels, rows: Any) -> mix.MixingSamples:
    return mix.knn_mixing_samples(ctx.neighbors(ctx.config.mixing_k), labels.embodiment)


def _score_mixing(ctx: Context, s: mix.MixingSamples, labels: Labels, w: np.ndarray) -> float:
    return mix.knn_mixing_score(s, labels.embodiment, w)


# ---------------------------------------------------------------- O(n^2) per-sample metrics (subsample)


def _prep_sil_emb(ctx: Context, labels: Labels, rows: np.ndarray) -> tuple[np.ndarray, mix.GroupedSilhouette]:
    return rows, mix.embodiment_silhouette_samples(ctx.X[rows], labels.embodiment[rows], labels.stage[rows],
                                                   ctx.config.metric)


def _prep_bras(ctx: Context, labels: Labels, rows: np.ndarray) -> tuple[np.ndarray, mix.GroupedSilhouette]:
    return rows, mix.embodiment_silhouette_samples(ctx.X[rows], labels.embodiment[rows], labels.stage[rows],
                                                   ctx.config.metric, "mean_other")


def _score_grouped(ctx: Context, state: tuple, labels: Labels, w: np.ndarray) -> float:
    rows, samples = state
    return mix.grouped_silhouette_score(samples, w[rows])


def _prep_sil_stage(ctx: Context, labels: Labels, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return rows, cons.stage_silhouette_samples(ctx.X[rows], labels.stage[rows], ctx.config.metric)


def _score_sil_stage(ctx: Context, state: tuple, labels: Labels, w: np.ndarray) -> float:
    rows, sil = state
    wr = w[rows]
    if wr.sum() == 0:
        return float("nan")
    return float((np.average(sil, weights=wr) + 1.0) / 2.0)


# ---------------------------------------------------------------- fitted metrics (refit per replicate)


def _prep_fit(ctx: Context, labels: Labels, rows: np.ndarray) -> dict[str, Any]:
    return {"rows": rows, "cache": {}}


def _few_threads(n_rows: int):
    """One BLAS/OpenMP thread for small fits: on a busy machine thread spin-waits cost more than they save."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1) if n_rows < 50_000 else threadpool_limits(limits=None)


def _score_probe(ctx: Context, state: dict, labels: Labels, w: np.ndarray) -> float:
    r = repeat_rows(state["rows"], w)
    with _few_threads(len(r)):
        return mix.embodiment_probe_acc(ctx.X[r], labels.embodiment[r], labels.episode[r], seed=ctx.config.seed)


def _agreement(ctx: Context, state: dict, labels: Labels, w: np.ndarray) -> cons.ClusterAgreement:
    key = ("kmeans", weights_key(w))
    if key not in state["cache"]:
        r = repeat_rows(state["rows"], w)
        with _few_threads(len(r)):
            state["cache"][key] = cons.stage_cluster_agreement(ctx.X[r], labels.stage[r], ctx.config.metric,
                                                               ctx.config.seed)
    return state["cache"][key]


def _score_nmi(ctx: Context, state: dict, labels: Labels, w: np.ndarray) -> float:
    return _agreement(ctx, state, labels, w).nmi


def _score_ari(ctx: Context, state: dict, labels: Labels, w: np.ndarray) -> float:
    return _agreement(ctx, state, labels, w).ari


def _transfer(to_human: bool):
    def score(ctx: Context, state: dict, labels: Labels, w: np.ndarray) -> float:
        r = repeat_rows(state["rows"], w)
        human = ctx.config.human
        robots = sorted(set(labels.embodiment[r].tolist()) - {human})
        source, target = (robots, human) if to_human else (human, robots)
        with _few_threads(len(r)):
            return cons.stage_transfer_acc(ctx.X[r], labels.stage[r], labels.embodiment[r], source,
                                           target).balanced_accuracy
    return score


def _requires_human(ctx: Context, labels: Labels) -> str | None:
    human = ctx.config.human
    embs = set(np.unique(labels.embodiment).tolist())
    if human not in embs:
        return (f"no embodiment named '{human}' (embodiments: {sorted(embs)}); set MetricsConfig.human "
                "(--human) to the human embodiment's name")
    return None


def _requires_shared(what: str, first_other: bool):
    """A ``requires`` for metrics comparing the embodiments on what both have seen (``what``: "task" or "(task,
    stage)"), the human against the first other embodiment (as :func:`_two_sides`) or all of them: skipped with one
    note when nothing is shared, instead of failing once per scope, replicate and null."""
    def requires(ctx: Context, labels: Labels) -> str | None:
        key = ("shared", what, first_other)
        if key not in ctx.cache and not _requires_human(ctx, labels):
            human, emb = ctx.config.human, labels.embodiment
            rest = sorted(set(np.unique(emb).tolist()) - {human})[: 1 if first_other else None]
            keys = labels.task.astype(str)
            if what != "task":
                keys = np.char.add(np.char.add(keys, "\x1f"), labels.stage.astype(str))
            shared = np.intersect1d(keys[emb == human], keys[np.isin(emb, rest)]).size
            ctx.cache[key] = None if shared else f"no {what} is seen by both '{human}' and {', '.join(map(repr, rest))}"
        return _requires_human(ctx, labels) or ctx.cache[key]
    return requires


_STAGE_TASK = frozenset({By.STAGE, By.TASK})
_TASK = frozenset({By.TASK})

register(
    _spec("ilisi", Family.MIXING, Better.HIGHER, Kind.GRAPH, Null.EMBODIMENT, _prep_ilisi, _score_ilisi,
          _STAGE_TASK, description="integration LISI of embodiments, scaled to [0, 1]", headline=1,
          permuted=permuted_ilisi),
    _spec("kbet", Family.MIXING, Better.HIGHER, Kind.GRAPH, Null.EMBODIMENT, _prep_kbet, _score_kbet,
          _STAGE_TASK, description="kBET acceptance rate", headline=2, permuted=permuted_kbet),
    _spec("silhouette_embodiment", Family.MIXING, Better.HIGHER, Kind.SAMPLES, Null.EMBODIMENT,
          _prep_sil_emb, _score_grouped, _STAGE_TASK,
          description="1 - |silhouette of embodiments| within stages (scib silhouette_batch)", headline=4),
    _spec("bras", Family.MIXING, Better.HIGHER, Kind.SAMPLES, Null.EMBODIMENT, _prep_bras, _score_grouped,
          _STAGE_TASK, description="batch-removal adapted silhouette of embodiments within stages"),
    _spec("knn_embodiment_mixing", Family.MIXING, Better.HIGHER, Kind.GRAPH, Null.EMBODIMENT, _prep_mixing,
          _score_mixing, _STAGE_TASK, description="share of other-embodiment neighbours / chance share",
          headline=3, permuted=permuted_mixing),
    _spec("embodiment_probe_acc", Family.MIXING, Better.LOWER, Kind.FIT, Null.EMBODIMENT, _prep_fit,
          _score_probe, _STAGE_TASK,
          description="balanced accuracy of a linear embodiment probe, CV grouped by episode (0.5 = mixed)",
          headline=5),
    _spec("clisi", Family.CONSERVATION, Better.HIGHER, Kind.GRAPH, Null.STAGE, _prep_clisi, _score_clisi,
          _STAGE_TASK, description="stage LISI, scaled to [0, 1]", headline=6, permuted=permuted_clisi),
    _spec("silhouette_stage", Family.CONSERVATION, Better.HIGHER, Kind.SAMPLES, Null.STAGE, _prep_sil_stage,
          _score_sil_stage, _STAGE_TASK, description="silhouette of stages, rescaled to [0, 1]", headline=7),
    _spec("stage_nmi", Family.CONSERVATION, Better.HIGHER, Kind.FIT, Null.STAGE, _prep_fit, _score_nmi, _TASK,
          description="NMI of k-means clusters vs stages"),
    _spec("stage_ari", Family.CONSERVATION, Better.HIGHER, Kind.FIT, Null.STAGE, _prep_fit, _score_ari, _TASK,
          description="ARI of k-means clusters vs stages"),
    _spec("stage_transfer_acc_robot_to_human", Family.CONSERVATION, Better.HIGHER, Kind.FIT, Null.STAGE,
          _prep_fit, _transfer(True), _TASK, requires=_requires_human,
          description="stage classifier trained on robot, tested on human (balanced accuracy)", headline=8),
    _spec("stage_transfer_acc_human_to_robot", Family.CONSERVATION, Better.HIGHER, Kind.FIT, Null.STAGE,
          _prep_fit, _transfer(False), _TASK, requires=_requires_human,
          description="stage classifier trained on human, tested on robot (balanced accuracy)"),
)


# ---------------------------------------------------------------- paired similarity (matched moments)

_PAIRED = {"cka_linear": Better.HIGHER, "cka_debiased": Better.HIGHER, "mutual_knn": Better.HIGHER,
           "procrustes_angular": Better.LOWER, "svcca": Better.HIGHER}
_DISTRIBUTION = ("mmd_rbf", "frechet_distance", "sliced_wasserstein", "sinkhorn_divergence")
# headline places of the metrics registered in the loops below (the others are set in their MetricSpec)
_HEADLINE = {"retrieval_precision_at_1_robot_to_human": 9, "retrieval_map_at_r_robot_to_human": 10,
             "cka_linear": 11, "mutual_knn": 12, "mmd_rbf": 13}


def _two_sides(ctx: Context, embodiment: np.ndarray) -> tuple[str, str]:
    """(human, other): the pair the paired and distribution metrics compare (first other embodiment)."""
    human = ctx.config.human
    others = sorted(set(np.unique(embodiment).tolist()) - {human})
    if len(others) > 1:
        ctx.note(f"paired and distribution metrics compare '{human}' with '{others[0]}' only "
                 f"(also present: {', '.join(others[1:])})")
    return human, others[0]


def _prep_all_rows(ctx: Context, labels: Labels, rows: Any) -> dict[str, Any]:
    """Linear-cost metrics use every row (group means / moments), whatever the subsample."""
    return {"rows": np.arange(len(labels)), "cache": {}}


def _paired_scores(ctx: Context, state: dict, labels: Labels, w: np.ndarray) -> dict[str, float]:
    from metrics.pairs import matched_pairs
    from metrics.paired import paired_scores

    key = ("paired", weights_key(w))
    if key not in state["cache"]:
        r = repeat_rows(state["rows"], w)
        a, b = _two_sides(ctx, labels.embodiment)
        if labels.stage_progress is None:
            raise ValueError("matched pairs need stage_progress (position within each stage) for every sample")
        sp = labels.stage_progress
        pairs = matched_pairs(ctx.X[r], labels.embodiment[r], labels.task[r], labels.stage[r], sp[r], a, b)
        if len(pairs) < 2:
            raise ValueError(f"only {len(pairs)} (task, stage, stage-progress bin) cells are seen by both embodiments")
        state["cache"][key] = paired_scores(pairs.A, pairs.B)
    return state["cache"][key]


def _paired(name: str):
    def score(ctx: Context, state: dict, labels: Labels, w: np.ndarray) -> float:
        return _paired_scores(ctx, state, labels, w)[name]
    return score


# ---------------------------------------------------------------- distribution distances (two point clouds)


def _distribution(name: str):
    def score(ctx: Context, state: dict, labels: Labels, w: np.ndarray) -> float:
        from metrics import distribution as dist

        r = repeat_rows(state["rows"], w)
        a, b = _two_sides(ctx, labels.embodiment)
        P, Q = ctx.X[r[labels.embodiment[r] == a]], ctx.X[r[labels.embodiment[r] == b]]
        seed = ctx.config.seed
        with _few_threads(len(r)):
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
    _spec(name, Family.PAIRED, better, Kind.FIT, Null.EMBODIMENT, _prep_all_rows, _paired(name), _STAGE_TASK,
          requires=_requires_shared("(task, stage)", True), headline=_HEADLINE.get(name),
          description="paired similarity of matched (task, stage, stage-progress bin) means")
    for name, better in _PAIRED.items()
])
register(*[
    _spec(name, Family.DISTRIBUTION, Better.LOWER, Kind.FIT, Null.EMBODIMENT, _prep_fit, _distribution(name),
          _STAGE_TASK, requires=_requires_human, description="distance between the embodiments' distributions",
          # Sinkhorn takes ~20 s per call on 1000 x 1000 points (log-domain fallback): opt-in by name
          default=name != "sinkhorn_divergence", headline=_HEADLINE.get(name))
    for name in _DISTRIBUTION
])
register(*[
    _spec(f"retrieval_{name}_{direction}", Family.RETRIEVAL, Better.HIGHER, Kind.SAMPLES, Null.STAGE,
          _prep_retrieval, _retrieval(name, direction), _STAGE_TASK,
          requires=_requires_shared("(task, stage)", False),
          description=f"cross-embodiment retrieval of the same (task, stage), {direction.replace('_', ' ')}",
          headline=_HEADLINE.get(f"retrieval_{name}_{direction}"))
    for direction in ("robot_to_human", "human_to_robot") for name in _RETRIEVAL
])


# ---------------------------------------------------------------- temporal alignment (episode pairs)


def _prep_temporal(ctx: Context, labels: Labels, rows: Any) -> dict[str, Any]:
    """Episode pairs of every shared task, over all rows (the pair cap bounds the cost)."""
    from metrics.temporal import episode_alignment

    a, b = _two_sides(ctx, labels.embodiment)
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
    _spec("kendall_tau", Family.TEMPORAL, Better.HIGHER, Kind.SAMPLES, Null.FRAME, _prep_temporal,
          _temporal("tau"), _TASK, requires=_requires_shared("task", True),
          description="order agreement of nearest-frame matches between human and robot episodes"),
    _spec("cycle_consistency", Family.TEMPORAL, Better.HIGHER, Kind.SAMPLES, Null.FRAME, _prep_temporal,
          _temporal("cycle"), _TASK, requires=_requires_shared("task", True),
          description="share of frames whose nearest-frame match cycles back (Dwibedi et al. 2019)"),
)
