"""probe.readers.video: frames at timestamps, order, repeats, resize, AV1, errors."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED_DATA
from probe.errors import DataError
from probe.readers.video import check_video, decode_at, resize, video_info

G1_VIDEO = SHARED_DATA / "g1_inspire_pick_can/videos/chunk-000/observation.images.cam_high/episode_000001.mp4"


def write_gray_video(path: Path, n: int = 20, fps: int = 10, size: int = 32) -> Path:
    """An H.264 video whose frame i is uniformly gray with level 10 * i."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"g": "5"}  # a keyframe every 5 frames so that seeking matters
        for i in range(n):
            img = np.full((size, size, 3), 10 * i, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture
def gray_video(tmp_path: Path) -> Path:
    return write_gray_video(tmp_path / "gray.mp4")


def levels(frames: np.ndarray) -> np.ndarray:
    return np.round(frames.reshape(len(frames), -1).mean(axis=1) / 10).astype(int)


def test_frames_at_timestamps_any_order_and_repeats(gray_video: Path) -> None:
    times = np.array([1.5, 0.0, 0.3, 1.5, 1.9, 0.71])
    frames = decode_at(gray_video, times)
    assert frames.shape == (6, 32, 32, 3) and frames.dtype == np.uint8
    np.testing.assert_array_equal(levels(frames), [15, 0, 3, 15, 19, 7])


def test_nearest_frame_and_tolerance(gray_video: Path) -> None:
    np.testing.assert_array_equal(levels(decode_at(gray_video, [0.44, 0.46])), [4, 5])
    with pytest.raises(DataError, match="no frame within .* of time 5.0000 s"):
        decode_at(gray_video, [5.0])


def test_resize_and_info(gray_video: Path) -> None:
    info = video_info(gray_video)
    assert (info.codec, info.width, info.height, info.n_frames) == ("h264", 32, 32, 20)
    assert info.fps == pytest.approx(10)
    out = decode_at(gray_video, [0.2, 0.8], size=(16, 24))
    assert out.shape == (2, 16, 24, 3)
    np.testing.assert_array_equal(levels(out), [2, 8])
    imgs = np.zeros((3, 10, 10, 3), dtype=np.uint8)
    assert resize(imgs, (5, 7)).shape == (3, 5, 7, 3)
    assert resize(imgs, None) is imgs


def test_missing_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        decode_at(tmp_path / "nope.mp4", [0.0])
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    with pytest.raises(DataError, match="bad.mp4"):
        check_video(bad)
    with pytest.raises(DataError, match="bad.mp4"):
        decode_at(bad, [0.0])


@pytest.mark.skipif(not G1_VIDEO.exists(), reason=f"real data not found at {SHARED_DATA} (shared data absent)")
def test_av1_real_video_decodes_and_changes_over_time() -> None:
    info = video_info(G1_VIDEO)
    assert info.codec in ("libdav1d", "av1", "libaom-av1") and (info.width, info.height) == (640, 480)
    frames = decode_at(G1_VIDEO, [0.0, 6.0, 13.0])
    assert frames.shape == (3, 480, 640, 3)
    diff = np.abs(frames[0].astype(int) - frames[2].astype(int)).mean()
    assert diff > 1.0  # the arm moved
    # decoding one frame alone gives the same pixels as decoding it within a batch
    np.testing.assert_array_equal(decode_at(G1_VIDEO, [6.0])[0], frames[1])


def test_clip_reading_shares_the_checks_and_says_where_the_path_came_from(tmp_path: Path) -> None:
    from probe.clips import read_frames

    with pytest.raises(DataError, match="does not exist \\(the store's 'video' column points to it\\)"):
        read_frames(tmp_path / "gone.mp4", 0.0, 1.0)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    with pytest.raises(DataError, match="cannot open video .*bad.mp4"):
        read_frames(bad, 0.0, 1.0)


@pytest.mark.parametrize("video", ["world", "g1"])
def test_numpy_yuv_conversion_matches_swscale(video: str, gray_video: Path) -> None:
    """The vectorised 4:2:0 -> RGB path stays within 3 levels of FFmpeg's swscale on real frames."""
    path = gray_video if video == "world" else G1_VIDEO
    ts = np.linspace(0.0, 1.5, 7)
    fast = decode_at(path, ts)
    slow = decode_at(path, ts, _fast=False)  # swscale, frame by frame
    diff = np.abs(fast.astype(np.int16) - slow.astype(np.int16))
    assert fast.shape == slow.shape and fast.dtype == np.uint8
    assert diff.max() <= 3 and diff.mean() < 2.0


def test_yuv_to_rgb_ranges() -> None:
    """Limited-range black/white/grey and full-range extremes convert to the right RGB levels."""
    from probe.readers.video import yuv420_to_rgb

    def planes(y: int, u: int = 128, v: int = 128) -> np.ndarray:
        p = np.empty((1, 6, 4), np.uint8)
        p[:, :4], p[:, 4:5], p[:, 5:] = y, u, v
        return p

    assert yuv420_to_rgb(planes(16)).max() == 0 and yuv420_to_rgb(planes(235)).min() == 255
    assert np.all(yuv420_to_rgb(planes(126)) == 128)
    assert yuv420_to_rgb(planes(0), full_range=True).max() == 0
    assert yuv420_to_rgb(planes(255), full_range=True).min() == 255
    red = yuv420_to_rgb(planes(81, 90, 240))[0, 0, 0]  # BT.601 limited-range red
    assert red[0] > 250 and red[1] < 5 and red[2] < 5
