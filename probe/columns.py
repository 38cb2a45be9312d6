"""Column names of ``meta.parquet``: the one place they are spelled.

Every sample (one row of a store) has the required columns below; media columns
are optional and let the report and dashboard show frames and clips.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

SAMPLE_ID = "sample_id"
EMBODIMENT = "embodiment"
DATASET = "dataset"
EPISODE = "episode"
FRAME = "frame"
TIMESTAMP = "timestamp"
TASK = "task"
STAGE = "stage"
PROGRESS = "progress"
STAGE_PROGRESS = "stage_progress"

# optional media columns
VIDEO = "video"
VIDEO_TIMESTAMP = "video_timestamp"

STRING_COLUMNS: tuple[str, ...] = (SAMPLE_ID, EMBODIMENT, DATASET, TASK, STAGE)
INT_COLUMNS: tuple[str, ...] = (EPISODE, FRAME)
FLOAT_COLUMNS: tuple[str, ...] = (TIMESTAMP, PROGRESS, STAGE_PROGRESS)
REQUIRED: tuple[str, ...] = (
    SAMPLE_ID,
    EMBODIMENT,
    DATASET,
    EPISODE,
    FRAME,
    TIMESTAMP,
    TASK,
    STAGE,
    PROGRESS,
    STAGE_PROGRESS,
)
MEDIA: tuple[str, ...] = (VIDEO, VIDEO_TIMESTAMP)

# conventional embodiment names (any string is allowed, e.g. a robot's name)
HUMAN = "human"
ROBOT = "robot"


def episode_key(dataset: object, episode: object) -> str:
    """The key of one episode, unique across datasets: ``'<dataset>:<episode>'``."""
    return f"{dataset}:{episode}"


def episode_keys(meta: pd.DataFrame) -> np.ndarray:
    """:func:`episode_key` of every row of a ``meta`` table (object array)."""
    return (meta[DATASET].astype(str) + ":" + meta[EPISODE].astype(str)).to_numpy()
