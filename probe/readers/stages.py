"""Task-stage labels per frame: from the data, from a sidecar file, or from episode progress.

Sources, chosen by a :class:`StageSpec` parsed from a string:

- ``column:NAME`` — a per-frame column of the dataset (e.g. ``stage``).
- ``subtasks`` — LeRobot sub-task segments (``subtask_names``, ``subtask_start_frames``
  inclusive, ``subtask_end_frames`` exclusive, per episode).
- ``file:PATH`` — a sidecar ``.csv`` / ``.json`` / ``.parquet`` with columns
  ``episode, start, end, stage`` in frames (start inclusive, end exclusive), or
  ``episode, start_s, end_s, stage`` in seconds (converted with the episode's fps).
  An optional ``dataset`` column keeps the rows of the dataset of that name
  (reading and writing such files: :mod:`probe.readers.stage_files`).
- ``progress:N`` — N equal bins of episode progress, named ``p0 .. p{N-1}``.
- ``auto`` (default) — per episode, the first that exists of: a ``stage`` column,
  sub-task segments, else ``progress:5``.

Frames that no segment covers are labelled ``unlabelled`` (a warning counts them);
overlapping segments, segments outside the episode and episodes the dataset does not
have are errors. Each frame gets ``stage``, ``stage_progress`` (0..1 within its
contiguous run of one stage) and ``progress`` (0..1 within the episode).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np
import pandas as pd

from probe import columns as C
from probe.errors import IN_MANIFEST, ConfigError, DataError
from probe.readers.stage_files import read_stage_file

log = logging.getLogger(__name__)

UNLABELLED = "unlabelled"
DEFAULT_BINS = 5


class StageSource(str, Enum):
    """Where stage labels come from."""

    AUTO = "auto"
    COLUMN = "column"
    SUBTASKS = "subtasks"
    FILE = "file"
    PROGRESS = "progress"


@dataclass(frozen=True)
class StageSpec:
    """A stage source and its argument (column name, file path or number of bins)."""

    source: StageSource = StageSource.AUTO
    column: str = "stage"
    path: str | None = None
    bins: int = DEFAULT_BINS

    def __post_init__(self) -> None:
        object.__setattr__(self, "source", StageSource(self.source))
        if self.source is StageSource.FILE and not self.path:
            raise ConfigError("stage source 'file' needs a path: 'file:PATH'")
        if isinstance(self.bins, bool) or not isinstance(self.bins, (int, np.integer)) or self.bins < 1:
            raise ConfigError(f"progress bins must be an integer >= 1, got {self.bins!r}")

    @classmethod
    def parse(cls, text: str | StageSpec) -> StageSpec:
        """Parse ``auto``, ``column:NAME``, ``subtasks``, ``file:PATH`` or ``progress:N``."""
        if isinstance(text, StageSpec):
            return text
        kind, _, arg = str(text).strip().partition(":")
        try:
            source = StageSource(kind.strip().lower())
        except ValueError:
            raise ConfigError(
                f"unknown stage source {text!r}; expected one of: auto, column:NAME, subtasks, file:PATH, "
                "progress:N (e.g. --stages progress:5)"
            ) from None
        if source is StageSource.COLUMN:
            return cls(source, column=arg or "stage")
        if source is StageSource.FILE:
            return cls(source, path=arg)
        if source is StageSource.PROGRESS:
            if not arg:
                return cls(source)
            try:
                bins = int(arg)
            except ValueError:
                raise ConfigError(f"progress bins must be an integer, got {arg!r} (e.g. progress:5)") from None
            return cls(source, bins=bins)
        if arg:
            raise ConfigError(f"stage source '{source.value}' takes no argument, got {text!r}")
        return cls(source)

    def __str__(self) -> str:
        if self.source is StageSource.COLUMN:
            return f"column:{self.column}"
        if self.source is StageSource.FILE:
            return f"file:{self.path}"
        if self.source is StageSource.PROGRESS:
            return f"progress:{self.bins}"
        return self.source.value


# -- per-frame labels from segments --------------------------------------------------------------


def progress_of(length: int) -> np.ndarray:
    """Episode progress ``frame / (length - 1)`` in [0, 1] (0 for a one-frame episode)."""
    return np.arange(length, dtype=np.float64) / max(length - 1, 1)


def run_progress(stages: Sequence[str] | np.ndarray) -> np.ndarray:
    """Progress 0..1 of each frame within its contiguous run of equal stage labels."""
    stages = np.asarray(stages, dtype=object)
    n = len(stages)
    if n == 0:
        return np.zeros(0)
    change = np.flatnonzero(stages[1:] != stages[:-1]) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [n]])
    out = np.empty(n, dtype=np.float64)
    for a, b in zip(starts, ends):
        out[a:b] = np.arange(b - a) / max(b - a - 1, 1)
    return out


def progress_bins(length: int, bins: int = DEFAULT_BINS) -> np.ndarray:
    """Stage names ``p0 .. p{bins-1}`` by equal bins of episode progress."""
    k = np.minimum((progress_of(length) * bins).astype(np.int64), bins - 1)
    return np.array([f"p{i}" for i in range(bins)], dtype=object)[k]


def segments_to_stages(segments: Sequence[tuple[str, int, int]], length: int, *, episode: int | str = "?",
                       where: str = "") -> tuple[np.ndarray, int]:
    """Per-frame stage names from ``(name, start, end)`` segments; returns (stages, uncovered frames).

    Raises :class:`DataError` on overlapping segments, ``start >= end`` and
    segments outside ``[0, length]``. Uncovered frames are ``unlabelled``.
    """
    src = f" in {where}" if where else ""
    stages = np.full(length, UNLABELLED, dtype=object)
    ordered = sorted((str(n), int(s), int(e)) for n, s, e in segments)
    ordered.sort(key=lambda seg: seg[1])
    for name, start, end in ordered:
        if start >= end or start < 0 or end > length:
            raise DataError(
                f"episode {episode}{src}: segment '{name}' [{start}, {end}) is empty or outside the episode's "
                f"frames [0, {length}); segments are (start inclusive, end exclusive) frame indices"
            )
    for (n1, s1, e1), (n2, s2, e2) in zip(ordered, ordered[1:]):
        if s2 < e1:
            raise DataError(
                f"episode {episode}{src}: segments '{n1}' [{s1}, {e1}) and '{n2}' [{s2}, {e2}) overlap; "
                "each frame may belong to one stage only (end frames are exclusive)"
            )
    for name, start, end in ordered:
        stages[start:end] = name
    return stages, int(np.sum(stages == UNLABELLED))


# -- the labeller --------------------------------------------------------------------------------


@dataclass
class StageLabeller:
    """Labels the frames of a dataset's episodes according to a :class:`StageSpec`.

    Build it with :func:`stage_labeller`; sidecar files are read and checked
    against the dataset once. ``warnings`` collects notes (uncovered frames ...);
    ``sources`` the source used per episode.
    """

    dataset: Any
    spec: StageSpec
    segments: dict[int, list[tuple[str, int, int]]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    sources: dict[int, str] = field(default_factory=dict)

    def label(self, episode: Any, table: pd.DataFrame | None = None) -> pd.DataFrame:
        """The episode's frame table with ``stage``, ``stage_progress`` and ``progress`` set for every frame."""
        ep = self.dataset.episode(episode)
        table = (self.dataset.frame_table(ep) if table is None else table).reset_index(drop=True)
        labels = self.labels(ep, table)
        return pd.concat([table.drop(columns=[c for c in labels if c in table.columns]),
                          pd.DataFrame(labels, index=table.index)], axis=1)

    def labels(self, episode: Any, table: pd.DataFrame | Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``stage``, ``stage_progress`` and ``progress`` per frame of the episode's frame ``table``
        (a frame table, or its columns as arrays)."""
        ep = self.dataset.episode(episode)
        n = len(table[C.FRAME])
        stages, source = self._stages(ep, table, n)
        self.sources[ep.index] = source
        return {C.STAGE: np.asarray(stages, dtype=object).astype(str).astype(object) if n else np.array([], object),
                C.STAGE_PROGRESS: run_progress(stages), C.PROGRESS: progress_of(n)}

    def _stages(self, ep: Any, table: pd.DataFrame, n: int) -> tuple[np.ndarray, str]:
        spec = self.spec
        source = spec.source
        if source is StageSource.AUTO:
            if "stage" in table and pd.notna(np.asarray(table["stage"], dtype=object)).any():
                return self._from_column(ep, table, "stage"), "column:stage"
            if ep.stage_segments:
                return self._from_segments(ep, ep.stage_segments, n, "the dataset's subtask annotations"), "subtasks"
            return progress_bins(n, DEFAULT_BINS), f"progress:{DEFAULT_BINS}"
        if source is StageSource.COLUMN:
            return self._from_column(ep, table, spec.column), str(spec)
        if source is StageSource.SUBTASKS:
            if not ep.stage_segments:
                raise DataError(
                    f"dataset '{self.dataset.info.name}', episode {ep.index} has no subtask annotations "
                    "(subtask_names / subtask_start_frames / subtask_end_frames); use --stages auto, "
                    "file:PATH or progress:N"
                )
            return self._from_segments(ep, ep.stage_segments, n, "the dataset's subtask annotations"), str(spec)
        if source is StageSource.FILE:
            segs = self.segments.get(ep.index)
            if not segs:
                self._warn(f"episode {ep.index} has no segments in stage file '{spec.path}'; "
                           f"all {n} frames are '{UNLABELLED}'")
                return np.full(n, UNLABELLED, dtype=object), str(spec)
            return self._from_segments(ep, segs, n, f"stage file '{spec.path}'"), str(spec)
        return progress_bins(n, spec.bins), str(spec)

    def _from_column(self, ep: Any, table: pd.DataFrame, column: str) -> np.ndarray:
        if column not in table:
            raise DataError(
                f"dataset '{self.dataset.info.name}', episode {ep.index} has no per-frame column '{column}'; "
                f"columns: {list(table)} (choose one with --stages column:NAME)"
            )
        values = np.asarray(table[column], dtype=object)
        missing = pd.isna(values)
        out = values.astype(str).astype(object)
        out[missing] = UNLABELLED
        if missing.any():
            self._warn(f"episode {ep.index}: {int(missing.sum())} frames have no '{column}' value; "
                       f"labelled '{UNLABELLED}'")
        return out

    def _from_segments(self, ep: Any, segs: Sequence[tuple[str, int, int]], n: int, where: str) -> np.ndarray:
        stages, uncovered = segments_to_stages(segs, n, episode=ep.index, where=where)
        if uncovered:
            self._warn(f"episode {ep.index}: {uncovered} of {n} frames lie in no segment of {where}; "
                       f"labelled '{UNLABELLED}'")
        return stages

    def _warn(self, message: str) -> None:
        log.warning("%s", message, extra=IN_MANIFEST)
        self.warnings.append(message)


def stage_labeller(dataset: Any, spec: StageSpec | str = "auto", *, unit: str | None = None) -> StageLabeller:
    """A :class:`StageLabeller` for ``dataset``; a sidecar file is read and validated here.

    Raises :class:`DataError` when the file refers to episodes the dataset does not have.
    """
    spec = StageSpec.parse(spec)
    labeller = StageLabeller(dataset, spec)
    if spec.source is StageSource.FILE:
        labeller.segments = _file_segments(dataset, spec.path, unit)
    return labeller


def label_stages(dataset: Any, episode: Any, spec: StageSpec | str = "auto") -> pd.DataFrame:
    """Frame table of one episode with stage labels (see :class:`StageLabeller`)."""
    return stage_labeller(dataset, spec).label(episode)


def _file_segments(dataset: Any, path: str, unit: str | None) -> dict[int, list[tuple[str, int, int]]]:
    df = read_stage_file(path, unit=unit)
    name = dataset.info.name
    if "dataset" in df.columns:
        df = df[df["dataset"].astype(str) == name]
    known = {ep.index: ep for ep in dataset.episodes()}
    all_known = set(dataset.all_episode_indices()) if hasattr(dataset, "all_episode_indices") else set(known)
    episodes = pd.to_numeric(df["episode"], errors="coerce")
    if episodes.isna().any():
        raise DataError(f"stage file '{path}': column 'episode' must hold integer episode indices, "
                        f"got {df.loc[episodes.isna(), 'episode'].iloc[0]!r}")
    unknown = sorted(set(episodes.astype(np.int64)) - set(all_known))
    if unknown:
        shown = sorted(all_known)
        raise DataError(
            f"stage file '{path}' refers to episode(s) {unknown[:10]} that dataset '{name}' does not have "
            f"(its episodes: {shown[:10]}{' ...' if len(shown) > 10 else ''}); fix the episode column or add a "
            "'dataset' column to keep only this dataset's rows"
        )
    out: dict[int, list[tuple[str, int, int]]] = {}
    seconds = "start_s" in df.columns
    for ep_index, stage, a, b in zip(episodes.astype(np.int64), df["stage"].astype(str),
                                     df["start_s" if seconds else "start"], df["end_s" if seconds else "end"]):
        ep = known.get(int(ep_index))
        if ep is None:  # a skipped (bad) episode of the dataset
            continue
        if seconds:
            a, b = int(round(float(a) * ep.fps)), int(round(float(b) * ep.fps))
            b = min(b, ep.length)  # rounding may pass the end by a frame
        out.setdefault(int(ep_index), []).append((stage, int(a), int(b)))
    for ep_index, segs in out.items():  # fail early on overlaps and bounds
        segments_to_stages(segs, known[ep_index].length, episode=ep_index, where=f"stage file '{path}'")
    return out


# -- reports -------------------------------------------------------------------------------------


def stages_by_embodiment(meta: pd.DataFrame) -> dict[str, list[str]]:
    """Stage name -> sorted embodiments that have samples of it."""
    grouped = meta.groupby(C.STAGE, sort=False)[C.EMBODIMENT].unique()
    return {str(stage): sorted(map(str, embs)) for stage, embs in grouped.items()}


def stages_by_embodiment_report(meta: pd.DataFrame) -> list[str]:
    """Warnings for stages seen by only one embodiment (empty with fewer than two embodiments).

    The extraction writes these into the store manifest: metrics per stage that
    compare embodiments are undefined for such stages.
    """
    embodiments = sorted(map(str, meta[C.EMBODIMENT].unique()))
    if len(embodiments) < 2:
        return []
    counts = meta.groupby([C.STAGE, C.EMBODIMENT], sort=False).size()
    out = []
    for stage, embs in stages_by_embodiment(meta).items():
        if len(embs) == 1:
            others = [e for e in embodiments if e != embs[0]]
            out.append(f"stage '{stage}' is seen only by embodiment '{embs[0]}' ({int(counts[(stage, embs[0])])} "
                       f"samples), not by {others}; cross-embodiment metrics for this stage are undefined "
                       "(align stage names across datasets, e.g. with a stage file)")
    return out
