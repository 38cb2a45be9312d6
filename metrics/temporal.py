"""Temporal alignment of episodes of the same task across embodiments.

A shared embedding should not only put human and robot moments near each other: it
should keep their *order*. For a human episode ``U (t1, d)`` and a robot episode
``V (t2, d)`` of the same task (rows in frame order), each frame of U is matched to its
nearest frame of V:

* :func:`kendall_tau` asks whether the matched V indices rise with U's frame index;
* :func:`cycle_consistency` asks whether the match cycles back (Dwibedi et al. 2019).

:func:`episode_alignment` runs both over (human episode, robot episode) pairs of every
task seen by both embodiments. Neighbours within a pair are exact, by brute force over
the two episodes' frames (cosine on L2-normalised rows, or squared Euclidean, as in
:mod:`metrics.knn`); the shared latent graph is not involved.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy.stats import kendalltau
from threadpoolctl import threadpool_limits

from metrics.knn import Metric, prepare

log = logging.getLogger(__name__)

_BLOCK = 2048  # U frames per distance block

__all__ = ["EpisodeAlignment", "cycle_consistency", "cycle_consistency_samples", "episode_alignment",
           "kendall_tau", "nearest_frames"]


def _check_episode(M: np.ndarray, name: str) -> np.ndarray:
    M = np.asarray(M)
    if M.ndim != 2 or M.shape[0] < 1:
        raise ValueError(f"{name} must be a 2-D (frames, d) array with at least one frame; got shape {M.shape}")
    if not np.isfinite(M).all():
        raise ValueError(f"{name} contains NaN or infinite values; drop or fix those frames")
    return M


def _nearest_both(U: np.ndarray, V: np.ndarray, metric: Metric | str) -> tuple[np.ndarray, np.ndarray]:
    """Exact nearest V frame of each U frame and nearest U frame of each V frame (first index on ties).

    Brute force in float32 blocks of U rows: episodes are small, and this is much faster
    than building a FAISS index per episode pair.
    """
    U, V = _check_episode(U, "U"), _check_episode(V, "V")
    if U.shape[1] != V.shape[1]:
        raise ValueError(f"U and V must have the same width; got {U.shape[1]} and {V.shape[1]}")
    U, V = prepare(U, metric), prepare(V, metric)
    v_sq = np.einsum("ij,ij->i", V, V)
    forward = np.empty(len(U), dtype=np.int64)
    best = np.full(len(V), np.inf, dtype=np.float32)
    back = np.zeros(len(V), dtype=np.int64)
    for start in range(0, len(U), _BLOCK):
        Ub = U[start : start + _BLOCK]
        if Metric(metric) is Metric.COSINE:
            dist = -(Ub @ V.T)
        else:
            dist = np.einsum("ij,ij->i", Ub, Ub)[:, None] + v_sq[None, :] - 2.0 * (Ub @ V.T)
        forward[start : start + len(Ub)] = np.argmin(dist, axis=1)
        col = np.argmin(dist, axis=0)
        col_min = dist[col, np.arange(len(V))]
        better = col_min < best
        best[better], back[better] = col_min[better], col[better] + start
    return forward, back


def nearest_frames(U: np.ndarray, V: np.ndarray, metric: Metric | str = Metric.COSINE) -> np.ndarray:
    """Index of the nearest frame of V for every frame of U, ``(t1,)`` int64 (exact; first index on ties)."""
    return _nearest_both(U, V, metric)[0]


def kendall_tau(U: np.ndarray, V: np.ndarray, metric: Metric | str = Metric.COSINE) -> float:
    """Kendall's tau between U's frame order and the indices of each U frame's nearest V frame.

    Parameters
    ----------
    U : (t1, d) array, one episode's latents in frame order (e.g. human)
    V : (t2, d) array, another episode of the same task in frame order (e.g. robot)
    metric : "cosine" or "l2"

    Returns
    -------
    float in [-1, 1]; higher is better. 1: the matches advance monotonically through V
    (the same order, any speed); -1: reversed; about 0: order lost. nan when U has fewer
    than 2 frames or every U frame matches the same V frame. Uses ``scipy.stats.kendalltau``
    (tau-b, which accounts for ties when several U frames match one V frame). As in the
    Kendall's-tau evaluation of Dwibedi et al. 2019 (TCC), which however averages over
    every pair of frames of two videos in both directions; here one direction, U -> V.
    """
    matched = nearest_frames(U, V, metric)
    if len(matched) < 2 or np.all(matched == matched[0]):
        return float("nan")
    return float(kendalltau(np.arange(len(matched)), matched).statistic)


def cycle_consistency_samples(U: np.ndarray, V: np.ndarray, tolerance: int = 1,
                              metric: Metric | str = Metric.COSINE) -> np.ndarray:
    """Per frame of U: does ``u -> nearest v -> nearest u'`` land within ``tolerance`` frames of u.

    ``(t1,)`` bool. See :func:`cycle_consistency`.
    """
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0 frames; got {tolerance}")
    forward, back = _nearest_both(U, V, metric)
    return np.abs(back[forward] - np.arange(len(forward))) <= tolerance


def cycle_consistency(U: np.ndarray, V: np.ndarray, tolerance: int = 1,
                      metric: Metric | str = Metric.COSINE) -> float:
    """Cycle-consistency (Dwibedi et al. 2019, "Temporal Cycle-Consistency Learning").

    Share of frames u of U whose nearest frame v in V has, as its own nearest frame in U,
    a frame within ``tolerance`` frames of u (``|index difference| <= tolerance``; default 1,
    forgiving neighbouring near-duplicate frames; TCC's evaluation uses 0). Range [0, 1],
    higher is better; 1 for identical trajectories. Unlike :func:`kendall_tau` it does not
    see order: a shuffled copy still scores 1. The tolerance is in U frames, so it means the
    same time span whatever V's frame rate.
    """
    return float(cycle_consistency_samples(U, V, tolerance, metric).mean())


@dataclass(frozen=True)
class EpisodeAlignment:
    """Result of :func:`episode_alignment`.

    Attributes
    ----------
    pairs : numpy structured array, one record per episode pair
        ``task``, ``episode_a``, ``episode_b`` (as strings), ``n_a``, ``n_b`` (frames), ``tau``,
        ``cycle`` (nan where undefined). ``pandas.DataFrame(pairs)`` makes a table.
    n_pairs_total : int
        Pairs available before the cap.
    skipped_tasks : tuple of (task, embodiment)
        Tasks seen by one embodiment only (no pairs).
    """

    pairs: np.ndarray
    n_pairs_total: int
    skipped_tasks: tuple[tuple[str, str], ...]

    @property
    def tau(self) -> float:
        """Mean Kendall's tau over pairs (nan entries excluded)."""
        return _nanmean(self.pairs["tau"])

    @property
    def cycle(self) -> float:
        """Mean cycle-consistency over pairs."""
        return _nanmean(self.pairs["cycle"])

    def per_task(self) -> dict[str, dict[str, float]]:
        """Mean tau and cycle-consistency (and pair count) per task."""
        out = {}
        for task in np.unique(self.pairs["task"]):
            rows = self.pairs[self.pairs["task"] == task]
            out[str(task)] = {"tau": _nanmean(rows["tau"]), "cycle": _nanmean(rows["cycle"]), "n_pairs": len(rows)}
        return out

    def summary(self) -> dict[str, float | int]:
        return {"kendall_tau": self.tau, "cycle_consistency": self.cycle, "n_pairs": int(len(self.pairs)),
                "n_pairs_total": self.n_pairs_total}


def _nanmean(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    x = x[~np.isnan(x)]
    return float(x.mean()) if x.size else float("nan")


def episode_alignment(X: np.ndarray, embodiment: np.ndarray, task: np.ndarray, episode: np.ndarray,
                      frame: np.ndarray, a: str = "human", b: str = "robot", *, max_pairs: int | None = 200,
                      seed: int = 0, tolerance: int = 1, metric: Metric | str = Metric.COSINE) -> EpisodeAlignment:
    """Kendall's tau and cycle-consistency over (episode of ``a``, episode of ``b``) pairs of each task.

    Parameters
    ----------
    X : (n, d) float array
    embodiment, task : (n,) arrays
    episode : (n,) array
        Episode id, unique within an embodiment (combine with the dataset name when several
        datasets of one embodiment reuse episode numbers).
    frame : (n,) array
        Frame index (or timestamp) giving each episode's order; rows need not be sorted.
    a, b : the embodiments (U episodes from ``a``, V episodes from ``b``)
    max_pairs : int or None
        Cap on evaluated pairs, drawn uniformly (seeded) from all same-task pairs; None for all.
    seed, tolerance, metric : see :func:`cycle_consistency`

    Returns
    -------
    EpisodeAlignment
        Per-pair values and their means (``.tau``, ``.cycle``); unweighted by episode length.
    """
    X = np.asarray(X)
    n = X.shape[0] if X.ndim == 2 else -1
    columns = {"embodiment": embodiment, "task": task, "episode": episode, "frame": frame}
    for name, col in columns.items():
        if X.ndim != 2 or np.ndim(col) != 1 or len(col) != n:
            raise ValueError(
                f"X must be (n, d) and '{name}' 1-D with one entry per row; got X {X.shape}, {name} {np.shape(col)}"
            )
    if max_pairs is not None and max_pairs < 1:
        raise ValueError(f"max_pairs must be >= 1 or None; got {max_pairs}")
    emb = np.asarray(embodiment).astype(str)
    task_s = np.asarray(task).astype(str)
    ep_s = np.asarray(episode).astype(str)
    frame = np.asarray(frame)
    present = sorted(set(emb.tolist()))
    for name in (a, b):
        if name not in present:
            raise ValueError(f"no samples of embodiment '{name}'; present: {present}; pass a= and b= that exist")

    episodes: dict[str, dict[str, np.ndarray]] = {a: {}, b: {}}
    for name in (a, b):
        rows = np.flatnonzero(emb == name)
        keys = np.char.add(np.char.add(task_s[rows], "\x1f"), ep_s[rows])
        uniq, inv = np.unique(keys, return_inverse=True)
        inv = inv.reshape(-1)
        order = np.lexsort((frame[rows], inv))           # by episode, then frame
        bounds = np.cumsum(np.bincount(inv, minlength=len(uniq)))[:-1]
        for key, sel in zip(uniq, np.split(rows[order], bounds)):
            episodes[name][str(key)] = sel

    def by_task(name: str) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for key in episodes[name]:
            out.setdefault(key.split("\x1f", 1)[0], []).append(key)
        return out

    ta, tb = by_task(a), by_task(b)
    skipped = tuple(sorted([(t, a) for t in ta if t not in tb] + [(t, b) for t in tb if t not in ta]))
    if skipped:
        log.info("episode_alignment: %d tasks are seen by one embodiment only and skipped", len(skipped))
    candidates = [(ka, kb) for t in sorted(set(ta) & set(tb)) for ka in ta[t] for kb in tb[t]]
    total = len(candidates)
    if max_pairs is not None and total > max_pairs:
        pick = np.sort(np.random.default_rng(seed).choice(total, size=max_pairs, replace=False))
        candidates = [candidates[i] for i in pick]

    w_task = max([len(k.split("\x1f", 1)[0]) for pair in candidates for k in pair] + [1])
    w_ep = max([len(k.split("\x1f", 1)[1]) for pair in candidates for k in pair] + [1])
    pairs = np.zeros(len(candidates), dtype=[("task", f"U{w_task}"), ("episode_a", f"U{w_ep}"),
                                             ("episode_b", f"U{w_ep}"), ("n_a", np.int64), ("n_b", np.int64),
                                             ("tau", np.float64), ("cycle", np.float64)])
    # episodes are small: one BLAS thread avoids thread wake-up costs that dominate on a busy machine
    with threadpool_limits(limits=1):
        for i, (ka, kb) in enumerate(candidates):
            U, V = X[episodes[a][ka]], X[episodes[b][kb]]
            t, ea = ka.split("\x1f", 1)
            pairs[i] = (t, ea, kb.split("\x1f", 1)[1], len(U), len(V), kendall_tau(U, V, metric),
                        cycle_consistency(U, V, tolerance, metric))
    if total == 0:  # n_pairs_total == 0 says it; callers note it once (a warning here repeats per call)
        log.info("episode_alignment: no task is shared by '%s' and '%s': no episode pairs", a, b)
    return EpisodeAlignment(pairs, total, skipped)
