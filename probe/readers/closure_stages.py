"""Pick stages derived from a hand-closure signal, for datasets with no stage annotations.

The G1 humanoid dataset in ``shared/data`` (``g1_inspire_pick_can``) records the
Inspire hand's finger closure in ``observation.state``; :func:`closure_stages` turns
one episode's closure into five stages, and :func:`closure_stage_table` writes them
for every episode as a sidecar table for ``--stages file:PATH``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from probe.errors import ConfigError, DataError
from probe.readers.stage_files import SEGMENT_COLUMNS

log = logging.getLogger(__name__)

G1_STAGES = ("reach", "grasp", "lift", "put down", "release")


def closure_stages(closure: np.ndarray, fps: float, names: Sequence[str] = G1_STAGES,
                   *, episode: int | str = "?") -> list[tuple[str, int, int]]:
    """Five pick stages from a hand-closure signal (about 1 = open, lower = closed).

    The signal is smoothed (~0.2 s); the grasp is the longest run below the
    midpoint of its range between the first and last clearly open frames (the
    hand may rest closed before and after), or, without such a window, below the
    midpoint of the whole range after the hand first opened. ``reach`` ends where the hand starts closing (the last frame before
    the run that is 3/4 of the way up to the open peak), ``grasp`` covers the
    closing, the closed run is split in halves into ``lift`` and ``put down``,
    and ``release`` follows the run. Returns ``(name, start, end)`` segments
    covering every frame.
    """
    c = np.asarray(closure, dtype=np.float64).reshape(-1)
    n = len(c)
    if len(names) != 5:
        raise ConfigError(f"closure_stages needs 5 stage names, got {list(names)}")
    win = max(int(round(0.2 * fps)), 1)
    smooth = np.convolve(np.pad(c, (win // 2, win - 1 - win // 2), mode="edge"), np.ones(win) / win, mode="valid")
    hi, lo = smooth.max(), smooth.min()
    if n < 10 or hi - lo < 0.05:
        raise DataError(f"episode {episode}: the closure signal barely changes (range {hi - lo:.3f} over {n} "
                        "frames); no grasp to derive stages from")
    # the hand may rest closed before opening and after releasing: look between the first and
    # last clearly open frames when that window holds a closed run, else over the whole episode
    open_idx = np.flatnonzero(smooth >= lo + 0.6 * (hi - lo))
    runs, thr = [], (hi + lo) / 2
    if len(open_idx) and open_idx[-1] - open_idx[0] >= 10:
        a, b = int(open_idx[0]), int(open_idx[-1]) + 1
        thr = (smooth[a:b].max() + smooth[a:b].min()) / 2
        runs = [(s0 + a, e0 + a) for s0, e0 in _runs(smooth[a:b] < thr)
                if smooth[s0 + a:e0 + a].min() < (hi + lo) / 2]  # a real closure, not a dip while open
    if not runs:
        thr = (hi + lo) / 2
        above = smooth >= thr
        first_open = int(np.argmax(above)) if above.any() else 0
        below = ~above
        below[:first_open] = False
        runs = _runs(below)
    if not runs:
        raise DataError(f"episode {episode}: the hand never closes after opening; no grasp found")
    g0, g1 = max(runs, key=lambda r: r[1] - r[0])
    peak = smooth[:g0].max() if g0 > 0 else hi
    level = thr + 0.75 * (peak - thr)
    onset_candidates = np.flatnonzero(smooth[:g0] >= level)
    onset = int(onset_candidates[-1]) + 1 if len(onset_candidates) else 0
    onset = min(max(onset, 1), g0)
    mid = (g0 + g1) // 2
    bounds = [0, onset, g0, mid, g1, n]
    for k in range(1, 5):  # every stage at least one frame
        bounds[k] = min(max(bounds[k], bounds[k - 1] + 1), n - (5 - k))
    return [(names[k], bounds[k], bounds[k + 1]) for k in range(5)]


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``(start, end)`` of each run of True values (end exclusive)."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def closure_stage_table(dataset: Any, dims: slice | Sequence[int] = slice(20, 26),
                        names: Sequence[str] = G1_STAGES, *, skip_failed: bool = True) -> pd.DataFrame:
    """Sidecar segments (``episode, start, end, stage``) for every episode of a dataset, from
    the mean of ``observation.state[:, dims]`` (right-hand closure of g1_inspire_pick_can).

    Episodes whose signal shows no grasp are left out with a warning (``skip_failed``) or raise.
    """
    rows = []
    for ep in dataset.episodes():
        batch = dataset.read(ep, np.arange(ep.length), images=False)
        if batch.state is None:
            raise DataError(f"dataset '{dataset.info.name}' has no observation.state to derive stages from")
        closure = batch.state[:, dims].mean(axis=1)
        try:
            segs = closure_stages(closure, ep.fps, names, episode=ep.index)
        except DataError as exc:
            if not skip_failed:
                raise
            log.warning("no closure stages for episode %s: %s", ep.index, exc)
            continue
        rows += [{"episode": ep.index, "start": a, "end": b, "stage": s} for s, a, b in segs]
    return pd.DataFrame(rows, columns=list(SEGMENT_COLUMNS))
