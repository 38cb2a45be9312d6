"""Cross-embodiment retrieval: for a robot state, the human clips showing the same moment.

A :class:`Retriever` wraps an index opened against its store. Results are **clips**,
not bare frames: each hit is widened to a time window around the matched frame
(clamped to its episode), at most ``per_episode`` clips come from one episode (the
search goes deeper and filters, so results stay diverse), and a hit that falls
inside a clip already chosen from the same episode is merged into it. Where the
store has ``video`` / ``video_timestamp`` columns, each clip carries the video file
and its start and end in that file's time.

>>> r = Retriever.open("indexes/human")                                # doctest: +SKIP
>>> r.search_frame(episode=12, frame=40, k=5, per_episode=1)           # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from metrics.knn import Metric
from probe import columns as C
from probe.errors import ConfigError, DataError
from probe.retrieval.index_search import OpenIndex, open_index
from probe.retrieval.queries import locate_row
from probe.store.store import Store

log = logging.getLogger(__name__)

#: Columns of a result frame, in order (``video*`` are empty where the store has no video).
RESULT_COLUMNS: tuple[str, ...] = (
    "query", "query_sample_id", "rank", "score", "distance", C.SAMPLE_ID, C.EMBODIMENT, C.DATASET, C.EPISODE,
    C.FRAME, C.TIMESTAMP, C.TASK, C.STAGE, C.STAGE_PROGRESS, C.PROGRESS, "start", "end", C.VIDEO,
    "video_start", "video_end", "store_row",
)
_FIRST_DEPTH = 4  # first search depth is max(4 k, k + 32); it grows 4x while clips are missing


def score_of(distance: np.ndarray | float, metric: Metric | str) -> np.ndarray | float:
    """A search distance as a higher-is-better score: cosine similarity (``1 - distance``) for cosine,
    minus the squared L2 distance for l2. The one place that convention is spelled."""
    return 1.0 - distance if Metric(metric) is Metric.COSINE else -distance


@dataclass(frozen=True)
class ClipReference:
    """What clip selection reads of each candidate (row ``i`` = candidate id ``i``): its metadata,
    episode key, timestamp and its episode's time bounds."""

    meta: pd.DataFrame
    episode: np.ndarray
    t: np.ndarray
    ep_start: np.ndarray
    ep_end: np.ndarray

    @classmethod
    def of(cls, meta: pd.DataFrame) -> ClipReference:
        meta = meta.reset_index(drop=True)
        key = C.episode_keys(meta)
        t = meta[C.TIMESTAMP].to_numpy(dtype=np.float64)
        grouped = pd.Series(t).groupby(key)
        return cls(meta, key, t, grouped.transform("min").to_numpy(), grouped.transform("max").to_numpy())

    def __len__(self) -> int:
        return len(self.t)

    def span(self, ids: np.ndarray | int, window: float) -> tuple[np.ndarray, np.ndarray]:
        """Start and end times of the clips around candidates ``ids``: ``window`` seconds either side,
        clamped to the episode."""
        t = self.t[ids]
        return np.maximum(self.ep_start[ids], t - window), np.minimum(self.ep_end[ids], t + window)

    def select(self, ids: np.ndarray, dist: np.ndarray, k: int, *, per_episode: int | None = None,
               window: float = 1.0, exclude: Collection[str] = frozenset()) -> list[tuple[int, float]]:
        """Up to ``k`` clips from one query's candidates (ids ascending by distance, -1 ends the list):
        episodes in ``exclude`` skipped, at most ``per_episode`` clips per episode, and a candidate
        inside a clip already chosen from its episode merged into it. ``(id, distance)`` pairs, best first."""
        taken: dict[str, list[tuple[float, float]]] = {}
        out: list[tuple[int, float]] = []
        for i, d in zip(np.asarray(ids).tolist(), np.asarray(dist).tolist()):
            if i < 0:
                break
            ep = self.episode[i]
            if ep in exclude:
                continue
            spans = taken.setdefault(ep, [])
            if per_episode is not None and len(spans) >= per_episode:
                continue
            t = self.t[i]
            if any(lo <= t <= hi for lo, hi in spans):
                continue  # inside a clip already chosen: the same moment
            lo, hi = self.span(i, window)
            spans.append((float(lo), float(hi)))
            out.append((i, d))
            if len(out) == k:
                break
        return out


