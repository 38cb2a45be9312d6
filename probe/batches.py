"""The data side of extraction: the sample table, batches of it, and reading them ahead of the model.

:func:`open_data` opens every dataset once and builds the sample table (one row per
future latent, stages labelled, frames sampled). :func:`batches_of` cuts the rows
still to do into batches that never mix datasets, :func:`read_work` decodes one
batch, and :func:`prefetch` reads ahead in a background thread while the model runs.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from probe import columns as C
from probe.errors import DataError

if TYPE_CHECKING:
    from probe.extract import DataSpec, ExtractConfig

log = logging.getLogger(__name__)

# internal columns of the sample table (not written to the store)
_DS = "_dataset_index"
_POS = "_row"


# -- the sample table ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class OpenedData:
    """The opened datasets, their sample table (one row per future latent) and warnings."""

    datasets: tuple[Any, ...]
    embodiments: tuple[str, ...]
    names: tuple[str, ...]
    samples: pd.DataFrame
    warnings: tuple[str, ...]

    @functools.cached_property
    def meta(self) -> pd.DataFrame:
        """The sample table without its internal columns: what each store's ``meta.parquet`` holds
        (built once, shared by every checkpoint's writer)."""
        return self.samples.drop(columns=[_DS, _POS]).reset_index(drop=True)


def open_data(config: ExtractConfig, progress: bool = False) -> OpenedData:
    """Open every dataset and build the sample table (stages labelled, frames sampled)."""
    datasets, embodiments, names, tables, warnings = [], [], [], [], []
    for i, spec in enumerate(config.data):
        if spec.dataset is not None:
            ds = spec.dataset
        else:
            ds = _open(spec, config.skip_bad_episodes)
        emb = spec.embodiment or ds.info.embodiment
        name = ds.info.name
        while name in names:
            name = f"{ds.info.name}-{len(names) + 1}"
        datasets.append(ds)
        embodiments.append(emb)
        names.append(name)
        warnings += [f"{name}: {w}" for w in getattr(ds, "warnings", [])]
        tables.append(_dataset_samples(ds, i, name, emb, config, warnings))
    samples = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    if samples.empty:
        raise DataError("no samples: the datasets have no usable episodes or frames after sampling; "
                        "check --stride / --fps / --max-frames and the dataset paths")
    samples[_POS] = np.arange(len(samples), dtype=np.int64)
    from probe.stages import stages_by_embodiment_report

    coverage = stages_by_embodiment_report(samples)
    for w in coverage:  # the readers log their own warnings
        log.warning(w)
    warnings += coverage
    return OpenedData(tuple(datasets), tuple(embodiments), tuple(names), samples, tuple(warnings))


def _open(spec: DataSpec, skip_bad: bool) -> Any:
    from probe.readers import Format, detect_format, open_dataset

    fmt = detect_format(spec.path)
    options = {"skip_bad_episodes": True} if skip_bad and fmt in (Format.LEROBOT_V2, Format.LEROBOT_V3) else {}
    return open_dataset(spec.path, embodiment=spec.embodiment, format=fmt, **options)


def _dataset_samples(ds: Any, index: int, name: str, embodiment: str, config: ExtractConfig,
                     warnings: list[str]) -> pd.DataFrame:
    from probe.sampling import SamplingConfig, sample_frames
    from probe.stages import stage_labeller

    sampling = SamplingConfig(config.stride, config.fps, config.max_frames)
    labeller = stage_labeller(ds, config.stages)
    episodes = ds.episodes()
    if config.max_episodes is not None:
        episodes = episodes[: config.max_episodes]
    parts: dict[str, list[np.ndarray]] = {}
    has_video = bool(ds.info.video_keys)
    columns_of = getattr(ds, "frame_columns", None)  # arrays without a DataFrame, where the reader has them
    for ep in episodes:
        table = columns_of(ep) if columns_of is not None else ds.frame_table(ep)
        labels = labeller.labels(ep, table)
        n_frames = len(table[C.FRAME])
        take = sample_frames(n_frames, ep.fps or ds.info.fps, sampling)
        frames = np.asarray(table[C.FRAME], dtype=np.int64)[take]
        n = len(frames)
        cols = {
            C.SAMPLE_ID: np.array([f"{name}/{ep.index}/{f}" for f in frames.tolist()], dtype=object),
            C.EPISODE: np.full(n, ep.index, dtype=np.int64),
            C.FRAME: frames,
            C.TIMESTAMP: np.asarray(table[C.TIMESTAMP], dtype=np.float64)[take],
            C.TASK: (np.asarray(table[C.TASK], dtype=object)[take].astype(str).astype(object) if C.TASK in table
                     else np.full(n, ep.task, dtype=object)),
            C.STAGE: labels[C.STAGE][take],
            C.PROGRESS: labels[C.PROGRESS][take],
            C.STAGE_PROGRESS: labels[C.STAGE_PROGRESS][take],
        }
        if C.VIDEO in table and C.VIDEO_TIMESTAMP in table:
            video = np.asarray(table[C.VIDEO], dtype=object)[take]
            cols[C.VIDEO] = np.where(pd.isna(video), "", video).astype(str).astype(object)
            cols[C.VIDEO_TIMESTAMP] = np.nan_to_num(np.asarray(table[C.VIDEO_TIMESTAMP], dtype=np.float64)[take])
        elif has_video:
            ref = ep.video.get(ds.info.video_keys[0])
            cols[C.VIDEO] = np.full(n, str(ref.path) if ref is not None and ref.path else "", dtype=object)
            cols[C.VIDEO_TIMESTAMP] = cols[C.TIMESTAMP] + float(ref.from_timestamp if ref else 0.0)
        for key, values in cols.items():
            parts.setdefault(key, []).append(values)
    warnings += [f"{name}: {w}" for w in labeller.warnings]
    if not parts:
        return pd.DataFrame()
    columns = {key: np.concatenate(values) for key, values in parts.items()}
    total = len(columns[C.SAMPLE_ID])
    columns[C.EMBODIMENT] = np.full(total, embodiment, dtype=object)
    columns[C.DATASET] = np.full(total, name, dtype=object)
    if C.VIDEO in columns:  # absolute, so that clips and thumbnails resolve from any working directory
        paths, inverse = np.unique(columns[C.VIDEO].astype(str), return_inverse=True)
        columns[C.VIDEO] = np.array([os.path.abspath(v) if v else "" for v in paths], dtype=object)[inverse.reshape(-1)]
    columns[_DS] = np.full(total, index, dtype=np.int64)
    order = [C.SAMPLE_ID, C.EMBODIMENT, C.DATASET, C.EPISODE, C.FRAME, C.TIMESTAMP, C.TASK, C.STAGE, C.PROGRESS,
             C.STAGE_PROGRESS, C.VIDEO, C.VIDEO_TIMESTAMP, _DS]
    return pd.DataFrame({key: columns[key] for key in order if key in columns})


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
    for _, group in todo_rows.groupby(_DS, sort=True):
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


def read_work(opened: OpenedData, rows: pd.DataFrame, *, images: bool, size: tuple[int, int] | None,
              skip_bad: bool, bad: set[tuple[int, int]] | None = None) -> Work:
    """Read the frames of ``rows`` (one dataset), episode by episode.

    ``bad`` collects ``(dataset, episode)`` pairs already skipped, so that later
    batches of a bad episode are dropped without trying again.
    """
    d = int(rows[_DS].iloc[0])
    bad = set() if bad is None else bad
    batch, keep, skipped = read_frames(opened.datasets[d], opened.names[d], rows[C.EPISODE].to_numpy(np.int64),
                                       rows[C.FRAME].to_numpy(np.int64), images=images, size=size,
                                       skip_bad=skip_bad, bad={e for (b, e) in bad if b == d})
    for episode, msg in skipped:
        log.warning("%s; skipped (--skip-bad-episodes)", msg)
        bad.add((d, episode))
    return work_of(d, rows, batch, keep, skipped)


def work_of(d: int, rows: pd.DataFrame, batch: Any, keep: np.ndarray,
            skipped: Sequence[tuple[int, str]]) -> Work:
    """The :class:`Work` of ``rows`` from what :func:`read_frames` returned for them."""
    if batch is None:
        return Work(d, np.empty(0, np.int64), rows.iloc[:0], None, tuple(skipped), len(rows))
    meta = rows.iloc[keep]
    return Work(d, meta[_POS].to_numpy(np.int64), meta, batch, tuple(skipped), len(rows))


def read_frames(ds: Any, name: str, episodes: np.ndarray, frames: np.ndarray, *, images: bool,
                size: tuple[int, int] | None, skip_bad: bool,
                bad: set[int] | frozenset[int] = frozenset()) -> tuple[Any, np.ndarray, list[tuple[int, str]]]:
    """Read ``frames`` of ``episodes`` (parallel arrays, one dataset ``ds`` named ``name``), episode by episode.

    Returns ``(batch, keep, skipped)``: one :class:`~probe.readers.base.Batch` (None
    when nothing was read), the positions of the rows it holds, in its order, and
    ``(episode, message)`` for episodes skipped as unreadable under ``skip_bad`` (an
    unreadable episode otherwise raises :class:`DataError`). Episodes in ``bad`` are
    dropped without reading. Touches nothing but ``ds``, so it also runs in reader
    processes (:mod:`probe.readpool`).
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
                raise DataError(f"{msg}; repair or remove the episode, or pass --skip-bad-episodes "
                                "to skip it with a warning") from exc
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
