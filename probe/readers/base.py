"""The reader contract: what every dataset format gives the extraction.

A :class:`Dataset` lists its episodes (:class:`EpisodeInfo`), gives a per-frame
table of an episode (frame, timestamp, task, optional stage, scalar columns) and
reads the arrays of chosen frames as one :class:`Batch` (images decoded lazily,
only those frames, one forward decode per episode and video).
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
from collections.abc import Iterable, Mapping
from typing import Any
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pandas as pd

from probe import columns as C
from probe.errors import DataError


class Format(str, Enum):
    """Dataset formats the readers understand."""

    LEROBOT_V3 = "lerobot_v3"
    LEROBOT_V2 = "lerobot_v2"
    HDF5 = "hdf5"
    KEYPOINTS = "keypoints"


@dataclass(frozen=True)
class VideoRef:
    """Where an episode's frames of one video key live.

    ``path`` is ``None`` when the file is missing. The episode's frame at episode
    time ``t`` is at file time ``from_timestamp + t``.
    """

    path: str | None
    from_timestamp: float = 0.0
    to_timestamp: float | None = None


class _Frozen:
    """Pickling for frozen dataclasses holding read-only mappings (``MappingProxyType`` does not pickle):
    rebuilt from plain dicts through ``__init__``, which wraps them again."""

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        values = (getattr(self, f.name) for f in dataclasses.fields(self))  # type: ignore[arg-type]
        return type(self), tuple(dict(v) if isinstance(v, MappingProxyType) else v for v in values)


@dataclass(frozen=True)
class DatasetInfo(_Frozen):
    """What a dataset is: name, format, frame rate, embodiment, features, fingerprint.

    ``features`` maps feature names to shapes; ``video_keys`` are the camera
    streams that can be decoded; ``fingerprint`` is a sha256 over the metadata
    files and the data files' names, sizes and modification times (cheap, and it
    changes when the data change).
    """

    name: str
    path: str
    format: Format
    fps: float
    embodiment: str
    robot_type: str
    features: Mapping[str, tuple[int, ...]]
    video_keys: tuple[str, ...]
    fingerprint: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "format", Format(self.format))
        object.__setattr__(self, "features", MappingProxyType(dict(self.features)))
        object.__setattr__(self, "video_keys", tuple(self.video_keys))


@dataclass(frozen=True)
class EpisodeInfo(_Frozen):
    """One episode: its index in the dataset, length in frames, task and media.

    ``stage_segments`` holds annotated ``(name, start, end)`` sub-task segments
    in frames (start inclusive, end exclusive), or is empty.
    """

    index: int
    length: int
    task: str
    fps: float
    video: Mapping[str, VideoRef] = field(default_factory=dict)
    stage_segments: tuple[tuple[str, int, int], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "video", MappingProxyType(dict(self.video)))
        object.__setattr__(self, "stage_segments",
                           tuple((str(n), int(s), int(e)) for n, s, e in self.stage_segments))


@dataclass(frozen=True, eq=False)
class Batch:
    """The arrays of some frames of one episode.

    Attributes
    ----------
    frames, timestamps : (n,) int64 frame indices and float64 episode times (s).
    images : video key -> uint8 ``(n, H, W, 3)`` RGB frames; empty without video.
    state : float32 ``(n, P)`` (``observation.state`` or flattened keypoints) or None.
    action : float32 ``(n, A)`` or None.
    keypoints : float32 ``(n, 21, 3)`` hand keypoints or None.
    video_paths : video key -> file path (the store's ``video`` column).
    video_timestamps : video key -> ``(n,)`` times within that file (``video_timestamp``).
    """

    frames: np.ndarray
    timestamps: np.ndarray
    images: Mapping[str, np.ndarray] = field(default_factory=dict)
    state: np.ndarray | None = None
    action: np.ndarray | None = None
    keypoints: np.ndarray | None = None
    video_paths: Mapping[str, str] = field(default_factory=dict)
    video_timestamps: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(len(self.frames))


class Dataset(abc.ABC):
    """A dataset opened by a reader. Subclasses set ``info`` and ``warnings``."""

    info: DatasetInfo
    warnings: list[str]

    @abc.abstractmethod
    def episodes(self) -> list[EpisodeInfo]:
        """All (usable) episodes, sorted by index."""

    @abc.abstractmethod
    def frame_table(self, episode: EpisodeInfo | int) -> pd.DataFrame:
        """One row per frame: ``episode, frame, timestamp, task``, optional ``stage``, scalar columns.

        Readers with video also give ``video`` and ``video_timestamp`` (file path and time
        within it of the first video key; empty path when the file is missing).
        """

    @abc.abstractmethod
    def read(self, episode: EpisodeInfo | int, frames: np.ndarray, *, images: bool = True,
             size: tuple[int, int] | None = None) -> Batch:
        """Arrays of ``frames`` of one episode; ``size=(H, W)`` resizes images, ``images=False`` skips decoding."""

    def all_episode_indices(self) -> list[int]:
        """Indices of every episode the dataset declares, including ones left out as bad."""
        return [ep.index for ep in self.episodes()]

    def episode(self, episode: EpisodeInfo | int) -> EpisodeInfo:
        """The :class:`EpisodeInfo` of an episode index (or the value itself)."""
        if isinstance(episode, EpisodeInfo):
            return episode
        by_index = self.__dict__.get("_episode_by_index")
        if by_index is None or int(episode) not in by_index:  # built once; rebuilt if episodes changed
            by_index = self.__dict__["_episode_by_index"] = {ep.index: ep for ep in self.episodes()}
        found = by_index.get(int(episode))
        if found is not None:
            return found
        known = [e.index for e in self.episodes()]
        raise DataError(
            f"episode {episode} not found in dataset '{self.info.name}'; it has {len(known)} episodes "
            f"(indices {known[:5]}{' ...' if len(known) > 5 else ''})"
        )

    def __len__(self) -> int:
        return len(self.episodes())

    def __repr__(self) -> str:
        i = self.info
        return (f"{type(self).__name__}(name={i.name!r}, format={i.format.value}, fps={i.fps:g}, "
                f"embodiment={i.embodiment!r}, episodes={len(self)}, video_keys={list(i.video_keys)})")


def default_embodiment(robot_type: str) -> str:
    """``'human'`` for robot_type ``human``, else ``'robot'``."""
    return C.HUMAN if str(robot_type).strip().lower() == C.HUMAN else C.ROBOT


def check_frames(frames: np.ndarray | Iterable[int], length: int, episode: int) -> np.ndarray:
    """Frame indices as int64, each in ``[0, length)``."""
    frames = np.asarray(frames, dtype=np.int64).reshape(-1)
    if frames.size and (frames.min() < 0 or frames.max() >= length):
        raise DataError(
            f"episode {episode}: frame indices must lie in [0, {length}), got range "
            f"[{frames.min()}, {frames.max()}]; sample frames with probe.extraction.sampling.sample_frames"
        )
    return frames


def fingerprint(root: Path, content_files: Iterable[Path], stat_files: Iterable[Path],
                extra: str = "") -> str:
    """sha256 over the bytes of ``content_files`` and the path/size/mtime of ``stat_files``.

    Paths enter relative to ``root``, so moving a dataset keeps its fingerprint.
    """
    root = Path(root)

    def rel(path: Path) -> str:
        try:
            return Path(path).relative_to(root).as_posix()
        except ValueError:
            return Path(path).name

    digest = hashlib.sha256(extra.encode())
    for path in sorted(Path(p) for p in content_files):
        digest.update(rel(path).encode())
        digest.update(path.read_bytes())
    for path in sorted(Path(p) for p in stat_files):
        st = path.stat()
        digest.update(f"{rel(path)}|{st.st_size}|{st.st_mtime_ns}".encode())
    return digest.hexdigest()
