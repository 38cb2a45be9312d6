"""probe.cache.frames: decoded frames kept on disk, served identically, invalidated, bounded, and used by extract."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import extract_config
import torch

from probe.cli import main
from probe.extraction.run import extract
from probe.cache.frames import FrameCache, active_frame_cache, use_frame_cache
from probe.readers.video import decode_at

from test_video import write_gray_video

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")


@pytest.fixture
def video(tmp_path: Path) -> Path:
    return write_gray_video(tmp_path / "gray.mp4", n=20, fps=10, size=32)


def test_second_read_comes_from_the_cache_and_equals_a_fresh_decode(tmp_path, video):
    cache = FrameCache(tmp_path / "cache")
    ts = np.array([0.5, 0.1, 1.2, 0.1])
    fresh = decode_at(video, ts)
    with use_frame_cache(cache):
        first = decode_at(video, ts)
        again = decode_at(video, ts)
    assert (cache.misses, cache.hits) == (1, 1)
    np.testing.assert_array_equal(first, fresh)
    np.testing.assert_array_equal(again, fresh)
    assert again.flags.writeable  # a private copy, safe to modify
    assert active_frame_cache() is None  # only inside the block
    with use_frame_cache(cache):  # another size is another entry
        small = decode_at(video, ts, size=(16, 16))
    assert small.shape == (4, 16, 16, 3) and cache.misses == 2


def test_an_edited_video_is_decoded_again(tmp_path, video):
    cache = FrameCache(tmp_path / "cache")
    ts = np.array([0.0, 1.0])
    with use_frame_cache(cache):
        before = decode_at(video, ts)
        write_gray_video(video, n=20, fps=10, size=24)  # same path, other content
        os.utime(video, ns=(os.stat(video).st_atime_ns, os.stat(video).st_mtime_ns + 10**9))
        after = decode_at(video, ts)
    assert cache.misses == 2 and cache.hits == 0
    assert before.shape[1:3] == (32, 32) and after.shape[1:3] == (24, 24)


def test_a_damaged_entry_is_dropped_and_decoded_again(tmp_path, video, caplog):
    cache = FrameCache(tmp_path / "cache")
    ts = np.array([0.3, 0.7])
    with use_frame_cache(cache):
        good = decode_at(video, ts)
    (entry,) = (tmp_path / "cache").rglob("*.npy")
    entry.write_bytes(entry.read_bytes()[:40])  # truncated
    with caplog.at_level(logging.WARNING), use_frame_cache(cache):
        again = decode_at(video, ts)
    assert "unreadable" in caplog.text
    np.testing.assert_array_equal(again, good)
    assert np.load(entry).shape == good.shape  # rewritten whole


def test_least_recently_used_entries_go_past_the_limit(tmp_path, video):
    one = 32 * 32 * 3 * 2 + 128  # two frames and the .npy header
    cache = FrameCache(tmp_path / "cache", max_bytes=3 * one)
    times = [np.array([t, t + 0.1]) for t in (0.0, 0.4, 0.8, 1.2, 1.6)]
    with use_frame_cache(cache):
        decode_at(video, times[0])
        for ts in times[1:]:
            decode_at(video, ts)
            decode_at(video, times[0])  # keep the first one in use
    assert cache.size_bytes() <= 3 * one
    kept = {p.stem for p in (tmp_path / "cache").rglob("*.npy")}
    assert FrameCache.key(video, times[0], None, None) in kept
    assert FrameCache.key(video, times[1], None, None) not in kept
    cache.clear()
    assert cache.size_bytes() == 0


def test_an_unwritable_cache_only_warns(tmp_path, video, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    cache = FrameCache(blocker / "cache")
    with caplog.at_level(logging.WARNING), use_frame_cache(cache):
        frames = decode_at(video, np.array([0.0]))
    assert frames.shape == (1, 32, 32, 3) and "could not write to the frame cache" in caplog.text


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from probe.world.embodiments import SPECS
    from probe.world.generate import generate_world
    from probe.world.policy import make_policy, save_policy
    from probe.world.tasks import STAGES, TASK_NAMES

    root = tmp_path_factory.mktemp("world")
    generate_world(root / "w", size="tiny", tasks=["push_block"], episodes_per_task=1)
    torch.manual_seed(0)
    policy = make_policy({k: {"state_dim": s.state_dim, "action_dim": s.action_dim} for k, s in SPECS.items()},
                         list(TASK_NAMES), list(STAGES), image_size=64)
    return root, save_policy(policy, root / "ckpt" / "step-000000", 0, "cotrained")


def test_extract_twice_decodes_once_and_writes_the_same_store(world, tmp_path):
    root, ckpt = world
    data = (f"human={root / 'w/datasets/human'}", f"robot={root / 'w/datasets/robot'}")
    base = dict(checkpoints=(str(ckpt),), data=data, layers=("trunk.block2",), stride=3, batch_size=8, device="cpu")
    cache_dir = tmp_path / "frames"
    first = extract(extract_config(out=str(tmp_path / "a"), frame_cache=str(cache_dir), **base))
    entries = sorted(cache_dir.rglob("*.npy"))
    assert entries
    inodes = {p: p.stat().st_ino for p in entries}
    second = extract(extract_config(out=str(tmp_path / "b"), frame_cache=str(cache_dir), **base))
    assert sorted(cache_dir.rglob("*.npy")) == entries
    assert {p: p.stat().st_ino for p in entries} == inodes  # served, not decoded and written again
    uncached = extract(extract_config(out=str(tmp_path / "c"), frame_cache="off", **base))
    np.testing.assert_array_equal(second.matrix("trunk.block2"), first.matrix("trunk.block2"))
    np.testing.assert_array_equal(uncached.matrix("trunk.block2"), first.matrix("trunk.block2"))


def test_cli_frame_cache_default_lives_under_the_cache_dir_and_off_writes_nothing(world, tmp_path, monkeypatch):
    root, ckpt = world
    monkeypatch.setenv("PROBE_CACHE_DIR", str(tmp_path / "cache"))
    args = ["extract", "--checkpoint", str(ckpt), "--data", f"human={root / 'w/datasets/human'}",
            "--data", f"robot={root / 'w/datasets/robot'}", "--layer", "trunk.block2", "--stride", "4",
            "--device", "cpu"]
    assert main(args + ["--out", str(tmp_path / "off"), "--frame-cache", "off"]) == 0
    assert not (tmp_path / "cache" / "frames").exists()
    assert main(args + ["--out", str(tmp_path / "on")]) == 0
    assert list((tmp_path / "cache" / "frames").rglob("*.npy"))
    assert main(args + ["--out", str(tmp_path / "bad"), "--frame-cache-max", "lots"]) != 0
    assert not (tmp_path / "bad").exists()
