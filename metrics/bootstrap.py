"""Uncertainty and chance levels: bootstrap over episodes and label-permutation nulls.

Frames of one episode are strongly correlated, so the unit of resampling and of
permutation is the episode (or an episode's run of one stage), never the frame.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
from scipy.stats import t as student


class Interval(NamedTuple):
    """A two-sided interval."""

    lo: float
    hi: float


def episode_groups(episodes: np.ndarray, strata: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Each row's episode code, and the episode codes of every stratum (an episode joins the stratum of its
    first row, so an episode is never drawn twice for two strata)."""
    _, first, codes = np.unique(np.asarray(episodes), return_index=True, return_inverse=True)
    codes = codes.ravel()
    episode_stratum = np.asarray(strata)[first]
    return codes, [np.flatnonzero(episode_stratum == s) for s in np.unique(episode_stratum)]


def episode_bootstrap_weights(episodes: np.ndarray, strata: np.ndarray, n_boot: int,
                              seed: int = 0) -> Iterator[np.ndarray]:
    """Yield ``n_boot`` row-weight vectors of an episode bootstrap.

    Each replicate draws, within every stratum (the embodiment, or embodiment x task
    where tasks are fixed by design), as many episodes as it has, with replacement; a
    row's weight is the number of times its episode was drawn (0, 1, 2 ...).
    Resampling within strata keeps their balance fixed.

    Parameters
    ----------
    episodes : (n,) episode key of each row (unique across datasets)
    strata : (n,) stratum of each row (constant within an episode)
    n_boot : number of replicates
    """
    rng = np.random.default_rng(seed)
    codes, groups = episode_groups(episodes, strata)
    n_episodes = sum(len(g) for g in groups)
    for _ in range(n_boot):
        counts = np.zeros(n_episodes, dtype=np.int64)
        for eps in groups:
            counts += np.bincount(rng.choice(eps, size=len(eps), replace=True), minlength=n_episodes)
        yield counts[codes]


def episode_subsample_weights(episodes: np.ndarray, strata: np.ndarray, n_rep: int, fraction: float,
                              seed: int = 0) -> tuple[list[np.ndarray], float]:
    """0/1 row weights of ``n_rep`` episode subsamples drawn without replacement, and their rescaling.

    Each replicate keeps, within every stratum, ``fraction`` of its episodes (at
    least one, and one fewer than all where there are two or more); a row's weight
    is 1 when its episode is kept. Statistics that duplicated rows would distort
    (distances, kernels, fitted models) are computed on such subsamples; for a
    root-n statistic the spread of a subsample value around the full-sample value is
    ``sqrt((1 - f) / f)`` times the spread of the full-sample value around its
    expectation (``f`` the fraction of episodes kept; 1 at half-sampling), so the
    returned scale ``sqrt(f / (1 - f))`` maps subsample spread to that of the estimate.
    """
    rng = np.random.default_rng(seed)
    codes, groups = episode_groups(episodes, strata)
    take = [min(max(1, int(round(fraction * len(g)))), max(len(g) - 1, 1)) for g in groups]
    kept = sum(take) / max(sum(len(g) for g in groups), 1)
    scale = float(np.sqrt(kept / (1.0 - kept))) if kept < 1 else 0.0
    out = []
    for _ in range(n_rep):
        chosen = np.zeros(sum(len(g) for g in groups), dtype=np.int64)
        for g, t in zip(groups, take):
            chosen[rng.choice(g, size=t, replace=False)] = 1
        out.append(chosen[codes])
    return out, scale


