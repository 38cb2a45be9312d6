"""The prepared data the app reads: :class:`Prepared` and its checkpoints, views and clips.

All of it is computed once by :func:`dashboard.state.prepare` before the server
starts; callbacks only read it. A :class:`Checkpoint` maps map points to store rows
and back, so clicks map to rows by point index.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dashboard.state.viewstate import FILTERS, Choices, ViewState
from probe import columns as C
from probe.store.series import default_layer
from probe.store.store import Store


@dataclass(frozen=True)
class Clip:
    """A human clip near a query point: the matched moment and a window around it."""

    row: int
    sample_id: str
    episode: str
    task: str
    stage: str
    score: float
    start: float
    end: float
    video_token: str | None = None
    video_start: float | None = None
    video_end: float | None = None


@dataclass(frozen=True, eq=False)
class Checkpoint:
    """One store (a checkpoint) and the rows drawn on its map.

    ``rows[p]`` is the store row of map point ``p`` (clicks map to rows through it);
    ``point_of_row[r]`` is the inverse (-1 for rows not drawn).
    """

    name: str
    store: Store
    rows: np.ndarray
    point_of_row: np.ndarray
    points: pd.DataFrame  # meta of the map points, in point order, plus an 'episode_key' column
    codes: dict[str, np.ndarray]  # colour/filter name -> category code per map point
    episode_points: dict[int, np.ndarray]  # episode code -> map points of that episode by frame
    video_code: np.ndarray  # per store row: index into video_tokens, -1 without video
    video_tokens: list[str]
    sample_index: pd.Index  # sample_id -> store row

    @property
    def meta(self) -> pd.DataFrame:
        return self.store.meta

    def row_tokens(self) -> np.ndarray:
        """Per store row, the media token of its video (None where no video is served)."""
        tokens = np.asarray(self.video_tokens + [None], dtype=object)
        return tokens[self.video_code]  # -1 picks the trailing None

    def row_of(self, sample_id: str | None) -> int | None:
        """Store row of a sample id, or None when unknown."""
        if sample_id is None:
            return None
        pos = self.sample_index.get_indexer([sample_id])[0]
        return None if pos < 0 else int(pos)

    def trajectory(self, row: int) -> np.ndarray:
        """Map points of the episode holding ``row``, in frame order (empty if not drawn)."""
        p = int(self.point_of_row[row]) if 0 <= row < len(self.point_of_row) else -1
        if p < 0:
            key = C.episode_keys(self.meta.iloc[[row]])[0]
            code = self.points.index[self.points["episode_key"] == key]
            p = int(code[0]) if len(code) else -1
            if p < 0:
                return np.empty(0, dtype=np.int64)
        return self.episode_points.get(int(self.codes["episode"][p]), np.empty(0, dtype=np.int64))


@dataclass(frozen=True, eq=False)
class View:
    """One (checkpoint, layer): the 2-D layout of the map points, the nearest-clip index and metrics."""

    checkpoint: int
    layer: str
    coords: np.ndarray  # (m, 2) float32, row-aligned with Checkpoint.rows
    method: str
    trustworthiness: float | None
    neighbours: Any  # NeighbourSearch
    metrics: dict[str, Any] | None
    coverage: list[str]


@dataclass(frozen=True, eq=False)
class Prepared:
    """Everything the app needs, computed once before the server starts."""

    checkpoints: list[Checkpoint]
    layers: list[str]
    views: Mapping[tuple[int, str], View]  # prepared on first use (dashboard.state.loading.Views)
    categories: dict[str, list[str]]  # task / stage / embodiment / episode / checkpoint -> ordered values
    media: dict[str, Path]  # random token of this process -> a video file inside its store's dataset roots
    k: int
    video_roots: tuple[str, ...] = ()  # the folders videos are served from (the stores' dataset roots)
    start_layer: str | None = None  # the layer the page opens on (None: default_layer of ``layers``)
    start_note: str | None = None  # the line saying the start layer was chosen by default among several

    @property
    def names(self) -> list[str]:
        return [ck.name for ck in self.checkpoints]

    def checkpoint(self, name: str) -> tuple[int, Checkpoint]:
        i = self.names.index(name)
        return i, self.checkpoints[i]

    def view(self, name: str, layer: str) -> View:
        return self.views[(self.names.index(name), layer)]

    def close(self) -> None:
        """Remove the temporary folder of a preparation without a cache (its FAISS indexes); idempotent."""
        close = getattr(self.views, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> Prepared:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def default_state(self) -> ViewState:
        # the first checkpoint in training order, at the start layer (the one default-layer rule unless one was named)
        return ViewState(store=self.names[0], layer=self.start_layer or default_layer(self.layers)[0])

    def frame_location(self, checkpoint: int, row: int) -> tuple[Path, float] | None:
        """Registered video file and time of a store row's frame (None without video or out of range)."""
        if not 0 <= checkpoint < len(self.checkpoints):
            return None
        ck = self.checkpoints[checkpoint]
        if not 0 <= row < len(ck.video_code) or ck.video_code[row] < 0:
            return None
        meta = ck.meta
        column = C.VIDEO_TIMESTAMP if C.VIDEO_TIMESTAMP in meta.columns else C.TIMESTAMP
        return self.media[ck.video_tokens[ck.video_code[row]]], float(meta[column].iat[row])

    def choices(self) -> Choices:
        return Choices(self.names, self.layers,
                       {k: self.categories[k] for k in FILTERS},
                       {ck.name: ck.sample_index for ck in self.checkpoints})