#: ``search(queries, depth) -> (distances, ids)``: the ``depth`` nearest candidates of each query, ascending
Search = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]


def select_clips(search: Search, queries: np.ndarray, k: int, reference: ClipReference, *,
                 per_episode: int | None = None, window: float = 1.0,
                 exclude_episodes: Sequence[Collection[str]] | None = None,
                 n_candidates: int | None = None) -> list[list[tuple[int, float]]]:
    """The ``k`` best clips of each query: the one clip selection of retrieval, the report and the dashboard.

    ``search`` finds candidates (an index, or exact kNN over raw arrays) among ``n_candidates``
    (default: all of ``reference``); it is searched deeper (4x per round) while a query has
    fewer than ``k`` clips under the constraints of :meth:`ClipReference.select`. Returns per
    query ``(candidate id, distance)`` pairs, best first; fewer than ``k`` only when the
    candidates hold too few distinct clips.
    """
    q = np.asarray(queries, dtype=np.float32)
    if q.ndim == 1:
        q = q[None, :]
    if window < 0:
        raise ConfigError(f"window must be >= 0 seconds, got {window}")
    if per_episode is not None and per_episode < 1:
        raise ConfigError(f"per_episode must be >= 1 (or None for no limit), got {per_episode}")
    n_ref = len(reference) if n_candidates is None else n_candidates
    if k < 1 or k > n_ref:
        raise ConfigError(f"k={k} must lie in 1..{n_ref}: the reference set holds {n_ref} samples; lower -k")
    if exclude_episodes is not None and len(exclude_episodes) != len(q):
        raise ConfigError(f"exclude_episodes has {len(exclude_episodes)} entries for {len(q)} queries")
    constrained = per_episode is not None or window > 0 or exclude_episodes is not None
    depth = min(n_ref, max(_FIRST_DEPTH * k, k + 32) if constrained else k)
    chosen: list[list[tuple[int, float]]] = [[] for _ in range(len(q))]
    pending = np.arange(len(q))
    while len(pending):
        D, I = search(q[pending], depth)
        still = []
        for j, qi in enumerate(pending):
            excl = exclude_episodes[qi] if exclude_episodes is not None else frozenset()
            chosen[qi] = reference.select(I[j], D[j], k, per_episode=per_episode, window=window, exclude=excl)
            if len(chosen[qi]) < k and depth < n_ref:
                still.append(qi)
        pending = np.asarray(still, dtype=np.int64)
        depth = min(n_ref, depth * 4)
    short = sum(len(c) < k for c in chosen)
    if short:
        log.info("%d queries got fewer than %d clips (too few distinct episodes/clips among the candidates)", short, k)
    return chosen