def rate_exponent(sd_small: float, sd_large: float, f_small: float, f_large: float, lo: float = 0.5,
                  hi: float = 1.0) -> float:
    """The rate exponent ``beta`` (the estimate's spread ~ n^-beta) from the spread of episode subsamples at two
    fractions (Bertail, Politis & Romano 1999), clamped to ``[lo, hi]`` (0.5: root-n, 1: a degenerate statistic).

    A subsample of fraction ``f`` of the n episodes, drawn without replacement, spreads around the full-sample
    value as ``Var = c n^(-2 beta) (f^(-2 beta) - 1)`` (``Var(theta_m) - Var(theta_n)``, as for a mean or a
    U-statistic, whose full-sample value is the average of its subsamples'): the ratio of the variances at
    ``f_small < f_large`` grows with ``beta`` (3 at 0.5 and 5 at 1 for fractions 1/4 and 1/2), which is solved
    for ``beta``. nan where either spread is not finite or ``sd_large`` is 0.
    """
    if not 0 < lo < hi:
        raise ValueError(f"the rate's range must satisfy 0 < lo < hi, got [{lo}, {hi}]")
    if not (np.isfinite(sd_small) and np.isfinite(sd_large)) or sd_large <= 0 or not 0 < f_small < f_large < 1:
        return float("nan")
    ratio = (sd_small / sd_large) ** 2

    def predicted(beta: float) -> float:
        return (f_small ** (-2 * beta) - 1) / (f_large ** (-2 * beta) - 1)

    if ratio <= predicted(lo):
        return float(lo)
    if ratio >= predicted(hi):
        return float(hi)
    a, b = lo, hi  # predicted() increases with beta: bisect
    for _ in range(60):
        mid = 0.5 * (a + b)
        a, b = (mid, b) if predicted(mid) < ratio else (a, mid)
    return float(0.5 * (a + b))


def rate_scale(fraction: float, beta: float = 0.5) -> float:
    """The map from the spread of fraction-``f`` subsamples (without replacement) to the full-sample estimate's,
    for a statistic whose spread shrinks as n^-beta: ``sqrt(f^(2 beta) / (1 - f^(2 beta)))`` (the model of
    :func:`rate_exponent`); ``sqrt(f / (1 - f))`` at beta = 0.5, as :func:`episode_subsample_weights` returns."""
    if not 0 < fraction < 1 or not np.isfinite(beta):
        return 1.0
    x = fraction ** (2 * beta)
    return float(np.sqrt(x / (1 - x)))


def design_key(episodes: np.ndarray, strata: np.ndarray, seed: int, n_rep: int, fraction: float, rows: int) -> str:
    """A short key of everything that decides which episodes each replicate draws: equal keys mean that two
    runs (e.g. two checkpoints' stores of the same data) resampled the same episodes, replicate by replicate."""
    h = hashlib.blake2b(digest_size=12)
    for part in (np.unique(np.asarray(episodes), return_inverse=True)[1].ravel().astype(np.int64),
                 np.asarray(strata).astype(np.int64)):
        h.update(np.ascontiguousarray(part).tobytes())
    h.update(repr((int(seed), int(n_rep), round(float(fraction), 9), int(rows))).encode())
    return h.hexdigest()


def design_df(episodes: np.ndarray, strata: np.ndarray) -> int:
    """Degrees of freedom of a variance estimated from episodes drawn within strata: episodes minus strata
    (as for replication variance in stratified cluster samples; at least 1)."""
    _, groups = episode_groups(episodes, strata)
    return max(sum(len(g) for g in groups) - len(groups), 1)


def interval_df(n_replicates: int, df: float | None = None) -> float:
    """Degrees of freedom of the interval's t quantile: the design's ``df`` (:func:`design_df`) and the
    ``n_replicates - 1`` of the replicates' spread combined, ``1 / (1 / df + 1 / (B - 1))`` (their
    relative variance errors add), or ``B - 1`` alone without ``df``."""
    b = max(n_replicates - 1, 1)
    return float(b if df is None or not np.isfinite(df) or df <= 0 else 1.0 / (1.0 / df + 1.0 / b))


def centred_interval(replicates: np.ndarray, estimate: float, level: float = 0.95, scale: float = 1.0,
                     df: float | None = None, bounds: tuple[float, float] | None = None) -> Interval:
    """A ``level`` interval around ``estimate`` from the replicates' spread (nan replicates ignored),
    clipped to ``bounds`` (the metric's range, :attr:`metrics.spec.MetricSpec.bounds`) where given.

    ``estimate +- t * scale * sd(replicates)``, ``t`` the Student quantile at
    :func:`interval_df` degrees of freedom and ``scale`` the map from the replicates' spread
    to the estimate's (1 for a bootstrap or half-samples, :func:`episode_subsample_weights`'s
    scale for smaller subsamples). A standard-error interval rather than the replicates'
    2.5% and 97.5% quantiles: with 30 replicates those are the second-smallest and
    second-largest, which leave about 11% of a new draw outside (not 5%), and the few
    episodes that decide the spread call for a t quantile. Centred on the estimate, which it
    always contains, even for statistics whose replicates are biased (kernels, distances on
    fewer rows). Clipping to the range (a precision near 1 whose interval would reach 1.03) cannot
    lower coverage, since the target lies in the range too, and keeps the estimate inside.
    """
    values = np.asarray(replicates, dtype=np.float64)
    values = values[~np.isnan(values)]
    if len(values) < 2 or not np.isfinite(estimate):
        return Interval(float("nan"), float("nan"))
    half = float(student.ppf(0.5 + level / 2.0, interval_df(len(values), df))) * scale * float(np.std(values, ddof=1))
    lo, hi = float(estimate - half), float(estimate + half)
    if bounds is not None:  # never past the estimate itself (a rounding error beyond the range)
        lo, hi = max(lo, min(float(bounds[0]), estimate)), min(hi, max(float(bounds[1]), estimate))
    return Interval(lo, hi)


