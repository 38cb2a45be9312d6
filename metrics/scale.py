"""Mixing scale profile: kNN embodiment mixing as a function of the neighbourhood size k.

The headline mixing metrics judge one neighbourhood size (kNN mixing at k = 15, iLISI at
perplexity 30). Embodiments can be separate among a frame's closest neighbours and still
share the coarse structure of the space (the same task stages in the same region). The
profile measures :func:`metrics.mixing.knn_embodiment_mixing` at several k, each with the
suite's null (embodiment labels shuffled between whole (episode, stage) runs within stage,
:mod:`metrics.permutation`), so that the ratio value / null reads the same at every k:
about 1 at every k is mixed, a ratio rising with k is shared coarse structure with separate
close neighbourhoods. The graph is searched once, at the largest k, and sliced.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from metrics import bootstrap as bs
from metrics.graph import build_graph
from metrics.index import IndexKind
from metrics.knn import Metric, Neighbors
from metrics.mixing import knn_embodiment_mixing, knn_mixing_score
from metrics.permutation import RunGraph, mixing_from_runs
from metrics.spec import Labels, MetricsConfig
from metrics.subsample import strata_keys, stratified_subsample
from metrics.suite import NULL_SEED_OFFSET

__all__ = ["ScalePoint", "ScaleProfile", "check_scales", "mixing_scale_profile", "suite_scale_profile"]


class ScalePoint(NamedTuple):
    """kNN embodiment mixing at one neighbourhood size."""

    k: int
    value: float  # knn_embodiment_mixing on the k nearest neighbours (1 = mixed as by chance)
    null: float  # its mean under embodiment labels shuffled between (episode, stage) runs within stage
    ratio: float  # value / null: comparable across k (1 = as mixed as the run-shuffled embodiments)


@dataclass(frozen=True)
class ScaleProfile:
    """The profile: one :class:`ScalePoint` per k (ascending), the rows it was computed on, and notes."""

    points: tuple[ScalePoint, ...]
    n: int
    notes: tuple[str, ...] = ()

    def to_records(self) -> list[dict[str, Any]]:
        """JSON form: ``[{"k", "value", "null", "ratio"}, ...]``, ``None`` for nan."""
        def clean(v: float) -> float | None:
            return float(v) if np.isfinite(v) else None

        return [{"k": p.k, "value": clean(p.value), "null": clean(p.null), "ratio": clean(p.ratio)}
                for p in self.points]


def check_scales(ks: Sequence[int], n: int) -> tuple[int, ...]:
    """The distinct neighbourhood sizes, ascending; refuses a k that is not a whole number with 1 <= k < n."""
    if len(ks) == 0:
        raise ValueError("no neighbourhood size given; give at least one k (e.g. 15, 50, 150, 400)")
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise ValueError(f"neighbourhood sizes must be whole numbers, got {k!r}")
        if k < 1:
            raise ValueError(f"a neighbourhood size k must be >= 1, got {k}")
        if k >= n:
            raise ValueError(f"k={k} neighbours need more than {k} rows, but only {n} are measured; "
                             f"give neighbourhood sizes below {n}")
    return tuple(sorted({int(k) for k in ks}))


def mixing_scale_profile(X: np.ndarray, embodiment: np.ndarray, stage: np.ndarray, runs: np.ndarray,
                         ks: Sequence[int], metric: Metric | str = Metric.COSINE, *, permutations: int = 99,
                         seed: int = 0, index: IndexKind | str = IndexKind.EXACT,
                         graph: Neighbors | None = None) -> ScaleProfile:
    """kNN embodiment mixing at each neighbourhood size k, with its null and the ratio of the two.

    Parameters
    ----------
    X : (n, d) float latents (searched as float32)
    embodiment : (n,) labels, at least 2 distinct
    stage : (n,) labels: the null shuffles embodiments within stage
    runs : (n,) integer key of each row's (episode, stage) run (:func:`metrics.bootstrap.runs`): the units the
        null shuffles, as the suite's nulls do
    ks : neighbourhood sizes, each 1 <= k < n; computed in ascending order, duplicates once
    metric : "cosine" or "l2"
    permutations : shuffles averaged into each null (0: no null, ``null`` and ``ratio`` are nan); every k is
        judged against the same shuffles
    seed : seed of the shuffles' generator
    index : kNN search (``exact``, or an approximate kind, see :func:`metrics.graph.build_graph`)
    graph : the kNN graph of ``X`` at k >= max(ks) (self excluded, ``metric``), if the caller has one

    Returns
    -------
    ScaleProfile
        Per k: ``value`` = :func:`metrics.mixing.knn_embodiment_mixing` on the k nearest neighbours (0 =
        separate, 1 = mixed as by chance), ``null`` = its mean over ``permutations`` run shuffles (below 1 where
        runs are internally coherent), ``ratio`` = value / null (about 1 at every k: mixed; rising with k: the
        embodiments share coarse structure but not close neighbourhoods). Nothing is clipped; ``notes`` say
        where a k exceeds an embodiment's rows (the value is then bounded away from 0).
    """
    X = np.asarray(X)
    embodiment, stage, runs = np.asarray(embodiment), np.asarray(stage), np.asarray(runs, dtype=np.int64)
    n = X.shape[0]
    if not len(embodiment) == len(stage) == len(runs) == n:
        raise ValueError(f"X has {n} rows but embodiment, stage and runs have {len(embodiment)}, {len(stage)} and "
                         f"{len(runs)}; they must be row-aligned")
    if permutations < 0:
        raise ValueError(f"permutations must be >= 0, got {permutations}")
    ks = check_scales(ks, n)
    metric = Metric(metric)
    notes: list[str] = []
    names, codes = np.unique(embodiment, return_inverse=True)
    codes = codes.ravel()
    counts = np.bincount(codes, minlength=len(names))
    smallest = int(np.argmin(counts))
    over = [k for k in ks if k > counts[smallest]]
    if len(names) >= 2 and over:
        notes.append(f"k={', '.join(map(str, over))} exceed{'s' if len(over) == 1 else ''} the {counts[smallest]} "
                     f"rows of embodiment '{names[smallest]}': there even fully separate embodiments score above 0 "
                     "(its rows must take neighbours of another embodiment)")
    if graph is None:
        graph = build_graph(np.ascontiguousarray(X, dtype=np.float32), ks[-1], metric, IndexKind(index))
    elif len(graph) != n or graph.k < ks[-1] or Metric(graph.metric) is not metric:
        raise ValueError(f"the given graph ({len(graph)} rows, k={graph.k}, {Metric(graph.metric).value}) does not "
                         f"fit {n} rows at k={ks[-1]}, {metric.value}; pass graph=None")
    if graph.note:
        notes.append(graph.note)

    rng = np.random.default_rng(seed)
    shuffler = bs.RunShuffler(codes, runs, stage) if permutations else None
    shuffled = [shuffler(rng) for _ in range(permutations)] if shuffler else []  # the same shuffles for every k
    points = []
    for k in ks:
        neighbors = graph.top(k)
        value = knn_embodiment_mixing(neighbors, embodiment)
        run_graph = RunGraph(neighbors, runs)
        # the shuffles permute the embodiment codes, so they are codes of the same len(names) labels already
        nulls = [knn_mixing_score(mixing_from_runs(run_graph, s, len(names)), s) for s in shuffled]
        null = float(np.nanmean(nulls)) if nulls and not np.all(np.isnan(nulls)) else float("nan")
        ratio = value / null if np.isfinite(null) and null > 0 else float("nan")
        points.append(ScalePoint(k, float(value), null, float(ratio)))
    if not permutations:
        notes.append("no null: 0 permutations, so the ratios are not computed")
    return ScaleProfile(tuple(points), n, tuple(notes))


def suite_scale_profile(X: np.ndarray, labels: Labels, config: MetricsConfig, ks: Sequence[int]) -> ScaleProfile:
    """The profile as :func:`metrics.suite.run_suite` would measure it, for ``probe metrics --scales``.

    Rows: all of them up to ``config.max_samples`` (then ``knn_embodiment_mixing``'s value and null at k =
    ``config.mixing_k`` are the suite's own); above it, the suite's stratified subsample (embodiment x task x
    stage, ``config.seed``), where k counts neighbours among the subsample's rows (noted). Null: the suite's
    shuffles (seed ``config.seed + NULL_SEED_OFFSET``, ``max(null_repeats, permutations)`` of them, none when
    both are 0); graph: ``config.metric`` and ``config.index``.
    """
    n = X.shape[0]
    embodiment, stage = np.asarray(labels.embodiment), np.asarray(labels.stage)
    rows = stratified_subsample(strata_keys(embodiment, np.asarray(labels.task), stage), config.max_samples,
                                config.seed)
    runs = bs.runs(labels.episode, stage)
    repeats = max(config.null_repeats, config.permutations)  # the suite's count for knn_embodiment_mixing
    every = len(rows) == n
    profile = mixing_scale_profile(X if every else X[rows], embodiment[rows], stage[rows], runs[rows], ks,
                                   config.metric, permutations=repeats, seed=config.seed + NULL_SEED_OFFSET,
                                   index=config.index)
    if not every:
        note = (f"the scale profile ran on the stratified subsample of {len(rows)} of {n} samples (max_samples): k "
                f"counts neighbours among them, so its value at k={config.mixing_k} differs from the headline "
                "knn_embodiment_mixing, which uses all rows")
        profile = ScaleProfile(profile.points, profile.n, (note, *profile.notes))
    return profile
