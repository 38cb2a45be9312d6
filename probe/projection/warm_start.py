"""Warm-starting a layout from the previous checkpoint's, so that a series of layouts changes only where
the latents did: rows matched by sample id start where they were, new rows near their placed neighbours."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from probe.projection.layout import Layout


def _match(ids: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Position of each id in ``reference`` (-1 where absent)."""
    pos = pd.Series(np.arange(len(reference)), index=pd.Index(reference))
    pos = pos[~pos.index.duplicated()]
    return pos.reindex(pd.Index(ids)).fillna(-1).to_numpy().astype(np.int64)


def shares_most(ids: np.ndarray, previous: Layout) -> bool:
    """Whether at least half of ``ids`` are rows of ``previous`` (a warm start then pays off)."""
    return bool((_match(ids, previous.sample_ids) >= 0).sum() >= 0.5 * len(ids))


def warm_init(sample_ids: np.ndarray, previous: Layout, neighbors: np.ndarray | None = None,
              seed: int = 0) -> np.ndarray | None:
    """Initial coordinates from a previous layout, matched by sample id.

    Rows also in ``previous`` start where they were; other rows start at the mean of
    their already-placed kNN neighbours (``neighbors (n, k)`` indices) or, failing
    that, at a random point near the previous layout's centre, with a little noise.
    None when fewer than half the rows are shared (a fresh layout is then better).
    """
    idx = _match(sample_ids, previous.sample_ids)
    known = idx >= 0
    if known.sum() < 0.5 * len(sample_ids):
        return None
    rng = np.random.default_rng(seed)
    prev = previous.coords.astype(np.float64)
    spread = prev.std(axis=0) + 1e-6
    init = np.zeros((len(sample_ids), 2))
    init[known] = prev[idx[known]]
    missing = np.flatnonzero(~known)
    for i in missing:
        if neighbors is not None:
            nb = neighbors[i][(neighbors[i] >= 0)]
            nb = nb[known[nb]]
            if len(nb):
                init[i] = init[nb].mean(axis=0)
                continue
        init[i] = prev.mean(axis=0) + rng.normal(scale=0.5, size=2) * spread
    init[missing] += rng.normal(scale=0.01, size=(len(missing), 2)) * spread
    return init.astype(np.float32)
