"""The sample table: the opened datasets and one row per future latent (stages labelled, frames sampled)."""

from __future__ import annotations

import functools
import logging
import os
import shlex
from dataclasses import dataclass
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from probe import columns as C
from probe.errors import IN_MANIFEST, ConfigError, DataError
from probe.extraction.sampling import SamplingConfig, sample_frames
from probe.store.media import dataset_root, media_roots, store_video

if TYPE_CHECKING:
    from probe.extraction.config import DataSpec

log = logging.getLogger(__name__)


# internal columns of the sample table (not written to the store)
DATASET_INDEX = "_dataset_index"
ROW = "_row"


@dataclass(frozen=True, eq=False)
class OpenedData:
    """The opened datasets, their sample table (one row per future latent) and warnings."""

    datasets: tuple[Any, ...]
    embodiments: tuple[str, ...]
    names: tuple[str, ...]
    samples: pd.DataFrame
    warnings: tuple[str, ...]
    relabels: tuple[dict[str, Any] | None, ...] = ()  # per dataset: the task it was given and its own tasks

    @functools.cached_property
    def meta(self) -> pd.DataFrame:
        """The sample table without its internal columns: what each store's ``meta.parquet`` holds
        (built once, shared by every checkpoint's writer)."""
        return self.samples.drop(columns=[DATASET_INDEX, ROW]).reset_index(drop=True)


def open_data(data: Sequence[DataSpec], sampling: SamplingConfig = SamplingConfig(), *,
              skip_bad_episodes: bool = False, progress: bool = False) -> OpenedData:
    """Open every dataset and build the sample table (stages labelled, frames sampled, tasks relabelled by
    ``sampling.tasks``)."""
    datasets, embodiments, names, tables, warnings, relabels = [], [], [], [], [], []
    for spec in data:
        ds = spec.dataset if spec.dataset is not None else _open(spec, skip_bad_episodes)
        name = ds.info.name
        while name in names:
            name = f"{ds.info.name}-{len(names) + 1}"
        datasets.append(ds)
        embodiments.append(spec.embodiment or ds.info.embodiment)
        names.append(name)
        warnings += [f"{name}: {w}" for w in getattr(ds, "warnings", [])]
    _check_embodiments("--task", sampling.tasks, embodiments, "TEXT")  # before any frame is listed
    _check_embodiments("--stages", sampling.embodiment_stages, embodiments, "SPEC")
    for i, (ds, name, emb) in enumerate(zip(datasets, names, embodiments)):
        table = _dataset_samples(ds, i, name, emb, sampling, warnings)
        relabels.append(_relabel_task(table, sampling.tasks.get(emb)))
        tables.append(table)
    for note in relabel_notes([{"embodiment": e, "task_relabel": r} for e, r in zip(embodiments, relabels)]):
        log.info(note)
    samples = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    if samples.empty:
        raise DataError("no samples: the datasets have no usable episodes or frames after sampling; "
                        "check --stride / --fps / --max-frames and the dataset paths")
    samples[ROW] = np.arange(len(samples), dtype=np.int64)
    from probe.readers.stages import stages_by_embodiment_report

    coverage = stages_by_embodiment_report(samples)
    for w in coverage:  # the readers log their own warnings
        log.warning("%s", w, extra=IN_MANIFEST)
    warnings += coverage
    return OpenedData(tuple(datasets), tuple(embodiments), tuple(names), samples, tuple(warnings), tuple(relabels))


# at most this many of a dataset's own tasks are recorded in the provenance of a relabel (the count always)
RELABEL_FROM_MAX = 50


def _check_embodiments(flag: str, given: dict[str, str], embodiments: Sequence[str], value: str) -> None:
    """Refuse a ``flag EMBODIMENT=...`` whose embodiment no dataset carries."""
    unknown = [e for e in given if e not in embodiments]
    if unknown:
        present = ", ".join(dict.fromkeys(embodiments))
        raise ConfigError(f"{flag} {unknown[0]}=...: no dataset is labelled '{unknown[0]}' (the --data embodiments: "
                          f"{present}); name one of them ({flag} {embodiments[0]}={value}) or label a dataset "
                          f"--data {unknown[0]}=PATH")


def _relabel_task(table: pd.DataFrame, task: str | None) -> dict[str, Any] | None:
    """Give every row of a dataset's sample table ``task`` (None: keep its own); returns what the provenance
    records of it: ``{"to": task, "from": [its own tasks], "from_count": n}``."""
    if task is None or table.empty:
        return None
    own = list(dict.fromkeys(table[C.TASK].astype(str).tolist()))
    table[C.TASK] = task
    return {"to": task, "from": own[:RELABEL_FROM_MAX], "from_count": len(own)}


def relabel_notes(datasets: Sequence[dict[str, Any]]) -> list[str]:
    """One line per relabelled embodiment, from provenance entries of datasets (``embodiment``, ``task_relabel``):
    ``"robot: 5 tasks relabelled as 'pick'"`` or ``"human: task 'hand' relabelled as 'pick'"``."""
    own: dict[tuple[str, str], dict[str, None]] = {}
    most: dict[tuple[str, str], int] = {}  # the most tasks one dataset had (its recorded list may be cut)
    for entry in datasets:
        relabel = entry.get("task_relabel")
        if relabel:
            key = (str(entry.get("embodiment")), str(relabel["to"]))
            own.setdefault(key, {}).update(dict.fromkeys(relabel["from"]))
            most[key] = max(most.get(key, 0), int(relabel.get("from_count", len(relabel["from"]))))
    notes = []
    for (embodiment, task), tasks in own.items():
        n = max(len(tasks), most[(embodiment, task)])
        if n == 1:
            notes.append(f"{embodiment}: task {next(iter(tasks))!r} relabelled as {task!r}")
        else:
            shown = ", ".join(repr(t) for t in list(tasks)[:3]) + (", ..." if n > 3 else "")
            notes.append(f"{embodiment}: {n} tasks relabelled as {task!r} ({shown})")
    return notes


