"""Dataset readers: LeRobot (v2.x, v3.0), HDF5 (robomimic / EgoMimic) and hand keypoints + video.

``open_dataset(path)`` detects the format and returns a :class:`Dataset` (see
:mod:`probe.readers.base` for the contract).
"""

from __future__ import annotations

from probe.readers.base import Batch, Dataset, DatasetInfo, EpisodeInfo, Format, VideoRef

__all__ = ["Batch", "Dataset", "DatasetInfo", "EpisodeInfo", "Format", "VideoRef"]
