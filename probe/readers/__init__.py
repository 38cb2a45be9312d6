"""Dataset readers: LeRobot (v2.x, v3.0), HDF5 (robomimic / EgoMimic) and hand keypoints + video.

``open_dataset(path)`` detects the format and returns a :class:`Dataset` (see
:mod:`probe.readers.base` for the contract).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from probe.errors import DataError
from probe.readers.base import Dataset, Format

__all__ = ["detect_format", "open_dataset"]


def detect_format(path: str | Path) -> Format:
    """The :class:`Format` of a dataset path (raises :class:`DataError` when unknown)."""
    from probe.readers.hdf5 import is_hdf5
    from probe.readers.keypoints import is_keypoints
    from probe.readers.lerobot_meta import lerobot_version

    path = Path(path)
    if not path.exists():
        raise DataError(f"dataset path '{path}' does not exist")
    if path.is_dir():
        version = lerobot_version(path)
        if version is not None:
            return version
    if is_hdf5(path):
        return Format.HDF5
    if is_keypoints(path):
        return Format.KEYPOINTS
    raise DataError(
        f"cannot tell the format of '{path}'; --data takes a LeRobot v2.x/v3.0 folder (meta/info.json), "
        "an HDF5 file (robomimic/EgoMimic: data/demo_*/obs), or hand keypoints (a (T, 21, 3) .npy with a video "
        "beside it), or [EMBODIMENT=]PATH of one (in Python, open_dataset(..., format=...) forces a format)"
    )


def open_dataset(path: str | Path, embodiment: str | None = None, *, format: Format | str | None = None,
                 **options: Any) -> Dataset:
    """Open a dataset in place, detecting its format.

    Parameters
    ----------
    path : a LeRobot dataset folder, an HDF5 file, or a keypoint ``.npy`` / its folder.
    embodiment : embodiment label of every sample; default from the data
        (``'human'`` for robot_type ``human`` and for keypoint recordings, else ``'robot'``).
    format : force a :class:`Format` instead of detecting it.
    **options : passed to the reader, e.g. ``skip_bad_episodes=True`` and
        ``video_keys=[...]`` (LeRobot), ``state_keys=[...]`` / ``task=...`` (HDF5),
        ``keypoints=NAME`` / ``state='wrist_aperture'`` (keypoints), ``name=...`` (all).
    """
    try:
        fmt = Format(format) if format is not None else detect_format(path)
    except ValueError as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"unknown format {format!r}; choose one of {[f.value for f in Format]}") from exc
    try:
        if fmt in (Format.LEROBOT_V2, Format.LEROBOT_V3):
            from probe.readers.lerobot import LeRobotDataset

            return LeRobotDataset(path, embodiment=embodiment, **options)
        if fmt is Format.HDF5:
            from probe.readers.hdf5 import HDF5Dataset

            return HDF5Dataset(path, embodiment=embodiment, **options)
        from probe.readers.keypoints import KeypointsDataset

        return KeypointsDataset(path, embodiment=embodiment, **options)
    except TypeError as exc:
        if "unexpected keyword" in str(exc):
            raise DataError(f"option not understood by the {fmt.value} reader: {exc}") from exc
        raise
