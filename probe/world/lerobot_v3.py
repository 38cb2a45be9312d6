"""Write episodes as a LeRobot v3.0 dataset (parquet tables, H.264 mp4 videos holding several episodes).

Layout (``ROOT`` is one embodiment's dataset)::

    ROOT/meta/info.json                          codebase_version "v3.0", fps, features, paths
    ROOT/meta/tasks.parquet                      index: task string; column task_index
    ROOT/meta/episodes/chunk-000/file-000.parquet  one row per episode (see EPISODE_COLUMNS)
    ROOT/meta/stats.json                         min/max/mean/std/count per feature
    ROOT/data/chunk-000/file-000.parquet         one row per frame
    ROOT/videos/<video_key>/chunk-000/file-NNN.mp4  several episodes per file, back to back

Additions to the LeRobot v3.0 layout (readers that do not know them can ignore them):
per-frame ``stage`` (string) and ``progress`` (float32, 0..1 within the episode)
columns in the data files (listed in ``info.json`` features), and per-episode stage
segments ``subtask_names`` (list<str>), ``subtask_start_frames`` (list<int64>,
inclusive) and ``subtask_end_frames`` (list<int64>, exclusive) in the episodes table.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from probe.atomic import write_json
from probe.progress import track
from probe.world.embodiments import SPECS
from probe.world.episodes import Episode

CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE = 1000
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_CODEC = "h264"


def _scalar(dtype: str) -> dict:
    return {"dtype": dtype, "shape": [1], "names": None}


def features(embodiment: str, image_size: int, fps: float) -> dict:
    """The ``features`` block of ``info.json``."""
    spec = SPECS[embodiment]
    return {
        "observation.state": {"dtype": "float32", "shape": [spec.state_dim], "names": list(spec.state_names)},
        "action": {"dtype": "float32", "shape": [spec.action_dim], "names": list(spec.action_names)},
        spec.video_key: {
            "dtype": "video", "shape": [image_size, image_size, 3], "names": ["height", "width", "channels"],
            "info": {"video.height": image_size, "video.width": image_size, "video.codec": VIDEO_CODEC,
                     "video.pix_fmt": "yuv420p", "video.is_depth_map": False, "video.fps": fps,
                     "video.channels": 3, "has_audio": False},
        },
        "timestamp": _scalar("float32"),
        "frame_index": _scalar("int64"),
        "episode_index": _scalar("int64"),
        "index": _scalar("int64"),
        "task_index": _scalar("int64"),
        "stage": _scalar("string"),
        "progress": _scalar("float32"),
    }


def _vectors(rows: np.ndarray) -> pa.Array:
    rows = np.ascontiguousarray(rows, np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(rows.reshape(-1), pa.float32()), rows.shape[1])


def _stats(x: np.ndarray) -> dict:
    x = np.asarray(x, np.float64)
    x = x.reshape(len(x), -1) if x.ndim > 1 else x[:, None]
    return {"min": x.min(0).tolist(), "max": x.max(0).tolist(), "mean": x.mean(0).tolist(),
            "std": x.std(0).tolist(), "count": [int(len(x))]}


def _image_stats(pixel_sum: np.ndarray, pixel_sq: np.ndarray, lo: np.ndarray, hi: np.ndarray, n: int) -> dict:
    mean = pixel_sum / n
    std = np.sqrt(np.maximum(pixel_sq / n - mean**2, 0))
    shape = lambda v: [[[float(c)]] for c in v]  # noqa: E731  (3, 1, 1) like LeRobot
    return {"min": shape(lo), "max": shape(hi), "mean": shape(mean), "std": shape(std), "count": [n]}


def rgb_to_yuv420p(img: np.ndarray) -> np.ndarray:
    """BT.601 limited-range YUV 4:2:0 planes of an RGB uint8 ``(H, W, 3)`` frame, stacked as ``(3H/2, W)``.

    Converted here rather than by swscale so that the encoder's input is bit-for-bit reproducible.
    """
    rgb = img.astype(np.float32) / 255.0
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 16 + 65.481 * r + 128.553 * g + 24.966 * b
    cb = 128 - 37.797 * r - 74.203 * g + 112.0 * b
    cr = 128 + 112.0 * r - 93.786 * g - 18.214 * b
    h, w = y.shape
    pool = lambda c: c.reshape(h // 2, 2, w // 2, 2).mean((1, 3))  # noqa: E731
    planes = [y.reshape(-1), pool(cb).reshape(-1), pool(cr).reshape(-1)]
    return np.clip(np.concatenate(planes) + 0.5, 0, 255).astype(np.uint8).reshape(h * 3 // 2, w)


def _write_video(path: Path, frames: Sequence[np.ndarray], fps: float) -> None:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=int(round(fps)))
        h, w = frames[0].shape[1:3]
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        # single-threaded, no lookahead: multi-threaded x264 output is not bit-for-bit reproducible
        stream.options = {"crf": "18", "preset": "veryfast", "g": "20",
                          "x264-params": "threads=1:lookahead-threads=1:sync-lookahead=0:rc-lookahead=0"}
        stream.codec_context.thread_count = 1
        stream.codec_context.thread_type = "NONE"
        for clip in frames:
            for img in clip:
                for packet in stream.encode(av.VideoFrame.from_ndarray(rgb_to_yuv420p(img), format="yuv420p")):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_dataset(root: str | Path, episodes: Sequence[Episode], *, fps: float, image_size: int,
                  episodes_per_video_file: int = 8, progress: bool = False) -> Path:
    """Write ``episodes`` (all of one embodiment) as a LeRobot v3.0 dataset into the empty directory ``root``.

    Parameters
    ----------
    root : directory to fill (its parent handles atomicity, see :func:`probe.world.generate.generate_world`).
    episodes : episodes in index order, all of one embodiment.
    fps, image_size : frame rate and square frame size.
    episodes_per_video_file : how many episodes one mp4 file holds back to back.
    """
    root = Path(root)
    embodiment = episodes[0].embodiment
    spec = SPECS[embodiment]
    key = spec.video_key
    tasks = list(dict.fromkeys(ep.task.instruction for ep in episodes))
    task_index = {t: i for i, t in enumerate(tasks)}

    # frames table
    lengths = np.array([ep.length for ep in episodes])
    starts = np.r_[0, np.cumsum(lengths)[:-1]]
    total = int(lengths.sum())
    frame_index = np.concatenate([np.arange(n) for n in lengths]).astype(np.int64)
    episode_index = np.repeat(np.arange(len(episodes)), lengths).astype(np.int64)
    state = np.concatenate([ep.state for ep in episodes])
    action = np.concatenate([ep.action for ep in episodes])
    timestamp = (frame_index / fps).astype(np.float32)
    task_idx = np.repeat([task_index[ep.task.instruction] for ep in episodes], lengths).astype(np.int64)
    stage = np.concatenate([ep.stage_names for ep in episodes]).astype(str)
    prog = np.concatenate([ep.progress for ep in episodes])
    table = pa.table({
        "observation.state": _vectors(state),
        "action": _vectors(action),
        "timestamp": pa.array(timestamp),
        "frame_index": pa.array(frame_index),
        "episode_index": pa.array(episode_index),
        "index": pa.array(np.arange(total, dtype=np.int64)),
        "task_index": pa.array(task_idx),
        "stage": pa.array(stage.tolist(), pa.string()),
        "progress": pa.array(prog),
    })
    data_file = root / DATA_PATH.format(chunk_index=0, file_index=0)
    data_file.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, data_file)

    # videos: several episodes per file, back to back
    n_files = (len(episodes) + episodes_per_video_file - 1) // episodes_per_video_file
    video_file = np.arange(len(episodes)) // episodes_per_video_file
    from_ts = np.zeros(len(episodes))
    px_sum, px_sq = np.zeros(3), np.zeros(3)
    px_lo, px_hi = np.full(3, np.inf), np.full(3, -np.inf)
    for f in track(range(n_files), total=n_files, desc=f"encoding {embodiment} videos", enabled=progress):
        members = np.flatnonzero(video_file == f)
        offset = 0
        for e in members:
            from_ts[e] = offset / fps
            offset += lengths[e]
            img = episodes[e].frames.reshape(-1, 3).astype(np.float64) / 255.0
            px_sum += img.sum(0)
            px_sq += (img**2).sum(0)
            px_lo, px_hi = np.minimum(px_lo, img.min(0)), np.maximum(px_hi, img.max(0))
        _write_video(root / VIDEO_PATH.format(video_key=key, chunk_index=0, file_index=f),
                     [episodes[e].frames for e in members], fps)

    # episodes table
    ep_table = pa.table({
        "episode_index": pa.array(np.arange(len(episodes), dtype=np.int64)),
        "tasks": pa.array([[ep.task.instruction] for ep in episodes], pa.list_(pa.string())),
        "length": pa.array(lengths.astype(np.int64)),
        "data/chunk_index": pa.array(np.zeros(len(episodes), np.int64)),
        "data/file_index": pa.array(np.zeros(len(episodes), np.int64)),
        "dataset_from_index": pa.array(starts.astype(np.int64)),
        "dataset_to_index": pa.array((starts + lengths).astype(np.int64)),
        f"videos/{key}/chunk_index": pa.array(np.zeros(len(episodes), np.int64)),
        f"videos/{key}/file_index": pa.array(video_file.astype(np.int64)),
        f"videos/{key}/from_timestamp": pa.array(from_ts),
        f"videos/{key}/to_timestamp": pa.array(from_ts + lengths / fps),
        "meta/episodes/chunk_index": pa.array(np.zeros(len(episodes), np.int64)),
        "meta/episodes/file_index": pa.array(np.zeros(len(episodes), np.int64)),
        "subtask_names": pa.array([list(ep.task.stages) for ep in episodes], pa.list_(pa.string())),
        "subtask_start_frames": pa.array([[b[0] for b in ep.bounds] for ep in episodes], pa.list_(pa.int64())),
        "subtask_end_frames": pa.array([[b[1] for b in ep.bounds] for ep in episodes], pa.list_(pa.int64())),
    })
    ep_file = root / EPISODES_PATH.format(chunk_index=0, file_index=0)
    ep_file.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(ep_table, ep_file)

    import pandas as pd

    tasks_frame = pd.DataFrame({"task_index": np.arange(len(tasks), dtype=np.int64)},
                               index=pd.Index(tasks, name="task"))
    pq.write_table(pa.Table.from_pandas(tasks_frame), root / "meta" / "tasks.parquet")

    stats = {
        "observation.state": _stats(state), "action": _stats(action), "timestamp": _stats(timestamp),
        "frame_index": _stats(frame_index), "episode_index": _stats(episode_index),
        "index": _stats(np.arange(total)), "task_index": _stats(task_idx), "progress": _stats(prog),
        key: _image_stats(px_sum, px_sq, px_lo, px_hi, int(total * image_size * image_size)),
    }
    write_json(root / "meta" / "stats.json", stats)
    info = {
        "codebase_version": CODEBASE_VERSION,
        "robot_type": "human" if embodiment == "human" else "probe_world_arm",
        "total_episodes": len(episodes),
        "total_frames": total,
        "total_tasks": len(tasks),
        "chunks_size": CHUNKS_SIZE,
        "data_files_size_in_mb": 100,
        "video_files_size_in_mb": 500,
        "fps": int(fps) if float(fps).is_integer() else fps,
        "splits": {"train": f"0:{len(episodes)}"},
        "data_path": DATA_PATH,
        "video_path": VIDEO_PATH,
        "features": features(embodiment, image_size, fps),
    }
    write_json(root / "meta" / "info.json", info)
    return root
