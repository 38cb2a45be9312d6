"""Adapters that put each metric family into the suite's registry.

Each adapter is a ``prepare`` (heavy work once per label set) and a ``score``
(weights -> one number); see :class:`metrics.suite.MetricSpec`. Adding a family is
a few ``register(MetricSpec(...))`` lines here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from metrics import conservation as cons
from metrics import mixing as mix
from metrics.lisi import clisi_score, ilisi_score, lisi_samples
from metrics.suite import (
    Better,
    By,
    Context,
    Family,
    Kind,
    Labels,
    MetricSpec,
    Null,
    register,
    repeat_rows,
    weights_key,
)


def _n_labels(values: np.ndarray) -> int:
    return len(np.unique(values))


# ---------------------------------------------------------------- kNN-graph metrics (all rows)


def _prep_ilisi(ctx: Context, labels: Labels, rows: Any) -> np.ndarray:
    return lisi_samples(ctx.graph, labels.embodiment)


def _score_ilisi(ctx: Context, lisi: np.ndarray, labels: Labels, w: np.ndarray) -> float:
    return ilisi_score(lisi, _n_labels(labels.embodiment), w)


def _prep_clisi(ctx: Context, labels: Labels, rows: Any) -> np.ndarray:
    return lisi_samples(ctx.graph, labels.stage)


def _score_clisi(ctx: Context, lisi: np.ndarray, labels: Labels, w: np.ndarray) -> float:
    return clisi_score(lisi, _n_labels(labels.stage), w)


def _prep_kbet(ctx: Context, labels: Labels, rows: Any) -> np.ndarray:
    return mix.kbet_test(ctx.neighbors(ctx.config.kbet_k), labels.embodiment, ctx.config.alpha).p_value


def _score_kbet(ctx: Context, p: np.ndarray, labels: Labels, w: np.ndarray) -> float:
    if w.sum() == 0:
        return float("nan")
    return float(np.average(p >= ctx.config.alpha, weights=w))


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


_STAGE_TASK = frozenset({By.STAGE, By.TASK})
_TASK = frozenset({By.TASK})

register(
    MetricSpec("ilisi", Family.MIXING, Better.HIGHER, Kind.GRAPH, Null.EMBODIMENT, _prep_ilisi, _score_ilisi,
               _STAGE_TASK, description="integration LISI of embodiments, scaled to [0, 1]"),
    MetricSpec("kbet", Family.MIXING, Better.HIGHER, Kind.GRAPH, Null.EMBODIMENT, _prep_kbet, _score_kbet,
               _STAGE_TASK, description="kBET acceptance rate"),
    MetricSpec("silhouette_embodiment", Family.MIXING, Better.HIGHER, Kind.SAMPLES, Null.EMBODIMENT,
               _prep_sil_emb, _score_grouped, _STAGE_TASK,
               description="1 - |silhouette of embodiments| within stages (scib silhouette_batch)"),
    MetricSpec("bras", Family.MIXING, Better.HIGHER, Kind.SAMPLES, Null.EMBODIMENT, _prep_bras, _score_grouped,
               _STAGE_TASK, description="batch-removal adapted silhouette of embodiments within stages"),
    MetricSpec("knn_embodiment_mixing", Family.MIXING, Better.HIGHER, Kind.GRAPH, Null.EMBODIMENT, _prep_mixing,
               _score_mixing, _STAGE_TASK, description="share of other-embodiment neighbours / chance share"),
    MetricSpec("embodiment_probe_acc", Family.MIXING, Better.LOWER, Kind.FIT, Null.EMBODIMENT, _prep_fit,
               _score_probe, _STAGE_TASK,
               description="balanced accuracy of a linear embodiment probe, CV grouped by episode (0.5 = mixed)"),
    MetricSpec("clisi", Family.CONSERVATION, Better.HIGHER, Kind.GRAPH, Null.STAGE, _prep_clisi, _score_clisi,
               _STAGE_TASK, description="stage LISI, scaled to [0, 1]"),
    MetricSpec("silhouette_stage", Family.CONSERVATION, Better.HIGHER, Kind.SAMPLES, Null.STAGE, _prep_sil_stage,
               _score_sil_stage, _STAGE_TASK, description="silhouette of stages, rescaled to [0, 1]"),
    MetricSpec("stage_nmi", Family.CONSERVATION, Better.HIGHER, Kind.FIT, Null.STAGE, _prep_fit, _score_nmi, _TASK,
               description="NMI of k-means clusters vs stages"),
    MetricSpec("stage_ari", Family.CONSERVATION, Better.HIGHER, Kind.FIT, Null.STAGE, _prep_fit, _score_ari, _TASK,
               description="ARI of k-means clusters vs stages"),
    MetricSpec("stage_transfer_acc_robot_to_human", Family.CONSERVATION, Better.HIGHER, Kind.FIT, Null.STAGE,
               _prep_fit, _transfer(True), _TASK, requires=_requires_human,
               description="stage classifier trained on robot, tested on human (balanced accuracy)"),
    MetricSpec("stage_transfer_acc_human_to_robot", Family.CONSERVATION, Better.HIGHER, Kind.FIT, Null.STAGE,
               _prep_fit, _transfer(False), _TASK, requires=_requires_human,
               description="stage classifier trained on human, tested on robot (balanced accuracy)"),
)