def permutation_p_value(observed: float, null_values: np.ndarray, *, greater: bool) -> float:
    """One-sided permutation p-value ``(1 + #extreme) / (1 + #permutations)``.

    ``greater``: the alternative is that ``observed`` exceeds the permutation values
    (extreme = null >= observed); otherwise that it falls below them (null <= observed).
    """
    null_values = np.asarray(null_values, dtype=np.float64)
    null_values = null_values[~np.isnan(null_values)]
    if not len(null_values) or not np.isfinite(observed):
        return float("nan")
    extreme = null_values >= observed if greater else null_values <= observed
    return float((1 + int(extreme.sum())) / (1 + len(null_values)))


class RunShuffler:
    """Shuffles labels between segments (e.g. one episode's run of one stage) within groups.

    Every row of a segment gets the label of another segment of the same ``within``
    group, so the group's label proportions (in segments) stay and the frames of a
    segment keep one label. The segment structure is computed once, so each of many
    permutations (nulls, p-values) costs one shuffle per group.

    Parameters
    ----------
    labels : (n,) labels, constant within each segment (the first row's label is used)
    segments : (n,) segment key of each row
    within : (n,) group key of each row, constant within each segment
    """

    def __init__(self, labels: np.ndarray, segments: np.ndarray, within: np.ndarray) -> None:
        _, first, codes = np.unique(np.asarray(segments), return_index=True, return_inverse=True)
        self.codes = codes.ravel()
        self.segment_labels = np.asarray(labels)[first]
        seg_within = np.asarray(within)[first]
        self.groups = [np.flatnonzero(seg_within == g) for g in np.unique(seg_within)]

    def __call__(self, rng: np.random.Generator) -> np.ndarray:
        new = self.segment_labels.copy()
        for members in self.groups:
            new[members] = self.segment_labels[rng.permutation(members)]
        return new[self.codes]


def permute_segments(labels: np.ndarray, segments: np.ndarray, within: np.ndarray,
                     rng: np.random.Generator) -> np.ndarray:
    """One shuffle of ``labels`` between segments within groups (see :class:`RunShuffler`)."""
    return RunShuffler(labels, segments, within)(rng)


def runs(episodes: np.ndarray, stage: np.ndarray) -> np.ndarray:
    """An integer key of each row's (episode, stage) run."""
    _, ep = np.unique(np.asarray(episodes), return_inverse=True)
    _, st = np.unique(np.asarray(stage), return_inverse=True)
    return ep.ravel().astype(np.int64) * (int(st.max()) + 1 if len(st) else 1) + st.ravel()


def null_embodiment(embodiment: np.ndarray, stage: np.ndarray, episodes: np.ndarray,
                    rng: np.random.Generator) -> np.ndarray:
    """Embodiment labels shuffled within stage, at the level of (episode, stage) runs: the mixing null."""
    return permute_segments(embodiment, runs(episodes, stage), stage, rng)


def null_stage(stage: np.ndarray, task: np.ndarray, episodes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Stage labels shuffled between (episode, stage) runs of the same task: the conservation null."""
    return permute_segments(stage, runs(episodes, stage), task, rng)


def shuffle_within(values: np.ndarray, groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``values`` permuted within each group (e.g. frame order within each episode: the temporal null)."""
    values = np.asarray(values).copy()
    groups = np.asarray(groups)
    order = np.argsort(groups, kind="stable")
    bounds = np.flatnonzero(groups[order][1:] != groups[order][:-1]) + 1
    for sel in np.split(order, bounds):
        values[sel] = values[rng.permutation(sel)]
    return values
