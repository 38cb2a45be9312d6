"""Nearest human clips of a clicked point: :class:`NeighbourSearch` over a FAISS index of the human rows.

The index is built (or reopened from the cache) at prepare time; a click runs the
retriever's clip selection (:meth:`probe.retrieval.retriever.Retriever.select`) and
reads the clips' fields from arrays prepared once.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from dashboard.state.prepared import Clip
from probe import columns as C
from probe.cache.directory import keep_within, touch
from probe.store.store import Store

log = logging.getLogger(__name__)


class NeighbourSearch:
    """Nearest human clips of a store row: a :class:`probe.retrieval.retriever.Retriever` over the human rows.

    The FAISS index is built (or reopened from the cache) at prepare time; a click runs
    one single-vector search (a few ms at 100k rows), cached per row.
    """

    def __init__(self, retriever: Any | None, row_tokens: np.ndarray, k: int, window: float = 1.0) -> None:
        self.retriever, self.k, self.window = retriever, k, window
        self._cache: dict[tuple[int, int], list[Clip]] = {}
        self.n = 0
        if retriever is None:
            return
        store = retriever.store
        meta = store.meta
        self.n = len(meta)
        self.X = store.matrix(retriever.layer)
        self.episode = C.episode_keys(meta)
        self.ref = retriever.clip_reference  # index id -> episode key, time and episode bounds
        ref = self.ref.meta
        self.ref_rows = np.asarray(retriever.index.rows, dtype=np.int64)
        self.ref_sid = ref[C.SAMPLE_ID].astype(str).to_numpy()
        self.ref_task = ref[C.TASK].astype(str).to_numpy()
        self.ref_stage = ref[C.STAGE].astype(str).to_numpy()
        self.ref_token = np.full(len(ref), None, dtype=object)
        self.ref_vt = self.ref.t.copy()
        if C.VIDEO in ref.columns:
            self.ref_token = np.asarray(row_tokens, dtype=object)[self.ref_rows]
            if C.VIDEO_TIMESTAMP in ref.columns:
                self.ref_vt = ref[C.VIDEO_TIMESTAMP].to_numpy(np.float64)

    @classmethod
    def build(cls, store: Store, layer: str, row_tokens: np.ndarray, k: int, index_dir: Path) -> NeighbourSearch:
        """Open the cached index of the store's human rows, or build it into ``index_dir``.

        ``row_tokens``: per store row, the media token of its video (None without one).
        """
        from probe.errors import ProbeError
        from probe.retrieval.index import build_index
        from probe.retrieval.index_search import open_index
        from probe.retrieval.retriever import Retriever

        if not (store.meta[C.EMBODIMENT] == C.HUMAN).any():
            return cls(None, row_tokens, k)
        index = None
        if index_dir.exists():
            try:
                index = open_index(index_dir, store, layer=layer)
            except ProbeError as exc:  # a stale or broken cache entry (ours to delete): built again below
                log.info("rebuilding index %s (%s)", index_dir, exc)
                shutil.rmtree(index_dir, ignore_errors=True)
        if index is None:
            index = build_index(store, layer, index_dir, embodiment=C.HUMAN, overwrite=True)
            keep_within(index_dir.parent, keep=index_dir)
        else:
            touch(index_dir)
        return cls(Retriever(index), row_tokens, k)

    def clips(self, row: int, k: int | None = None) -> list[Clip]:
        """Top-k human clips for store row ``row``: one per human episode, never the query's own episode.

        The retriever's selection (:meth:`probe.retrieval.retriever.Retriever.select` with
        ``per_episode=1``), then the clips' fields from arrays prepared once (no data frames
        on the click path).
        """
        from probe.retrieval.retriever import score_of

        k = k or self.k
        if self.retriever is None or not 0 <= row < self.n:
            return []
        key = (row, k)
        if key in self._cache:
            return self._cache[key]
        q = np.asarray(self.X[[row]], dtype=np.float32)
        chosen = self.retriever.select(q, min(k, self.retriever.index.n), per_episode=1, window=self.window,
                                       exclude_episodes=[{self.episode[row]}])[0]
        ids = np.asarray([i for i, _ in chosen], dtype=np.int64)
        scores = score_of(np.asarray([d for _, d in chosen], dtype=np.float64), self.retriever.index.metric)
        starts, ends = self.ref.span(ids, self.window)
        out = []
        for i, score, start, end in zip(ids.tolist(), scores.tolist(), starts.tolist(), ends.tolist()):
            t, vt, token = self.ref.t[i], self.ref_vt[i], self.ref_token[i]
            out.append(Clip(int(self.ref_rows[i]), str(self.ref_sid[i]), str(self.ref.episode[i]),
                            str(self.ref_task[i]), str(self.ref_stage[i]), float(score), float(start), float(end),
                            token, vt - (t - start) if token else None, vt + (end - t) if token else None))
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[key] = out
        return out