def unshared_task_note(meta: pd.DataFrame, datasets: Sequence[dict[str, Any]] = (), human: str = C.HUMAN
                       ) -> str | None:
    """One line when the ``human`` samples and those of another embodiment share no task name (the metrics that
    pair human and robot samples by task, and retrieval's task matches, are then undefined), saying how to fix it
    with ``--task``; None when each other embodiment shares a task with the human, or there is no human.
    ``datasets``: provenance entries (``embodiment``, ``task_relabel``), for the task already given with --task."""
    tasks = {str(e): list(dict.fromkeys(t.astype(str))) for e, t in meta.groupby(C.EMBODIMENT, sort=True, observed=True)[C.TASK]}
    if human not in tasks or len(tasks) < 2:
        return None
    apart = [e for e in tasks if e != human and not set(tasks[e]) & set(tasks[human])]
    if not apart:
        return None

    def listed(e: str) -> str:
        return ", ".join(repr(t) for t in tasks[e][:2]) + (", ..." if len(tasks[e]) > 2 else "")

    given = {str(d.get("embodiment")): str(d["task_relabel"]["to"]) for d in datasets if d.get("task_relabel")}
    text = next(iter(given.values()), "TEXT")
    fix = " ".join(f"--task {e}={shlex.quote(text)}" for e in (human, *apart) if given.get(e) != text)
    shown = "; ".join(f"{e}: {listed(e)}" for e in (human, *apart))
    return (f"{human} and {', '.join(apart)} share no task name ({shown}): paired and retrieval metrics, which "
            f"match samples by task, will be undefined; give every embodiment the same task ({fix}"
            f"{' too' if given else ''})")


def dataset_provenance(opened: OpenedData, i: int) -> dict[str, Any]:
    """A dataset's entry of the provenance: its name and absolute ``root`` (rows' videos are relative to it)."""
    ds = opened.datasets[i]
    root = dataset_root(ds.info.path)
    entry = {"name": opened.names[i], "path": str(Path(ds.info.path).resolve()) if ds.info.path else "",
             "root": str(root) if root is not None else None, "embodiment": opened.embodiments[i],
             "format": str(ds.info.format.value), "fingerprint": ds.info.fingerprint, "fps": float(ds.info.fps)}
    if i < len(opened.relabels) and opened.relabels[i] is not None:  # the task given with --task, and its own
        entry["task_relabel"] = opened.relabels[i]
    if root is not None and C.VIDEO in opened.samples.columns:
        videos = opened.samples.loc[opened.samples[DATASET_INDEX] == i, C.VIDEO].astype(str).unique()
        extra = media_roots(root, videos)
        if extra:  # videos reached through symlinks (e.g. a Hugging Face cache's blobs/) or kept elsewhere
            entry["media_roots"] = extra
    return entry


def _open(spec: DataSpec, skip_bad: bool) -> Any:
    from probe.readers.base import Format
    from probe.readers import detect_format, open_dataset

    fmt = detect_format(spec.path)
    options = {"skip_bad_episodes": True} if skip_bad and fmt in (Format.LEROBOT_V2, Format.LEROBOT_V3) else {}
    return open_dataset(spec.path, embodiment=spec.embodiment, format=fmt, **options)


def _roots(path: str) -> list[Path]:
    """The dataset's root as given (made absolute) and resolved: a video below either is recorded relative to it."""
    root = dataset_root(path)
    if root is None:
        return []
    given = Path(os.path.abspath(path))
    return [given.parent if given.is_file() else given, root]


def _dataset_samples(ds: Any, index: int, name: str, embodiment: str, sampling: SamplingConfig,
                     warnings: list[str]) -> pd.DataFrame:
    from probe.readers.stages import stage_labeller

    labeller = stage_labeller(ds, sampling.stages_of(embodiment))
    episodes = ds.episodes()
    if sampling.max_episodes is not None:
        episodes = episodes[: sampling.max_episodes]
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
    if C.VIDEO in columns:  # relative to the dataset's root (in the provenance): a moved dataset can be re-pointed
        paths, inverse = np.unique(columns[C.VIDEO].astype(str), return_inverse=True)
        roots = _roots(ds.info.path)
        columns[C.VIDEO] = np.array([store_video(v, roots) for v in paths], dtype=object)[inverse.reshape(-1)]
    columns[DATASET_INDEX] = np.full(total, index, dtype=np.int64)
    order = [C.SAMPLE_ID, C.EMBODIMENT, C.DATASET, C.EPISODE, C.FRAME, C.TIMESTAMP, C.TASK, C.STAGE, C.PROGRESS,
             C.STAGE_PROGRESS, C.VIDEO, C.VIDEO_TIMESTAMP, DATASET_INDEX]
    return pd.DataFrame({key: columns[key] for key in order if key in columns})
