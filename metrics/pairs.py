"""Matched pairs: row-aligned matrices ``A`` (one embodiment) and ``B`` (the other).

Paired-similarity metrics (CKA, Procrustes, SVCCA, mutual kNN) compare two
representations of the *same* items. Human and robot samples are different items, so
we pair *moments* instead: for each (task, stage, stage-progress bin) seen by both
embodiments, row i of ``A`` is the mean latent of embodiment ``a`` in that cell and row
i of ``B`` the mean latent of embodiment ``b``. With 10 bins, "the first tenth of the
grasp stage of pick-cup" by a human is paired with the same by the robot.

Datasets that already pair samples (the same scene filmed for both embodiments) can
pair by an explicit id column instead: :func:`pairs_by_id`.

Cells seen by one embodiment only are excluded and reported, never an error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import sparse

log = logging.getLogger(__name__)

_ROW_BLOCK = 65536  # samples per block when summing group means in float64

__all__ = ["Pairs", "Unmatched", "group_means", "matched_pairs", "pairs_by_id", "progress_bins"]


@dataclass(frozen=True)
class Unmatched:
    """A group seen by one embodiment only: ``key`` is (task, stage) or (pair_id,)."""

    key: tuple[str, ...]
    embodiment: str
    n_samples: int


@dataclass(frozen=True)
class Pairs:
    """Row-aligned group means of two embodiments.

    Attributes
    ----------
    A, B : (m, d) float32
        Mean latent of embodiment ``a`` / ``b`` per matched group, row-aligned.
    keys : (m,) numpy structured array
        One record per row: ``task``, ``stage``, ``bin`` (or ``pair`` for :func:`pairs_by_id`),
        ``n_a``, ``n_b`` (samples averaged into each row). ``pandas.DataFrame(keys)`` makes a table.
    excluded : tuple of Unmatched
        (task, stage) groups (or pair ids) seen by one embodiment only; excluded.
    n_unmatched_bins : int
        Progress bins of shared stages that only one embodiment filled (also excluded).
    a, b : str
        The two embodiments.
    """

    A: np.ndarray
    B: np.ndarray
    keys: np.ndarray
    excluded: tuple[Unmatched, ...]
    n_unmatched_bins: int
    a: str
    b: str

    def __len__(self) -> int:
        return int(self.A.shape[0])

    def rows(self, mask: np.ndarray) -> Pairs:
        """The pairs selected by a boolean mask or index array over rows (e.g. one stage)."""
        return Pairs(self.A[mask], self.B[mask], self.keys[mask], self.excluded, self.n_unmatched_bins,
                     self.a, self.b)


def progress_bins(stage_progress: np.ndarray, bins: int) -> np.ndarray:
    """Bin index ``0 .. bins-1`` of each progress value in [0, 1] (1.0 falls in the last bin)."""
    p = np.asarray(stage_progress, dtype=np.float64)
    if bins < 1:
        raise ValueError(f"bins must be >= 1; got {bins}")
    if p.size and (not np.isfinite(p).all() or p.min() < 0 or p.max() > 1):
        bad = p[~(np.isfinite(p) & (p >= 0) & (p <= 1))]
        raise ValueError(
            f"stage_progress must be finite and within [0, 1]; got e.g. {bad[:3].tolist()}; "
            "recompute stage_progress as the position within the stage"
        )
    return np.minimum((p * bins).astype(np.int64), bins - 1)


def group_means(X: np.ndarray, groups: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean row of ``X`` per group id ``0 .. n_groups-1`` (float64 sums in blocks, float32 out).

    Returns ``(means (n_groups, d) float32, counts (n_groups,) int64)``; empty groups are zero.
    """
    n, d = X.shape
    sums = np.zeros((n_groups, d), dtype=np.float64)
    for start in range(0, n, _ROW_BLOCK):
        g = groups[start : start + _ROW_BLOCK]
        block = np.asarray(X[start : start + _ROW_BLOCK], dtype=np.float64)
        S = sparse.csr_matrix((np.ones(len(g)), (g, np.arange(len(g)))), shape=(n_groups, len(g)))
        sums += S @ block
    counts = np.bincount(groups, minlength=n_groups).astype(np.int64)
    means = sums / np.maximum(counts, 1)[:, None]
    return means.astype(np.float32), counts


