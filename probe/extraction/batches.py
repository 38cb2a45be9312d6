"""The data side of extraction: the sample table, batches of it, and reading them ahead of the model.

:func:`open_data` opens every dataset once and builds the sample table (one row per
future latent, stages labelled, frames sampled). :func:`batches_of` cuts the rows
still to do into batches that never mix datasets, :func:`read_work` decodes one
batch, and :func:`prefetch` reads ahead in a background thread while the model runs.
"""

from __future__ import annotations

import contextvars
import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from probe import columns as C
from probe.errors import IN_MANIFEST, DataError
from probe.extraction.samples import DATASET_INDEX, ROW, OpenedData

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)



# -- the sample table ---------------------------------------------------------------------------










# -- reading batches ----------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Work:
    """One batch of samples of one dataset, read and ready for the model (or skipped episodes)."""

    dataset: int
    rows: np.ndarray
    meta: pd.DataFrame
    batch: Any
    skipped: tuple[tuple[int, str], ...] = ()
    n_asked: int = 0


def batches_of(samples: pd.DataFrame, todo: np.ndarray, batch_size: int) -> Iterator[pd.DataFrame]:
    """Sample rows still to do, in order, cut into batches that never mix datasets."""
    todo_rows = samples[todo]
    for _, group in todo_rows.groupby(DATASET_INDEX, sort=True):
        for start in range(0, len(group), batch_size):
            yield group.iloc[start : start + batch_size]


def concat_batches(parts: Sequence[Any]) -> Any:
    """One :class:`~probe.readers.base.Batch` from several (same dataset)."""
    from probe.readers.base import Batch

    if len(parts) == 1:
        return parts[0]

    def cat(values: list[Any]) -> Any:
        return None if any(v is None for v in values) else np.concatenate(values)

    keys = list(parts[0].images)
    return Batch(
        frames=np.concatenate([p.frames for p in parts]),
        timestamps=np.concatenate([p.timestamps for p in parts]),
        images={k: np.concatenate([p.images[k] for p in parts]) for k in keys},
        state=cat([p.state for p in parts]),
        action=cat([p.action for p in parts]),
        keypoints=cat([p.keypoints for p in parts]),
        video_paths=dict(parts[0].video_paths),
        video_timestamps={k: np.concatenate([p.video_timestamps[k] for p in parts]) for k in parts[0].video_timestamps
                          if all(k in p.video_timestamps for p in parts)},
    )


SKIP_HINT = "repair or remove the episode, or pass --skip-bad-episodes to skip it with a warning"


def read_work(opened: OpenedData, rows: pd.DataFrame, *, images: bool, size: tuple[int, int] | None,
              skip_bad: bool, bad: set[tuple[int, int]] | None = None, fix: str = SKIP_HINT) -> Work:
    """Read the frames of ``rows`` (one dataset), episode by episode.

    ``bad`` collects ``(dataset, episode)`` pairs already skipped, so that later
    batches of a bad episode are dropped without trying again. ``fix`` ends the error
    raised for an unreadable episode (without ``skip_bad``): what the caller can do.
    """
    d = int(rows[DATASET_INDEX].iloc[0])
    bad = set() if bad is None else bad
    batch, keep, skipped = read_frames(opened.datasets[d], opened.names[d], rows[C.EPISODE].to_numpy(np.int64),
                                       rows[C.FRAME].to_numpy(np.int64), images=images, size=size,
                                       skip_bad=skip_bad, bad={e for (b, e) in bad if b == d}, fix=fix)
    for episode, msg in skipped:
        log.warning("%s; skipped (--skip-bad-episodes)", msg, extra=IN_MANIFEST)
        bad.add((d, episode))
    return work_of(d, rows, batch, keep, skipped)


def work_of(d: int, rows: pd.DataFrame, batch: Any, keep: np.ndarray,
            skipped: Sequence[tuple[int, str]]) -> Work:
    """The :class:`Work` of ``rows`` from what :func:`read_frames` returned for them."""
    if batch is None:
        return Work(d, np.empty(0, np.int64), rows.iloc[:0], None, tuple(skipped), len(rows))
    meta = rows.iloc[keep]
    return Work(d, meta[ROW].to_numpy(np.int64), meta, batch, tuple(skipped), len(rows))


def read_frames(ds: Any, name: str, episodes: np.ndarray, frames: np.ndarray, *, images: bool,
                size: tuple[int, int] | None, skip_bad: bool,
                bad: set[int] | frozenset[int] = frozenset(),
                fix: str = SKIP_HINT) -> tuple[Any, np.ndarray, list[tuple[int, str]]]:
    """Read ``frames`` of ``episodes`` (parallel arrays, one dataset ``ds`` named ``name``), episode by episode.

    Returns ``(batch, keep, skipped)``: one :class:`~probe.readers.base.Batch` (None
    when nothing was read), the positions of the rows it holds, in its order, and
    ``(episode, message)`` for episodes skipped as unreadable under ``skip_bad`` (an
    unreadable episode otherwise raises :class:`DataError`). Episodes in ``bad`` are
    dropped without reading. Touches nothing but ``ds``, so it also runs in reader
    processes (:mod:`probe.extraction.readpool`).
    """
    uniq, first = np.unique(episodes, return_index=True)
    parts, keep, skipped = [], [], []
    for episode in uniq[np.argsort(first, kind="stable")].tolist():  # episodes in order of appearance
        if episode in bad:
            continue
        idx = np.flatnonzero(episodes == episode)
        wanted = frames[idx]
        try:
            batch = ds.read(episode, wanted, images=images, size=size)
            if len(batch) != len(wanted):
                raise DataError(f"the reader returned {len(batch)} frames for {len(wanted)} asked")
        except Exception as exc:
            msg = (f"dataset '{name}' episode {episode}: cannot read frames "
                   f"{int(wanted[0])}..{int(wanted[-1])} ({type(exc).__name__}: {exc})")
            if not skip_bad:
                raise DataError(f"{msg}; {fix}") from exc
            skipped.append((episode, msg))
            continue
        parts.append(batch)
        keep.append(idx)
    if not parts:
        return None, np.empty(0, np.int64), skipped
    return concat_batches(parts), np.concatenate(keep), skipped


def prefetch(items: Iterable[Any], fn: Callable[[Any], Any], depth: int = 2) -> Iterator[Any]:
    """``fn(item)`` for each item, computed ``depth`` items ahead in a background thread.

    ``fn`` runs in a copy of the caller's context (an active frame cache applies there too).
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="probe-read") as pool:
        pending: deque[Future[Any]] = deque()
        try:
            for item in items:
                pending.append(pool.submit(contextvars.copy_context().run, fn, item))
                if len(pending) > depth:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for fut in pending:
                fut.cancel()
