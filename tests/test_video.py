"""probe.readers.video: frames at timestamps, order, repeats, resize, AV1, errors."""

from __future__ import annotations

import os
import signal
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED_DATA
from probe.errors import DataError
from probe.readers.video import check_video, decode_at, resize, video_info

G1_VIDEO = SHARED_DATA / "g1_inspire_pick_can/videos/chunk-000/observation.images.cam_high/episode_000001.mp4"


def write_gray_video(path: Path, n: int = 20, fps: int = 10, size: int = 32, step: int = 10) -> Path:
    """An H.264 video whose frame i is uniformly gray with level ``step * i``."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"g": "5"}  # a keyframe every 5 frames so that seeking matters
        for i in range(n):
            img = np.full((size, size, 3), step * i, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_colour_video(path: Path, pix_fmt: str = "yuv420p", n: int = 16, fps: int = 10, height: int = 48) -> Path:
    """An H.264 video of smooth colour gradients that move, in ``pix_fmt`` (limited or full range)."""
    import av

    yy, xx = np.mgrid[0:height, 0:64]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, height, pix_fmt
        for i in range(n):
            img = np.stack([(xx * 4 + i * 7) % 256, (yy * 5 + i * 3) % 256, (xx + yy + i * 11) % 256], -1)
            frame = av.VideoFrame.from_ndarray(img.astype(np.uint8), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
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
    from probe.retrieval.clips import read_frames

    with pytest.raises(DataError, match="does not exist \\(the store's 'video' column points to it\\)"):
        read_frames(tmp_path / "gone.mp4", 0.0, 1.0)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    with pytest.raises(DataError, match="cannot open video .*bad.mp4"):
        read_frames(bad, 0.0, 1.0)


@pytest.mark.parametrize("video", ["gray", "yuv420p", "yuvj420p", "yuv420p-66", "yuvj420p-66", "g1"])
def test_yuv_conversion_matches_swscale(video: str, gray_video: Path, tmp_path: Path) -> None:
    """The OpenCV (limited range) and numpy (full range) 4:2:0 -> RGB paths stay within 3 levels of
    FFmpeg's swscale, on colour frames (also 66 rows high, where the chroma planes do not start on a
    row of the I420 buffer) and on the real G1 video."""
    import av

    paths = {"gray": gray_video, "g1": G1_VIDEO}
    pix_fmt, _, rows = video.partition("-")
    path = paths.get(video) or write_colour_video(tmp_path / f"{video}.mp4", pix_fmt, height=int(rows or 48))
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.pix_fmt == ("yuv420p" if video == "gray" else
                                                                     {"g1": "yuv420p"}.get(pix_fmt, pix_fmt))
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


def test_consecutive_reads_continue_where_the_last_ended_and_equal_fresh_reads(tmp_path: Path) -> None:
    """A thread's reads of one file share an open decoder: forward reads neither reopen nor seek, and every
    read (forward, backward, repeated, across a long gap, past the end) equals a read from a fresh open."""
    from probe.readers import decoder as D

    path = write_gray_video(tmp_path / "long.mp4", n=60, step=4)  # 6 s, a keyframe every 5 frames
    D.close_decoders()
    reads = [[0.0, 0.1, 0.2], [0.3, 0.4], [0.4, 0.5], [0.2], [1.0, 0.9], [5.5], [0.6], [5.9, 7.0 - 1.05]]
    for times in reads:
        got = decode_at(path, times, tolerance_s=1.2)
        assert len(D._local.decoders) == 1  # the continued decoder, not a fresh one beside it
        D.close_decoders()
        np.testing.assert_array_equal(got, decode_at(path, times, tolerance_s=1.2))
        D.close_decoders()
        decode_at(path, times, tolerance_s=1.2)  # leave the decoder where this read ended, for the next
    assert round(float(decode_at(path, [5.9]).mean()) / 4) == 59

    D.close_decoders()
    decode_at(path, [0.0, 0.1])
    first = next(iter(D._local.decoders.values()))
    first_frames = first.frames
    decode_at(path, [0.2, 0.3])  # forward: same decoder, no seek
    assert next(iter(D._local.decoders.values())) is first and first.frames is first_frames
    decode_at(path, [0.1])  # backward: seeks
    assert first.frames is not first_frames


def test_an_edited_video_is_reopened(tmp_path: Path) -> None:
    path = write_gray_video(tmp_path / "v.mp4")
    assert levels(decode_at(path, [0.5])).tolist() == [5]
    write_colour_video(tmp_path / "other.mp4").replace(path)
    from probe.readers.decoder import close_decoders

    got = decode_at(path, [0.5])
    close_decoders()
    np.testing.assert_array_equal(got, decode_at(path, [0.5]))
    assert got.shape == (1, 48, 64, 3)

def _fork_and_read(video, check=lambda: True) -> int | None:
    """Fork; the child collects garbage, asks ``check()`` and reads ``video`` afresh. Its exit code (0: both
    held), or None when it hung."""
    pid = os.fork()
    if pid == 0:
        import gc

        try:
            gc.collect()
            os._exit(0 if check() and decode_at(video, [0.5]).shape[0] == 1 else 3)
        except BaseException:
            os._exit(4)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


@pytest.mark.skipif(not G1_VIDEO.exists(), reason=f"real data not found at {SHARED_DATA} (shared data absent)")
@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
def test_a_forked_child_neither_reads_through_nor_frees_its_parents_open_videos() -> None:
    """The G1 video decodes with frame threads; a forked child that freed that decoder would wait on
    threads it does not have, forever. It starts with no open videos and can read on its own."""
    from probe.readers import decoder as D

    D.close_decoders()
    decode_at(G1_VIDEO, [0.5])  # an open decoder with frame threads in this thread
    assert len(D._local.decoders) == 1
    code = _fork_and_read(G1_VIDEO, lambda: not getattr(D._local, "decoders", None))  # starts with none
    assert code is not None, "the forked child hung"
    assert code == 0
    D.close_decoders()



@pytest.mark.skipif(not G1_VIDEO.exists(), reason=f"real data not found at {SHARED_DATA} (shared data absent)")
@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
@pytest.mark.parametrize("thread_alive", [True, False])
def test_a_forked_child_does_not_free_the_videos_another_thread_keeps_open(thread_alive) -> None:
    """A reader thread (an extraction's, a dashboard's) keeps its own open videos. A child forked while it
    holds them loses that thread, and freeing its frame-threaded decoder there would hang: the child keeps
    every thread's decoders, unused (a full-suite run hung here when a thread of an earlier test held one)."""
    import threading

    opened, release = threading.Event(), threading.Event()

    def reader():
        decode_at(G1_VIDEO, [0.5])
        opened.set()
        release.wait(60)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    assert opened.wait(30)
    if not thread_alive:
        release.set()
        thread.join(30)
    try:
        code = _fork_and_read(G1_VIDEO)
    finally:
        release.set()
        thread.join(30)
    assert code is not None, "the forked child hung"
    assert code == 0