class Retriever:
    """Search one embodiment's index of a store and return clips.

    Parameters
    ----------
    index : an index opened against its store (:func:`probe.retrieval.index_search.open_index`)
    """

    def __init__(self, index: OpenIndex) -> None:
        self.index = index
        self.store: Store = index.store
        self.layer: str = index.manifest.layer
        self.embodiment: str = index.manifest.embodiment
        self._ref = ClipReference.of(self.store.meta.iloc[index.rows])
        self.has_video = C.VIDEO in self.store.meta.columns and C.VIDEO_TIMESTAMP in self.store.meta.columns

    @classmethod
    def open(cls, index_dir: str | Path, store: Store | str | Path | None = None, *,
             layer: str | None = None) -> Retriever:
        """Open ``index_dir`` against ``store`` (default: the store recorded in its manifest)."""
        return cls(open_index(index_dir, store, layer=layer))

    def __repr__(self) -> str:
        m = self.index.manifest
        return (f"Retriever({m.kind.value} index of {m.n} {m.embodiment} samples, layer {m.layer!r}, "
                f"metric {m.metric.value}, store {str(self.store.path)!r})")

    @property
    def reference(self) -> pd.DataFrame:
        """Metadata of the indexed samples, row ``i`` = index id ``i``."""
        return self._ref.meta

    @property
    def clip_reference(self) -> ClipReference:
        """Episode keys, timestamps and episode bounds of the indexed samples (index id order)."""
        return self._ref

    # ------------------------------------------------------------------ queries by sample

    def locate(self, episode: int, frame: int, dataset: str | None = None) -> int:
        """Store row of the query frame ``(dataset, episode, frame)``, of another embodiment than the index's
        (:func:`probe.retrieval.queries.locate_row`: the rules and their errors)."""
        return locate_row(self.store.meta, self.store.path, self.embodiment, episode, frame, dataset)

    def rows_of(self, sample_ids: Sequence[str]) -> np.ndarray:
        """Store rows of ``sample_ids``; :class:`DataError` naming the ids not in the store."""
        ids = pd.Index(self.store.meta[C.SAMPLE_ID].astype(str))
        wanted = [str(s) for s in sample_ids]
        pos = ids.get_indexer(wanted)
        if (pos < 0).any():
            missing = [w for w, p in zip(wanted, pos) if p < 0]
            raise DataError(f"{len(missing)} sample id(s) not in store '{self.store.path}' (first: "
                            f"{missing[0]!r}); ids look like {ids[0]!r}")
        return pos.astype(np.int64)

    def search_frame(self, episode: int, frame: int, dataset: str | None = None, **kwargs) -> pd.DataFrame:
        """Clips for one stored frame; keyword arguments as in :meth:`search`."""
        row = self.locate(episode, frame, dataset)
        return self.search_samples([str(self.store.meta[C.SAMPLE_ID].iloc[row])], **kwargs)

    def search_samples(self, sample_ids: Sequence[str], k: int = 5, *, task: str | None = None,
                       per_episode: int | None = None, window: float = 1.0, **kwargs) -> pd.DataFrame:
        """Clips for stored samples (their latents of the index's layer).

        A query never retrieves clips of its own episode (so human queries against a
        human index find other episodes).
        """
        rows = self.rows_of(sample_ids)
        X = np.asarray(self.store.matrix(self.layer)[rows])
        meta = self.store.meta
        own = C.episode_keys(meta)[rows]
        out = self.search(X, k, task=task, per_episode=per_episode, window=window,
                          exclude_episodes=[{e} for e in own], **kwargs)
        out["query_sample_id"] = np.asarray([str(s) for s in sample_ids], dtype=object)[out["query"].to_numpy()]
        return out

    # ------------------------------------------------------------------ the search

    def allowed_ids(self, task: str | None) -> np.ndarray | None:
        """Index ids of ``task`` (None for all); :class:`ConfigError` listing tasks when absent."""
        if task is None:
            return None
        tasks = self._ref.meta[C.TASK].astype(str).to_numpy()
        ids = np.flatnonzero(tasks == task)
        if not len(ids):
            raise ConfigError(f"task '{task}' has no {self.embodiment} samples in the index; its tasks are: "
                              f"{', '.join(sorted(set(tasks.tolist())))}")
        return ids

    def search(self, queries: np.ndarray, k: int = 5, *, task: str | None = None,
               per_episode: int | None = None, window: float = 1.0,
               exclude_episodes: Sequence[Collection[str]] | None = None, nprobe: int | None = None,
               ef_search: int | None = None, rerank: int | None = None) -> pd.DataFrame:
        """The ``k`` best clips for each query latent.

        Parameters
        ----------
        queries : (nq, dim) or (dim,) float array of latents of the index's layer
        k : clips per query (at most the number of indexed samples)
        task : only clips of this task
        per_episode : at most this many clips from one episode (None: no limit)
        window : seconds of context before and after the matched frame (clamped to the episode)
        exclude_episodes : per query, episode keys ``'<dataset>:<episode>'`` to skip
            (:func:`probe.columns.episode_key`)
        nprobe, ef_search, rerank : override the index's search parameters

        Returns
        -------
        pandas.DataFrame
            One row per (query, clip) with :data:`RESULT_COLUMNS`, ``rank`` from 1,
            ``score`` higher-is-better (:func:`score_of`) and ``distance`` lower-is-better.
            A query gets fewer than ``k`` rows only when the index holds fewer distinct
            clips under the constraints.
        """
        chosen = self.select(queries, k, task=task, per_episode=per_episode, window=window,
                             exclude_episodes=exclude_episodes, nprobe=nprobe, ef_search=ef_search, rerank=rerank)
        return self._frame(chosen, window)

    def select(self, queries: np.ndarray, k: int = 5, *, task: str | None = None,
               per_episode: int | None = None, window: float = 1.0,
               exclude_episodes: Sequence[Collection[str]] | None = None, nprobe: int | None = None,
               ef_search: int | None = None, rerank: int | None = None) -> list[list[tuple[int, float]]]:
        """The clips :meth:`search` returns, as ``(index id, distance)`` pairs per query, best first
        (:func:`select_clips` on this index; for callers that keep their own arrays of the reference)."""
        q = np.asarray(queries, dtype=np.float32)
        if q.ndim == 1:
            q = q[None, :]
        allowed = self.allowed_ids(task)
        n_ref = self.index.n if allowed is None else len(allowed)
        if k < 1 or k > n_ref:
            raise ConfigError(f"k={k} must lie in 1..{n_ref}: the reference set ({self.embodiment}"
                              f"{f', task {task!r}' if task else ''}) holds {n_ref} samples; lower -k")

        def search(batch: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
            return self.index.search(batch, depth, allowed=allowed, nprobe=nprobe, ef_search=ef_search,
                                     rerank=rerank)

        return select_clips(search, q, k, self._ref, per_episode=per_episode, window=window,
                            exclude_episodes=exclude_episodes, n_candidates=n_ref)

    def _frame(self, chosen: list[list[tuple[int, float]]], window: float) -> pd.DataFrame:
        ref = self._ref
        qidx = np.asarray([qi for qi, clips in enumerate(chosen) for _ in clips], dtype=np.int64)
        ids = np.asarray([i for clips in chosen for i, _ in clips], dtype=np.int64)
        dist = np.asarray([d for clips in chosen for _, d in clips], dtype=np.float64)
        rank = np.asarray([r + 1 for clips in chosen for r in range(len(clips))], dtype=np.int64)
        m = ref.meta.iloc[ids].reset_index(drop=True)
        t = ref.t[ids]
        start, end = ref.span(ids, window)
        out = pd.DataFrame({
            "query": qidx, "query_sample_id": pd.Series([None] * len(ids), dtype=object), "rank": rank,
            "score": score_of(dist, self.index.metric), "distance": dist,
        })
        for col in (C.SAMPLE_ID, C.EMBODIMENT, C.DATASET, C.EPISODE, C.FRAME, C.TIMESTAMP, C.TASK, C.STAGE,
                    C.STAGE_PROGRESS, C.PROGRESS):
            out[col] = m[col].to_numpy()
        out["start"], out["end"] = start, end
        if self.has_video:
            offset = m[C.VIDEO_TIMESTAMP].to_numpy(dtype=np.float64) - t
            out[C.VIDEO] = m[C.VIDEO].astype(object).where(m[C.VIDEO].notna(), None).to_numpy()
            out["video_start"], out["video_end"] = start + offset, end + offset
        else:
            out[C.VIDEO] = pd.Series([None] * len(ids), dtype=object)
            out["video_start"] = out["video_end"] = np.nan
        out["store_row"] = self.index.rows[ids]
        return out[list(RESULT_COLUMNS)]

