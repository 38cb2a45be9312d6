"""Readers on the real third-party datasets in /work/shared/data (read in place)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import SHARED_DATA
from probe import columns as C
from probe.errors import DataError
from probe.readers.base import Format
from probe.readers import detect_format, open_dataset

G1 = SHARED_DATA / "g1_inspire_pick_can"
GR1 = SHARED_DATA / "gr1_sim_picknplace"
HAND = SHARED_DATA / "human_hand_dexretargeting"

pytestmark = pytest.mark.skipif(not SHARED_DATA.exists(),
                                reason=f"real datasets not found at {SHARED_DATA} (shared data absent)")
G1_KEY = "observation.images.cam_high"


def test_g1_lerobot_v21_av1() -> None:
    ds = open_dataset(G1)
    assert ds.info.format is Format.LEROBOT_V2 and ds.info.fps == 30 and ds.info.embodiment == "robot"
    assert ds.info.robot_type == "Unitree_G1_Inspire" and ds.info.features["observation.state"] == (26,)
    eps = ds.episodes()
    assert len(eps) == 100 and sum(e.length for e in eps) == 35965
    ep = ds.episode(1)
    assert ep.length == 393 and ep.task == "Pick up the yellow bottle on the table."
    table = ds.frame_table(ep)
    assert list(table.columns[:4]) == [C.EPISODE, C.FRAME, C.TIMESTAMP, C.TASK] and len(table) == 393
    assert table[C.TIMESTAMP].iloc[30] == pytest.approx(1.0, abs=1e-5)
    frames = np.array([0, 150, 392])
    batch = ds.read(ep, frames, size=(96, 128))
    img = batch.images[G1_KEY]
    assert img.shape == (3, 96, 128, 3) and img.dtype == np.uint8
    assert np.abs(img[0].astype(int) - img[2].astype(int)).mean() > 1.0  # frames differ over time
    assert batch.state.shape == (3, 26) and batch.state.dtype == np.float32
    assert batch.action.shape == (3, 26) and batch.keypoints is None
    np.testing.assert_allclose(batch.timestamps, frames / 30, atol=1e-5)
    assert batch.video_paths[G1_KEY].endswith("episode_000001.mp4")
    np.testing.assert_allclose(batch.video_timestamps[G1_KEY], frames / 30, atol=1e-5)
    # state matches the parquet row
    import pandas as pd

    raw = pd.read_parquet(G1 / "data/chunk-000/episode_000001.parquet")
    np.testing.assert_allclose(batch.state[1], raw["observation.state"].iloc[150], rtol=1e-6)


def test_g1_missing_video_error_names_episode() -> None:
    ds = open_dataset(G1)
    with pytest.raises(DataError, match=r"episode 0 has no video file .*skip_bad_episodes=True"):
        ds.read(0, np.array([0]))
    batch = ds.read(0, np.array([0, 1]), images=False)  # arrays still readable
    assert batch.images == {} and batch.state.shape == (2, 26)


def test_g1_skip_bad_episodes_warns() -> None:
    ds = open_dataset(G1, skip_bad_episodes=True)
    assert [e.index for e in ds.episodes()] == [1, 2, 4, 5, 7, 8, 10, 11, 12, 13]
    assert len(ds.warnings) == 1 and "skipped 90 of 100 episodes" in ds.warnings[0]
    with pytest.raises(DataError, match="episode 0 not found"):
        ds.episode(0)


def test_g1_without_video_keys() -> None:
    ds = open_dataset(G1, video_keys=[])
    assert ds.info.video_keys == () and ds.read(0, np.array([3])).images == {}
    with pytest.raises(DataError, match="not in dataset"):
        open_dataset(G1, video_keys=["observation.images.nope"])


def test_gr1_lerobot_v20_h264() -> None:
    ds = open_dataset(GR1, embodiment="gr1_sim")
    assert ds.info.format is Format.LEROBOT_V2 and ds.info.fps == 20 and ds.info.embodiment == "gr1_sim"
    assert ds.info.video_keys == ("observation.images.ego_view",)  # egoview declared but absent
    assert any("egoview" in w for w in ds.warnings)
    assert [e.task.split()[2] for e in ds.episodes()] == ["pear", "sweet", "meat", "salt", "cupcake"]
    table = ds.frame_table(2)
    assert (table[C.TASK] == "pick the meat from the counter and place it in the plate").all()
    assert "next.reward" in table.columns and "annotation.human.validity" in table.columns
    batch = ds.read(2, np.array([0, 200, 469]))
    img = batch.images["observation.images.ego_view"]
    assert img.shape == (3, 256, 256, 3) and batch.state.shape == (3, 44) and batch.state.dtype == np.float32
    assert np.abs(img[0].astype(int) - img[1].astype(int)).mean() > 1.0
    # parquet timestamps start at 1/fps; the per-episode video starts at 0
    assert batch.timestamps[0] == pytest.approx(0.05)
    np.testing.assert_allclose(batch.video_timestamps["observation.images.ego_view"], [0.0, 10.0, 23.45], atol=1e-4)


def test_human_keypoints_with_video() -> None:
    ds = open_dataset(HAND, keypoints="human_joint_right.npy", task="hand open/close")
    assert ds.info.format is Format.KEYPOINTS and ds.info.embodiment == "human" and ds.info.fps == 30
    (ep,) = ds.episodes()
    assert ep.length == 621 and ep.task == "hand open/close"
    batch = ds.read(ep, np.array([0, 300, 620]), size=(72, 128))
    assert batch.images["video"].shape == (3, 72, 128, 3)
    assert batch.keypoints.shape == (3, 21, 3) and batch.state.shape == (3, 63)
    assert np.abs(batch.images["video"][0].astype(int) - batch.images["video"][1].astype(int)).mean() > 1.0
    raw = np.load(HAND / "human_joint_right.npy")
    np.testing.assert_array_equal(batch.keypoints[1], raw[300])
    compact = open_dataset(HAND / "mp_world_landmarks.npy", state="wrist_aperture", video=HAND / "human_hand_video.mp4")
    b2 = compact.read(0, np.array([5]), images=False)
    assert b2.state.shape == (1, 4) and b2.images == {}
    assert "hand_aperture" in ds.frame_table(0).columns


def test_detect_and_fingerprint() -> None:
    assert detect_format(G1) is Format.LEROBOT_V2
    assert detect_format(HAND) is Format.KEYPOINTS
    a, b = open_dataset(G1), open_dataset(G1)
    assert a.info.fingerprint == b.info.fingerprint and len(a.info.fingerprint) == 64
    assert a.info.fingerprint != open_dataset(GR1).info.fingerprint
    with pytest.raises(DataError, match="cannot tell the format"):
        detect_format(SHARED_DATA)
    with pytest.raises(DataError, match="option not understood"):
        open_dataset(G1, state_keys=["x"])
