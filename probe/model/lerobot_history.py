"""Observation history of LeRobot policies with ``n_obs_steps > 1``, read from our datasets.

LeRobot's dataset gives such a policy, for the frame ``t`` of an episode, the frames ``t - n + 1 ... t`` at the
dataset's frame rate (its ``delta_timestamps``), the episode's first frame standing for those before it
(``*_is_pad``, which the policies do not read for observations). :func:`history_batch` builds the same from
a read :class:`~probe.readers.base.Batch`: frames already in the batch are reused, the others are read from
the dataset (decoded at the same size).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from probe import columns as C
from probe.readers.base import Batch

HISTORY_RULE = ("the {n} frames up to each frame at the dataset's frame rate, the episode's first frame repeated "
                "before it starts (as LeRobot's delta_timestamps)")
REPEAT_RULE = "the current frame repeated n_obs_steps times (as LeRobot's select_action at an episode's first step)"


def history_batch(batch: Batch, meta: pd.DataFrame, dataset: Any, n_steps: int,
                  size: tuple[int, int] | None) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Images ``{key: (B * n_steps, H, W, 3)}`` and state ``(B * n_steps, P)`` (or None), sample-major: sample
    ``b``'s steps are rows ``b * n_steps ... b * n_steps + n_steps - 1``, oldest first."""
    episodes = meta[C.EPISODE].to_numpy(np.int64)
    frames = batch.frames.astype(np.int64)
    offsets = np.arange(1 - n_steps, 1, dtype=np.int64)
    wanted = np.maximum(frames[:, None] + offsets[None, :], 0)  # (B, n): clamped to the episode's first frame
    have = {(int(e), int(f)): i for i, (e, f) in enumerate(zip(episodes, frames))}
    sources: list[tuple[int, int]] = []  # per (b, step): (part, row) with part 0 = the batch itself
    parts: list[Batch] = [batch]
    missing: dict[int, set[int]] = {}
    for b, e in enumerate(episodes):
        for f in wanted[b]:
            if (int(e), int(f)) not in have:
                missing.setdefault(int(e), set()).add(int(f))
    read_rows: dict[tuple[int, int], tuple[int, int]] = {}
    for episode, need in missing.items():
        got = dataset.read(episode, np.array(sorted(need), dtype=np.int64), images=bool(batch.images), size=size)
        parts.append(got)
        for row, f in enumerate(got.frames.tolist()):
            read_rows[(episode, int(f))] = (len(parts) - 1, row)
    for b, e in enumerate(episodes):
        for f in wanted[b]:
            key = (int(e), int(f))
            sources.append((0, have[key]) if key in have else read_rows[key])

    def gather(values: list[np.ndarray | None]) -> np.ndarray | None:
        if any(v is None for v in values):
            return None
        return np.stack([values[p][r] for p, r in sources])

    images = {k: gather([p.images.get(k) for p in parts]) for k in batch.images}
    return {k: v for k, v in images.items() if v is not None}, gather([p.state for p in parts])
