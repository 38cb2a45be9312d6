"""Shared helpers of the dashboard's security tests (issue #16): two datasets with real H.264 videos, stores that
name them and record the datasets' roots, the dashboard prepared on those stores, and a free local port."""

from __future__ import annotations

import socket
from pathlib import Path

from conftest import clustered_latents, synthetic_meta
from dashboard.state.loading import prepare
from probe import columns as C
from probe.store.writer import write_store
from test_dashboard_data import FPS, light_metrics, write_video

SECRET = b"TOP-SECRET-do-not-serve"
LAYER = "trunk.block0"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def video_world(tmp: Path, *, old_style: bool = False) -> tuple[Path, dict, object]:
    """Two datasets (``human-data``, ``robot-data``) under ``tmp/data`` with one video per episode,
    and the sample table naming them: relative to the roots, or (``old_style``) absolute."""
    meta = synthetic_meta(n_episodes=1, frames=10)
    data = tmp / "data"
    values = {}
    for i, (ds, ep) in enumerate(sorted(set(zip(meta[C.DATASET], meta[C.EPISODE])))):
        (data / ds / "videos").mkdir(parents=True, exist_ok=True)
        video = write_video(data / ds / "videos" / f"ep{ep}.mp4", 10, seed=i)
        values[(ds, ep)] = str(video) if old_style else f"videos/ep{ep}.mp4"
    meta[C.VIDEO] = [values[(d, e)] for d, e in zip(meta[C.DATASET], meta[C.EPISODE])]
    meta[C.VIDEO_TIMESTAMP] = meta[C.FRAME] / FPS
    return data, values, meta


def write_video_store(path: Path, meta, datasets: list[dict]):
    layers = {LAYER: clustered_latents(meta, dim=8, seed=1)}
    return write_store(path, meta, layers, provenance={"checkpoint": {"step": 100}, "datasets": datasets})


def dataset_roots(data: Path) -> list[dict]:
    return [{"name": ds, "root": str((data / ds).resolve())} for ds in ("human-data", "robot-data")]


def prepare_dashboard(paths, **kw):
    return prepare(list(paths), layers=LAYER, k=3, method="pca", metrics_config=light_metrics(), **kw)
