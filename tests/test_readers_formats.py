"""LeRobot v3.0 (a tiny dataset written here by the spec) and HDF5 (robomimic layout) readers."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from probe import columns as C
from probe.errors import DataError
from probe.readers.base import Format
from probe.readers import open_dataset

KEY = "observation.images.front"
FPS = 10


def write_v3(root: Path, lengths=(10, 12, 8), files_per_video=(0, 0, 1), stage_column: bool = True) -> Path:
    """A LeRobot v3.0 dataset: episodes share data/video files; frame levels encode (episode, frame)."""
    import av

    tasks = ["pick the can", "push the box"]
    (root / "meta/episodes/chunk-000").mkdir(parents=True)
    (root / "data/chunk-000").mkdir(parents=True)
    (root / f"videos/{KEY}/chunk-000").mkdir(parents=True)
    rows, eps = [], []
    by_file: dict[int, list[int]] = {}
    for ep, fi in enumerate(files_per_video):
        by_file.setdefault(fi, []).append(ep)
    video_from: dict[int, float] = {}
    for fi, members in by_file.items():
        path = root / f"videos/{KEY}/chunk-000/file-{fi:03d}.mp4"
        with av.open(str(path), "w") as container:
            stream = container.add_stream("libx264", rate=FPS)
            stream.width = stream.height = 16
            stream.pix_fmt = "yuv420p"
            pts = 0
            for ep in members:
                video_from[ep] = pts / FPS
                for f in range(lengths[ep]):
                    img = np.full((16, 16, 3), 40 * ep + 3 * f, dtype=np.uint8)
                    frame = av.VideoFrame.from_ndarray(img, format="rgb24")
                    frame.pts, frame.time_base = pts, Fraction(1, FPS)
                    pts += 1
                    for packet in stream.encode(frame):
                        container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    index = 0
    for ep, n in enumerate(lengths):
        start = index
        for f in range(n):
            rows.append({"index": index, "episode_index": ep, "frame_index": f, "timestamp": f / FPS,
                         "task_index": ep % 2, "observation.state": [float(ep), float(f), 0.5],
                         "action": [float(f)] * 2, "stage": "reach" if f < n // 2 else "grasp",
                         "next.reward": float(f == n - 1)})
            index += 1
        eps.append({"episode_index": ep, "tasks": [tasks[ep % 2]], "length": n,
                    "data/chunk_index": 0, "data/file_index": 0,
                    "dataset_from_index": start, "dataset_to_index": index,
                    f"videos/{KEY}/chunk_index": 0, f"videos/{KEY}/file_index": files_per_video[ep],
                    f"videos/{KEY}/from_timestamp": video_from[ep],
                    f"videos/{KEY}/to_timestamp": video_from[ep] + n / FPS,
                    "subtask_names": ["approach", "take"], "subtask_start_frames": [0, 3],
                    "subtask_end_frames": [3, n]})
    data = pd.DataFrame(rows)
    if not stage_column:
        data = data.drop(columns="stage")
    pq.write_table(pa.Table.from_pandas(data, preserve_index=False), root / "data/chunk-000/file-000.parquet")
    pq.write_table(pa.Table.from_pandas(pd.DataFrame(eps), preserve_index=False),
                   root / "meta/episodes/chunk-000/file-000.parquet")
    pd.DataFrame({"task_index": [0, 1]}, index=pd.Index(tasks, name="task")).to_parquet(root / "meta/tasks.parquet")
    info = {"codebase_version": "v3.0", "robot_type": "so100", "fps": FPS, "total_episodes": len(lengths),
            "total_frames": int(sum(lengths)), "chunks_size": 1000,
            "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
            "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
            "features": {"observation.state": {"dtype": "float32", "shape": [3]},
                         "action": {"dtype": "float32", "shape": [2]},
                         KEY: {"dtype": "video", "shape": [16, 16, 3]},
                         "timestamp": {"dtype": "float32", "shape": [1]}}}
    (root / "meta/info.json").write_text(json.dumps(info))
    return root


def levels(images: np.ndarray) -> np.ndarray:
    return np.round(images.reshape(len(images), -1).mean(axis=1)).astype(int)


def test_v3_episodes_share_files(tmp_path: Path) -> None:
    ds = open_dataset(write_v3(tmp_path / "v3"))
    assert ds.info.format is Format.LEROBOT_V3 and ds.info.fps == FPS and ds.info.robot_type == "so100"
    eps = ds.episodes()
    assert [(e.index, e.length, e.task) for e in eps] == [(0, 10, "pick the can"), (1, 12, "push the box"),
                                                          (2, 8, "pick the can")]
    assert eps[1].video[KEY].from_timestamp == pytest.approx(1.0)
    assert eps[1].stage_segments == (("approach", 0, 3), ("take", 3, 12))
    batch = ds.read(1, np.array([0, 5, 11]))
    assert batch.images[KEY].shape == (3, 16, 16, 3)
    np.testing.assert_allclose(levels(batch.images[KEY]), [40, 55, 73], atol=2)  # episode 1, not episode 0
    np.testing.assert_allclose(batch.state[:, :2], [[1, 0], [1, 5], [1, 11]])
    np.testing.assert_allclose(batch.video_timestamps[KEY], [1.0, 1.5, 2.1])
    b2 = ds.read(2, np.array([7, 0]))  # its own file, starting at 0; order kept
    np.testing.assert_allclose(levels(b2.images[KEY]), [101, 80], atol=2)
    table = ds.frame_table(1)
    assert (table[C.TASK] == "push the box").all() and list(table[C.STAGE][:7]) == ["reach"] * 6 + ["grasp"]
    assert "next.reward" in table.columns and len(table) == 12


def test_v3_missing_video_and_bad_frames(tmp_path: Path) -> None:
    root = write_v3(tmp_path / "v3")
    (root / f"videos/{KEY}/chunk-000/file-001.mp4").unlink()
    ds = open_dataset(root)
    with pytest.raises(DataError, match="episode 2 has no video file"):
        ds.read(2, np.array([0]))
    with pytest.raises(DataError, match=r"frame indices must lie in \[0, 10\)"):
        ds.read(0, np.array([10]))
    skipped = open_dataset(root, skip_bad_episodes=True)
    assert [e.index for e in skipped.episodes()] == [0, 1] and "skipped 1 of 3" in skipped.warnings[0]


def test_v3_corrupt_video_skipped(tmp_path: Path) -> None:
    root = write_v3(tmp_path / "v3")
    (root / f"videos/{KEY}/chunk-000/file-001.mp4").write_bytes(b"\x00garbage" * 50)
    with pytest.raises(DataError, match="episode 2, video"):
        open_dataset(root).read(2, np.array([0]))
    assert [e.index for e in open_dataset(root, skip_bad_episodes=True).episodes()] == [0, 1]


def test_v3_fingerprint_changes_with_data(tmp_path: Path) -> None:
    root = write_v3(tmp_path / "v3")
    before = open_dataset(root).info.fingerprint
    assert open_dataset(root).info.fingerprint == before
    path = root / "data/chunk-000/file-000.parquet"
    table = pq.read_table(path)
    pq.write_table(table.slice(0, table.num_rows), path, compression="gzip")
    assert open_dataset(root).info.fingerprint != before


def test_unsupported_lerobot_version(tmp_path: Path) -> None:
    (tmp_path / "old/meta").mkdir(parents=True)
    (tmp_path / "old/meta/info.json").write_text(json.dumps({"codebase_version": "v1.6", "fps": 10}))
    with pytest.raises(DataError, match="supported are v2.0, v2.1 and v3.0"):
        open_dataset(tmp_path / "old")


def write_hdf5(path: Path, lengths=(6, 4, 5)) -> Path:
    import h5py

    with h5py.File(path, "w") as fh:
        data = fh.create_group("data")
        data.attrs["env_args"] = json.dumps({"env_name": "Lift", "env_kwargs": {"control_freq": 15}})
        for i, n in reversed(list(enumerate(lengths))):  # written out of order on purpose
            demo = data.create_group(f"demo_{i if i < 2 else 10}")
            demo.attrs["num_samples"] = n
            obs = demo.create_group("obs")
            obs["agentview_image"] = np.stack([np.full((8, 8, 3), 10 * f + i, np.uint8) for f in range(n)])
            obs["eef_pos"] = np.arange(n * 3, dtype=np.float64).reshape(n, 3) + 100 * i
            obs["gripper"] = np.full((n, 1), i, dtype=np.float32)
            demo["actions"] = np.ones((n, 7)) * i
            demo["stage"] = np.array([b"reach"] * (n // 2) + [b"grasp"] * (n - n // 2))
    return path


def test_hdf5_robomimic(tmp_path: Path) -> None:
    ds = open_dataset(write_hdf5(tmp_path / "lift.hdf5"))
    assert ds.info.format is Format.HDF5 and ds.info.fps == 15 and ds.info.video_keys == ("agentview_image",)
    assert [(e.index, e.length, e.task) for e in ds.episodes()] == [(0, 6, "Lift"), (1, 4, "Lift"), (2, 5, "Lift")]
    batch = ds.read(2, np.array([4, 0, 4]), size=(4, 4))  # demo_10 is the third episode
    assert batch.images["agentview_image"].shape == (3, 4, 4, 3)
    np.testing.assert_array_equal(levels(batch.images["agentview_image"]), [42, 2, 42])
    assert batch.state.shape == (3, 4) and batch.state.dtype == np.float32
    np.testing.assert_allclose(batch.state[1], [200, 201, 202, 2])
    assert batch.action.shape == (3, 7)
    np.testing.assert_allclose(batch.timestamps, [4 / 15, 0, 4 / 15])
    assert list(ds.frame_table(0)[C.STAGE]) == ["reach"] * 3 + ["grasp"] * 3
    chosen = open_dataset(tmp_path / "lift.hdf5", state_keys=["gripper"], task="lift the cube", embodiment="human")
    assert chosen.read(1, np.array([0])).state.shape == (1, 1)
    assert chosen.info.embodiment == "human" and chosen.episodes()[0].task == "lift the cube"
    with pytest.raises(DataError, match="observation key 'nope' not in"):
        open_dataset(tmp_path / "lift.hdf5", state_keys=["nope"])


def test_hdf5_without_data_group(tmp_path: Path) -> None:
    import h5py

    with h5py.File(tmp_path / "x.h5", "w") as fh:
        fh["foo"] = np.zeros(3)
    with pytest.raises(DataError, match="has no 'data' group"):
        open_dataset(tmp_path / "x.h5")