def _check(X: np.ndarray, **columns: np.ndarray) -> np.ndarray:
    if not hasattr(X, "ndim") or X.ndim != 2:
        raise ValueError(f"X must be a 2-D (n, d) array; got shape {getattr(X, 'shape', None)}")
    for name, col in columns.items():
        if np.ndim(col) != 1 or len(col) != X.shape[0]:
            raise ValueError(
                f"'{name}' must be 1-D with one entry per row of X ({X.shape[0]}); got shape {np.shape(col)}"
            )
    return X


def _embodiment_rows(embodiment: np.ndarray, a: str, b: str) -> tuple[np.ndarray, np.ndarray]:
    emb = np.asarray(embodiment).astype(str)
    in_a, in_b = emb == a, emb == b
    for name, mask in ((a, in_a), (b, in_b)):
        if not mask.any():
            raise ValueError(
                f"no samples of embodiment '{name}'; present: {sorted(set(emb.tolist()))}; "
                "pass a= and b= naming embodiments of the store"
            )
    return in_a, in_b


def _pair(X: np.ndarray, cell: np.ndarray, in_a: np.ndarray, in_b: np.ndarray
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Means of both embodiments over the cells both fill; returns (cells, A, B, n_a, n_b)."""
    sel = in_a | in_b
    cells, inv = np.unique(cell[sel], return_inverse=True)
    # group 2c = cell c by a, 2c+1 = cell c by b, 2*len(cells) = rows of other embodiments
    groups = np.full(len(cell), 2 * len(cells), dtype=np.int64)
    groups[sel] = inv.reshape(-1) * 2 + in_b[sel]
    means, counts = group_means(X, groups, 2 * len(cells) + 1)
    n_a, n_b = counts[0:-1:2], counts[1::2]
    both = (n_a > 0) & (n_b > 0)
    return cells[both], means[0:-1:2][both], means[1::2][both], n_a[both], n_b[both]


def _one_sided(code: np.ndarray, n_codes: int, in_a: np.ndarray, in_b: np.ndarray, a: str, b: str
               ) -> list[tuple[int, str, int]]:
    """(code, embodiment, n_samples) of codes present in exactly one of the two embodiments."""
    count_a = np.bincount(code[in_a], minlength=n_codes)
    count_b = np.bincount(code[in_b], minlength=n_codes)
    one = np.flatnonzero((count_a > 0) != (count_b > 0))
    return [(int(c), a if count_a[c] else b, int(count_a[c] + count_b[c])) for c in one]


def matched_pairs(X: np.ndarray, embodiment: np.ndarray, task: np.ndarray, stage: np.ndarray,
                  stage_progress: np.ndarray, a: str = "human", b: str = "robot", bins: int = 10) -> Pairs:
    """Pair the two embodiments by (task, stage, stage-progress bin) and average each cell.

    Parameters
    ----------
    X : (n, d) float array
        Latents (may be memory-mapped; read in blocks).
    embodiment, task, stage : (n,) arrays
    stage_progress : (n,) float array in [0, 1]
        Position within the stage; binned into ``bins`` equal bins.
    a, b : str
        Embodiments giving ``A`` and ``B`` (default human and robot). Other embodiments are ignored.
    bins : int
        Progress bins per stage (default 10). ``bins=1`` pairs stage means.

    Returns
    -------
    Pairs
        ``A``, ``B`` (m, d) float32 row-aligned, ``keys`` (task, stage, bin, n_a, n_b), sorted by
        task, stage, bin; ``excluded`` lists (task, stage) groups seen by one embodiment only.
    """
    _check(X, embodiment=embodiment, task=task, stage=stage, stage_progress=stage_progress)
    in_a, in_b = _embodiment_rows(embodiment, a, b)
    task_s, stage_s = np.asarray(task).astype(str), np.asarray(stage).astype(str)
    tasks, t_code = np.unique(task_s, return_inverse=True)
    stages, s_code = np.unique(stage_s, return_inverse=True)
    t_code, s_code = t_code.reshape(-1), s_code.reshape(-1)
    group = t_code * len(stages) + s_code  # (task, stage)
    bin_ = progress_bins(stage_progress, bins)

    excluded = [Unmatched((str(tasks[g // len(stages)]), str(stages[g % len(stages)])), emb, n)
                for g, emb, n in _one_sided(group, len(tasks) * len(stages), in_a, in_b, a, b)]
    if excluded:
        log.info("%d (task, stage) groups are seen by one embodiment only and excluded: %s", len(excluded),
                 ", ".join(f"{u.key[0]}/{u.key[1]} ({u.embodiment})" for u in excluded[:5]))

    cell = group.astype(np.int64) * bins + bin_
    cells, A, B, n_a, n_b = _pair(X, cell, in_a, in_b)
    shared_groups = np.unique(cells // bins)
    all_cells = np.unique(cell[in_a | in_b])
    n_unmatched = int(np.isin(all_cells // bins, shared_groups).sum() - len(cells))
    g = cells // bins
    width = max(1, max((len(s) for s in tasks), default=1)), max(1, max((len(s) for s in stages), default=1))
    keys = np.zeros(len(cells), dtype=[("task", f"U{width[0]}"), ("stage", f"U{width[1]}"), ("bin", np.int64),
                                       ("n_a", np.int64), ("n_b", np.int64)])
    keys["task"] = tasks[g // len(stages)]
    keys["stage"] = stages[g % len(stages)]
    keys["bin"] = cells % bins
    keys["n_a"], keys["n_b"] = n_a, n_b
    if len(cells) == 0:  # the empty Pairs says it; callers note it once (a warning here repeats per call)
        log.info("no (task, stage, bin) cell is shared by '%s' and '%s': no pairs", a, b)
    return Pairs(A, B, keys, tuple(excluded), n_unmatched, a, b)


def pairs_by_id(X: np.ndarray, embodiment: np.ndarray, pair_id: np.ndarray, a: str = "human",
                b: str = "robot") -> Pairs:
    """Pair by an explicit id per sample (e.g. the same scene recorded by both embodiments).

    Samples sharing an id and an embodiment are averaged. Ids seen by one embodiment only
    are excluded and listed in ``excluded`` (key ``(pair_id,)``). ``keys`` has fields
    ``pair``, ``n_a``, ``n_b``, sorted by id.
    """
    _check(X, embodiment=embodiment, pair_id=pair_id)
    in_a, in_b = _embodiment_rows(embodiment, a, b)
    ids, code = np.unique(np.asarray(pair_id).astype(str), return_inverse=True)
    code = code.reshape(-1)
    cells, A, B, n_a, n_b = _pair(X, code, in_a, in_b)
    excluded = [Unmatched((str(ids[c]),), emb, n) for c, emb, n in _one_sided(code, len(ids), in_a, in_b, a, b)]
    if excluded:
        log.info("%d pair ids are seen by one embodiment only and excluded", len(excluded))
    width = max(1, max((len(s) for s in ids), default=1))
    keys = np.zeros(len(cells), dtype=[("pair", f"U{width}"), ("n_a", np.int64), ("n_b", np.int64)])
    keys["pair"], keys["n_a"], keys["n_b"] = ids[cells], n_a, n_b
    return Pairs(A, B, keys, tuple(excluded), 0, a, b)
