"""Small real stores for the dashboard tests: two checkpoints, two layers, H.264 videos per episode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from conftest import clustered_latents, synthetic_meta
from probe import columns as C
from probe.store.store import Store
from probe.store.writer import write_store

FPS = 10


def write_video(path: Path, frames: int, width: int = 64, height: int = 48, seed: int = 0) -> Path:
    """A tiny H.264 mp4 whose frame i has a distinct colour (so a decoded frame can be checked)."""
    import av

    rng = np.random.default_rng(seed)
    base = rng.integers(0, 200, size=3)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"g": "5"}
        for i in range(frames):
            img = np.zeros((height, width, 3), np.uint8)
            img[...] = (base + 4 * i) % 256
            img[: height // 4, : (i * width) // frames + 1] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def dashboard_meta(root: Path, n_episodes: int = 3, frames: int = 12, video: bool = True) -> pd.DataFrame:
    meta = synthetic_meta(n_episodes=n_episodes, frames=frames)
    if video:
        (root / "videos").mkdir(parents=True, exist_ok=True)
        paths = {}
        for i, (ds, ep) in enumerate(sorted(set(zip(meta[C.DATASET], meta[C.EPISODE])))):
            paths[(ds, ep)] = str(write_video(root / "videos" / f"{ds}-{ep}.mp4", frames, seed=i))
        meta[C.VIDEO] = [paths[(d, e)] for d, e in zip(meta[C.DATASET], meta[C.EPISODE])]
        meta[C.VIDEO_TIMESTAMP] = meta[C.FRAME] / FPS
    return meta


def make_stores(root: Path, n_episodes: int = 3, frames: int = 12, video: bool = True,
                checkpoints: int = 2) -> list[Store]:
    """``checkpoints`` stores of the same samples; later checkpoints mix the embodiments better."""
    meta = dashboard_meta(root, n_episodes, frames, video)
    stores = []
    for c in range(checkpoints):
        shift = 6.0 * (1 - c / max(checkpoints - 1, 1))
        layers = {"trunk.block0": clustered_latents(meta, dim=16, shift=shift, seed=1),
                  "trunk.block1": clustered_latents(meta, dim=8, shift=shift / 2, seed=2)}
        datasets = [{"name": name, "root": str(root.resolve())} for name in sorted(meta[C.DATASET].unique())]
        stores.append(write_store(root / f"step-{(c + 1) * 100:06d}", meta, layers,
                                  provenance={"checkpoint": {"step": (c + 1) * 100}, "datasets": datasets}))
    return stores


def test_make_stores_writes_decodable_videos(tmp_path):
    from dashboard.media import frame_jpeg

    stores = make_stores(tmp_path, n_episodes=1, frames=6, checkpoints=1)
    meta = stores[0].meta
    assert Path(meta[C.VIDEO].iat[0]).is_file()
    jpeg = frame_jpeg(meta[C.VIDEO].iat[0], 0.3)
    assert jpeg[:2] == b"\xff\xd8" and jpeg[-2:] == b"\xff\xd9"


def light_metrics():
    """A quick metrics configuration for tests (few metrics, few replicates), reported per stage."""
    from metrics.spec import MetricsConfig

    return MetricsConfig(by="stage", k=30, bootstrap=3, null_repeats=1,
                         metrics=("ilisi", "knn_embodiment_mixing", "silhouette_stage",
                                  "retrieval_precision_at_1_robot_to_human"))
