"""Adapters that put each metric family into the suite's registry: the within-space families (embodiment
mixing, stage conservation) here, those comparing the embodiments on what both have seen in
:mod:`metrics.families_matched`.

Each adapter is a ``prepare`` (heavy work once per label set) and a ``score``
(weights -> one number); see :class:`metrics.suite.MetricSpec`. Adding a family is
a few ``register(MetricSpec(...))`` lines.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from metrics import conservation as cons
from metrics import mixing as mix
from metrics.family_support import STAGE_TASK, TASK, few_threads, n_labels, prep_fit, requires_human, spec
from metrics.lisi import clisi_score, ilisi_score, lisi_samples
from metrics.permutation import (lisi_kernel_of, permuted_clisi, permuted_ilisi, permuted_kbet,
                                 permuted_mixing)
from metrics.spec import Better, Context, Family, Kind, Labels, Null, register, repeat_rows, weights_key


# ---------------------------------------------------------------- kNN-graph metrics (all rows)


def _prep_ilisi(ctx: Context, labels: Labels, rows: Any) -> np.ndarray:
    return lisi_samples(ctx.graph, labels.embodiment, kernel=lisi_kernel_of(ctx))


def _score_ilisi(ctx: Context, lisi: np.ndarray, labels: Labels, w: np.ndarray) -> float:
    return ilisi_score(lisi, n_labels(labels.embodiment), w)


def _prep_clisi(ctx: Context, labels: Labels, rows: Any) -> np.ndarray:
    return lisi_samples(ctx.graph, labels.stage, kernel=lisi_kernel_of(ctx))


def _score_clisi(ctx: Context, lisi: np.ndarray, labels: Labels, w: np.ndarray) -> float:
    return clisi_score(lisi, n_labels(labels.stage), w)


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


def _score_probe(ctx: Context, state: dict, labels: Labels, w: np.ndarray) -> float:
    r = repeat_rows(state["rows"], w)
    with few_threads(len(r)):
        return mix.embodiment_probe_acc(ctx.X[r], labels.embodiment[r], labels.episode[r], seed=ctx.config.seed)


def _agreement(ctx: Context, state: dict, labels: Labels, w: np.ndarray) -> cons.ClusterAgreement:
    key = ("kmeans", weights_key(w))
    if key not in state["cache"]:
        r = repeat_rows(state["rows"], w)
        with few_threads(len(r)):
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
        with few_threads(len(r)):
            return cons.stage_transfer_acc(ctx.X[r], labels.stage[r], labels.embodiment[r], source,
                                           target).balanced_accuracy
    return score


register(
    spec("ilisi", Family.MIXING, Better.HIGHER, Kind.GRAPH, Null.EMBODIMENT, _prep_ilisi, _score_ilisi,
          STAGE_TASK, description="integration LISI of embodiments, scaled to [0, 1]", headline=1,
          permuted=permuted_ilisi),
    spec("kbet", Family.MIXING, Better.HIGHER, Kind.GRAPH, Null.EMBODIMENT, _prep_kbet, _score_kbet,
          STAGE_TASK, description="kBET acceptance rate", headline=2, permuted=permuted_kbet),
    spec("silhouette_embodiment", Family.MIXING, Better.HIGHER, Kind.SAMPLES, Null.EMBODIMENT,
          _prep_sil_emb, _score_grouped, STAGE_TASK,
          description="1 - |silhouette of embodiments| within stages (scib silhouette_batch)", headline=4),
    spec("bras", Family.MIXING, Better.HIGHER, Kind.SAMPLES, Null.EMBODIMENT, _prep_bras, _score_grouped,
          STAGE_TASK, description="batch-removal adapted silhouette of embodiments within stages"),
    spec("knn_embodiment_mixing", Family.MIXING, Better.HIGHER, Kind.GRAPH, Null.EMBODIMENT, _prep_mixing,
          _score_mixing, STAGE_TASK, description="share of other-embodiment neighbours / chance share",
          headline=3, permuted=permuted_mixing),
    spec("embodiment_probe_acc", Family.MIXING, Better.LOWER, Kind.FIT, Null.EMBODIMENT, prep_fit,
          _score_probe, STAGE_TASK,
          description="balanced accuracy of a linear embodiment probe, CV grouped by episode (0.5 = mixed)",
          headline=5),
    spec("clisi", Family.CONSERVATION, Better.HIGHER, Kind.GRAPH, Null.STAGE, _prep_clisi, _score_clisi,
          STAGE_TASK, description="stage LISI, scaled to [0, 1]", headline=6, permuted=permuted_clisi),
    spec("silhouette_stage", Family.CONSERVATION, Better.HIGHER, Kind.SAMPLES, Null.STAGE, _prep_sil_stage,
          _score_sil_stage, STAGE_TASK, description="silhouette of stages, rescaled to [0, 1]", headline=7),
    spec("stage_nmi", Family.CONSERVATION, Better.HIGHER, Kind.FIT, Null.STAGE, prep_fit, _score_nmi, TASK,
          description="NMI of k-means clusters vs stages"),
    spec("stage_ari", Family.CONSERVATION, Better.HIGHER, Kind.FIT, Null.STAGE, prep_fit, _score_ari, TASK,
          description="ARI of k-means clusters vs stages"),
    spec("stage_transfer_acc_robot_to_human", Family.CONSERVATION, Better.HIGHER, Kind.FIT, Null.STAGE,
          prep_fit, _transfer(True), TASK, requires=requires_human,
          description="stage classifier trained on robot, tested on human (balanced accuracy)", headline=8),
    spec("stage_transfer_acc_human_to_robot", Family.CONSERVATION, Better.HIGHER, Kind.FIT, Null.STAGE,
          prep_fit, _transfer(False), TASK, requires=requires_human,
          description="stage classifier trained on human, tested on robot (balanced accuracy)"),
)
