"""The retrieval tests' world: a store (2 tasks x 3 stages, 3 episodes each) whose human episodes share one
H.264 video whose frame i shows i in binary, and a FAISS index over it (shared by test_retrieval*.py)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import clustered_latents, synthetic_meta
from h264_videos import write_h264
from probe import columns as C
from probe.retrieval.index import build_index
from probe.store.writer import write_store

FPS = 10


def binary_frame(i: int) -> np.ndarray:
    """Frame i shows i in binary: 8 black/white stripes, 4 pixels wide."""
    img = np.zeros((24, 32, 3), np.uint8)
    for bit in range(8):
        if (i >> bit) & 1:
            img[:, 4 * bit : 4 * bit + 4] = 255
    return img


def write_video(path, n_frames: int) -> None:
    """A 32x24 H.264 video whose frame i shows i in binary (:func:`binary_frame`)."""
    write_h264(path, n_frames, binary_frame, fps=FPS)


def level(img: np.ndarray) -> int:
    """The frame index drawn into a decoded frame."""
    return sum(1 << bit for bit in range(8) if img[4:20, 4 * bit + 1 : 4 * bit + 3].mean() > 128)


@pytest.fixture
def world(tmp_path):
    """A store (2 tasks x 3 stages, 3 episodes each) whose human episodes share one video file, LeRobot style."""
    meta = synthetic_meta(n_episodes=3, frames=20)
    X = clustered_latents(meta, dim=16, noise=0.3)
    human = (meta[C.EMBODIMENT] == "human").to_numpy()
    video = tmp_path / "human.mp4"
    write_video(video, int(human.sum()))
    meta[C.VIDEO] = np.where(human, str(video), None)
    meta[C.VIDEO_TIMESTAMP] = np.where(human, np.cumsum(human) - 1, 0) / FPS  # episodes back to back
    store = write_store(tmp_path / "store", meta, {"trunk": X},
                        provenance={"datasets": [{"name": "human-data", "root": str(tmp_path.resolve())}]})
    build_index(store, "trunk", tmp_path / "idx")
    return store, tmp_path


def robot_sample(store, task="pick", ep=1, frame=10) -> str:
    return f"robot/{task}/{ep}/{frame}"
