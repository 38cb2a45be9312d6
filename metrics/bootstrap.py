"""Uncertainty and chance levels: bootstrap over episodes and label-permutation nulls.

Frames of one episode are strongly correlated, so the unit of resampling and of
permutation is the episode (or an episode's run of one stage), never the frame.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np


class Interval(NamedTuple):
    """A two-sided percentile interval."""

    lo: float
    hi: float


def episode_bootstrap_weights(episodes: np.ndarray, embodiment: np.ndarray, n_boot: int,
                              seed: int = 0) -> Iterator[np.ndarray]:
    """Yield ``n_boot`` row-weight vectors of an episode bootstrap.

    Each replicate draws, within every embodiment, as many episodes as it has, with
    replacement; a row's weight is the number of times its episode was drawn (0, 1,
    2 ...). Resampling within embodiment keeps the embodiment balance fixed.

    Parameters
    ----------
    episodes : (n,) episode key of each row (unique across datasets)
    embodiment : (n,) embodiment of each row
    n_boot : number of replicates
    """
    rng = np.random.default_rng(seed)
    ep_uniques, ep_codes = np.unique(np.asarray(episodes), return_inverse=True)
    ep_codes = ep_codes.ravel()
    embodiment = np.asarray(embodiment)
    groups = [np.unique(ep_codes[embodiment == e]) for e in np.unique(embodiment)]
    for _ in range(n_boot):
        counts = np.zeros(len(ep_uniques), dtype=np.int64)
        for eps in groups:
            counts += np.bincount(rng.choice(eps, size=len(eps), replace=True), minlength=len(ep_uniques))
        yield counts[ep_codes]


def percentile_interval(values: np.ndarray, level: float = 0.95) -> Interval:
    """Percentile interval of bootstrap replicates (nan replicates ignored; nan if none left)."""
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return Interval(float("nan"), float("nan"))
    tail = (1.0 - level) / 2.0 * 100.0
    lo, hi = np.percentile(values, [tail, 100.0 - tail])
    return Interval(float(lo), float(hi))


def permute_segments(labels: np.ndarray, segments: np.ndarray, within: np.ndarray,
                     rng: np.random.Generator) -> np.ndarray:
    """Shuffle ``labels`` between segments: every row of a segment gets the label of another segment.

    Segments (e.g. one episode's run of one stage) are permuted among the segments
    of the same ``within`` group, so the group's label proportions (in segments) stay
    and the frames of a segment keep one label.

    Parameters
    ----------
    labels : (n,) labels, constant within each segment (the first row's label is used)
    segments : (n,) segment key of each row
    within : (n,) group key of each row, constant within each segment
    """
    labels = np.asarray(labels)
    _, first, seg_codes = np.unique(np.asarray(segments), return_index=True, return_inverse=True)
    seg_codes = seg_codes.ravel()
    seg_labels = labels[first]
    seg_within = np.asarray(within)[first]
    new = seg_labels.copy()
    for group in np.unique(seg_within):
        members = np.flatnonzero(seg_within == group)
        new[members] = seg_labels[rng.permutation(members)]
    return new[seg_codes]


def null_embodiment(embodiment: np.ndarray, stage: np.ndarray, episodes: np.ndarray,
                    rng: np.random.Generator) -> np.ndarray:
    """Embodiment labels shuffled within stage, at the level of (episode, stage) runs: the mixing null."""
    segments = np.char.add(np.char.add(np.asarray(episodes).astype(str), "\x1f"), np.asarray(stage).astype(str))
    return permute_segments(embodiment, segments, stage, rng)


def null_stage(stage: np.ndarray, task: np.ndarray, episodes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Stage labels shuffled between (episode, stage) runs of the same task: the conservation null."""
    segments = np.char.add(np.char.add(np.asarray(episodes).astype(str), "\x1f"), np.asarray(stage).astype(str))
    return permute_segments(stage, segments, task, rng)


def shuffle_within(values: np.ndarray, groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``values`` permuted within each group (e.g. frame order within each episode: the temporal null)."""
    values = np.asarray(values).copy()
    groups = np.asarray(groups)
    order = np.argsort(groups, kind="stable")
    bounds = np.flatnonzero(groups[order][1:] != groups[order][:-1]) + 1
    for sel in np.split(order, bounds):
        values[sel] = values[rng.permutation(sel)]
    return values
