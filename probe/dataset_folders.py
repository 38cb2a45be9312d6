"""Telling a dataset folder by its files alone, without a reader: what output checks need to keep out of datasets.

The readers (floor 3) recognise the same folders when opening them: a LeRobot dataset by ``meta/info.json``
(:func:`probe.readers.lerobot_meta.lerobot_version`) and a hand-keypoints recording by a ``.npy`` beside a video
(:func:`probe.readers.keypoints.is_keypoints`, whose reader then asks for a ``(T, 21, 3)`` array). These checks sit on the ground floor so that
:mod:`probe.validate` can refuse an output path inside either one; ``tests/test_output_inside_datasets.py``
checks that both agree.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

LEROBOT = "LeRobot dataset"
KEYPOINTS = "hand-keypoints recording"
KEYPOINT_VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi", ".webm")  # as probe.readers.keypoints.VIDEO_SUFFIXES


def is_lerobot_folder(path: str | Path) -> bool:
    """Whether ``path`` is a LeRobot dataset root (it holds ``meta/info.json``)."""
    try:
        return (Path(path) / "meta" / "info.json").is_file()
    except OSError:  # unreadable: not known to be one
        return False


def _holds_keypoints(npy: str) -> bool:
    """Whether the ``.npy`` file's header says ``(T, 21, 3)``, the readers' hand-keypoints shape (the array itself
    is not read)."""
    try:
        with open(npy, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape = read(f)[0]
    except (OSError, ValueError):  # unreadable or not a .npy: not known to be one
        return False
    return len(shape) == 3 and tuple(shape[1:]) == (21, 3)


def is_keypoints_folder(path: str | Path) -> bool:
    """Whether ``path`` is a hand-keypoints recording folder: a ``(T, 21, 3)`` ``.npy`` beside a video (the shape,
    read from the header, keeps a user's folder that merely holds an array and a clip from counting as one)."""
    arrays, video = [], False
    try:
        with os.scandir(path) as entries:
            for entry in entries:
                suffix = os.path.splitext(entry.name)[1]
                if suffix == ".npy":
                    arrays.append(entry.path)
                video = video or suffix in KEYPOINT_VIDEO_SUFFIXES
    except OSError:  # not a directory, unreadable: not known to be one
        return False
    return video and any(_holds_keypoints(npy) for npy in arrays)


def dataset_kind(path: str | Path) -> str | None:
    """``"LeRobot dataset"`` or ``"hand-keypoints recording"`` when the folder ``path`` is one, else None."""
    if is_lerobot_folder(path):
        return LEROBOT
    if is_keypoints_folder(path):
        return KEYPOINTS
    return None


def enclosing_dataset(path: str | Path) -> tuple[Path, str, bool] | None:
    """``(folder, kind, itself)`` of the dataset that ``path`` is (``itself``) or lies inside, or None.

    The path itself and each of its existing ancestors are looked at, both as written (made absolute) and with
    symbolic links resolved, so a link into a dataset counts as inside it; the nearest dataset is named. Every
    output write is checked (caches write many files into one folder), so a folder's listing is read again only
    when the folder changed (:func:`_keypoints_listing`); a LeRobot folder costs one stat."""
    written = Path(os.path.abspath(Path(path).expanduser()))
    try:
        real = written.resolve()
    except (OSError, RuntimeError):  # a symbolic link loop
        real = written
    seen: set[Path] = set()
    for start in (written, real):
        for folder in (start, *start.parents):
            if folder in seen:
                continue
            seen.add(folder)
            kind = _kind(folder)
            if kind is not None:
                return folder, kind, folder == start
    return None


def _kind(folder: Path) -> str | None:
    if is_lerobot_folder(folder):
        return LEROBOT
    try:
        changed = os.stat(folder).st_mtime_ns
    except OSError:  # not there: nothing to list
        return None
    return KEYPOINTS if os.path.isdir(folder) and _keypoints_listing(str(folder), changed) else None


@functools.lru_cache(maxsize=1024)
def _keypoints_listing(folder: str, changed: int) -> bool:
    """:func:`is_keypoints_folder`, remembered while the folder's modification time (``changed``) stays."""
    return is_keypoints_folder(folder)
