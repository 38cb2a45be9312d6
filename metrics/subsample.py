"""Stratified subsampling: O(n^2) metrics run on a subsample that keeps every stratum's share.

Strata are usually embodiment x task x stage, so a subsample of a store keeps the
balance of embodiments, tasks and stages that the full store has.
"""

from __future__ import annotations

import numpy as np


def strata_keys(*columns: np.ndarray) -> np.ndarray:
    """One integer stratum id per row from several label columns (their joint value)."""
    if not columns:
        raise ValueError("strata_keys needs at least one column")
    n = len(columns[0])
    keys = np.zeros(n, dtype=np.int64)
    for col in columns:
        if len(col) != n:
            raise ValueError(f"strata columns differ in length: {n} and {len(col)}")
        _, codes = np.unique(np.asarray(col), return_inverse=True)
        keys = keys * (int(codes.max()) + 1 if n else 1) + codes.ravel()
    return np.unique(keys, return_inverse=True)[1].ravel()


def stratified_subsample(strata: np.ndarray, n_max: int, seed: int = 0) -> np.ndarray:
    """Sorted row indices of at most ``n_max`` rows, each stratum keeping its share of the rows.

    Allocation is proportional with largest remainders, and every stratum keeps at
    least one row when ``n_max`` allows it (small strata are never dropped). Rows
    within a stratum are drawn uniformly without replacement, seeded.

    Parameters
    ----------
    strata : (n,) stratum id (or label) of each row
    n_max : largest subsample size; all rows are returned when n <= n_max

    Returns
    -------
    (m,) int64 sorted row indices, m = min(n, n_max).
    """
    strata = np.asarray(strata)
    n = len(strata)
    if n_max < 1:
        raise ValueError(f"n_max must be >= 1, got {n_max}")
    if n <= n_max:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(seed)
    uniques, codes = np.unique(strata, return_inverse=True)
    codes = codes.ravel()
    sizes = np.bincount(codes, minlength=len(uniques))
    quota = sizes * (n_max / n)
    take = np.floor(quota).astype(np.int64)
    if n_max >= len(uniques):
        take = np.maximum(take, 1)
    take = np.minimum(take, sizes)
    left = n_max - int(take.sum())
    if left > 0:  # largest remainders first
        order = np.argsort(-(quota - np.floor(quota)), kind="stable")
        for s in order:
            if left == 0:
                break
            if take[s] < sizes[s]:
                take[s] += 1
                left -= 1
    elif left < 0:  # minimum-one rule overshot: trim the largest strata
        for s in np.argsort(-take, kind="stable"):
            while left < 0 and take[s] > 1:
                take[s] -= 1
                left += 1
    rows = []
    for s in range(len(uniques)):
        members = np.flatnonzero(codes == s)
        rows.append(rng.choice(members, size=int(take[s]), replace=False))
    return np.sort(np.concatenate(rows)).astype(np.int64)
