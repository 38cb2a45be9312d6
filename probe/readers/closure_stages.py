"""Pick stages derived from a hand-closure signal, for datasets with no stage annotations.

The G1 humanoid dataset in ``shared/data`` (``g1_inspire_pick_can``) records the
Inspire hand's finger closure in ``observation.state``; :func:`closure_stages` turns
one episode's closure into five stages, and :func:`closure_stage_table` writes them
for every episode as a sidecar table for ``--stages file:PATH``; :func:`open_g1_inspire` opens a
dataset for it and refuses one whose state is not the G1 Inspire layout (any other state would
give stages read from the wrong joints).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from probe.errors import ConfigError, DataError
from probe.readers.stage_files import SEGMENT_COLUMNS

log = logging.getLogger(__name__)

G1_STAGES = ("reach", "grasp", "lift", "put down", "release")
G1_STATE_WIDTH = 26  # Unitree G1 with Inspire hands: 14 arm joints, 6 left-hand then 6 right-hand fingers
G1_RIGHT_HAND = slice(20, 26)  # observation.state dims of the right hand's fingers (about 1 = open)


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


def open_g1_inspire(path: str | Path) -> Any:
    """Open a LeRobot dataset of the Unitree G1 with Inspire hands (states only, no video) for
    :func:`closure_stage_table`; :class:`DataError` for any other data, whose ``observation.state[:, 20:26]``
    would not be the right hand's closure."""
    from probe.readers import detect_format, open_dataset
    from probe.readers.base import Format
    from probe.readers.lerobot_meta import read_json

    g1 = ("a LeRobot dataset of the Unitree G1 with Inspire hands (26-D observation.state, the right hand's "
          "fingers at 20:26) such as g1_inspire_pick_can")
    fmt = detect_format(path)
    if fmt not in (Format.LEROBOT_V2, Format.LEROBOT_V3):
        raise DataError(f"'{path}' is {fmt.value} data, not a LeRobot dataset: closure stages need {g1}")
    ds = open_dataset(path, video_keys=[])
    info = ds.info
    shape = info.features.get("observation.state")
    if shape is None:
        raise DataError(f"dataset '{info.name}' has no observation.state; closure stages need {g1}")
    names = _state_names(read_json(Path(info.path) / "meta" / "info.json"))
    width = shape[0] if len(shape) == 1 else None
    hand = names[G1_RIGHT_HAND] if width == G1_STATE_WIDTH and len(names) == width else []
    if width == G1_STATE_WIDTH and (all("righthand" in n.lower().replace("_", "") for n in hand) if hand
                                    else "g1" in info.robot_type.lower()):
        return ds
    shown = f" ({names[0]} ... {names[-1]})" if names else ""
    raise DataError(f"dataset '{info.name}' (robot_type {info.robot_type}) has a {'x'.join(map(str, shape))}-D "
                    f"observation.state{shown}, not the G1 Inspire layout: its dims 20:26 are not the right hand's "
                    f"closure, so stages derived from them would be wrong; closure stages need {g1} (label this "
                    "dataset with probe extract --stages auto, column:NAME, progress:N or file:PATH instead)")


def _state_names(meta: dict[str, Any]) -> list[str]:
    """The declared names of ``observation.state``'s dims (LeRobot writes a list, a list of one list, or a
    mapping of one list); empty when none are declared."""
    names = meta.get("features", {}).get("observation.state", {}).get("names")
    if isinstance(names, dict):
        names = next(iter(names.values()), None) if len(names) == 1 else None
    if isinstance(names, list) and len(names) == 1 and isinstance(names[0], list):
        names = names[0]
    return [str(n) for n in names] if isinstance(names, list) else []
