"""Reading in worker processes (``read_workers``): the same stores, errors and warnings as reading in a thread."""

from __future__ import annotations

import glob
import logging
import os

import numpy as np
import pytest

from tests.conftest import extract_config
import torch

from probe import columns as C
from probe.cli import main
from probe.errors import ConfigError, DataError
from probe.extraction.run import extract
from probe.extraction.readpool import SHARE_PREFIX, _share_dir, default_read_workers

from extract_models import ArrayDataset

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from probe.world.embodiments import SPECS
    from probe.world.generate import generate_world
    from probe.world.policy import make_policy, save_policy
    from probe.world.tasks import STAGES, TASK_NAMES

    root = tmp_path_factory.mktemp("world")
    generate_world(root / "w", size="tiny", tasks=["push_block", "open_drawer"], episodes_per_task=1)
    torch.manual_seed(0)
    policy = make_policy({k: {"state_dim": s.state_dim, "action_dim": s.action_dim} for k, s in SPECS.items()},
                         list(TASK_NAMES), list(STAGES), image_size=64)
    return root, save_policy(policy, root / "ckpt" / "step-000000", 0, "cotrained")


def _config(world, out, **kw):
    root, ckpt = world
    data = (f"human={root / 'w/datasets/human'}", f"robot={root / 'w/datasets/robot'}")
    return extract_config(**(dict(checkpoints=(str(ckpt),), data=data, layers=("vision", "trunk.block2"), out=str(out),
                                 batch_size=16, device="cpu", frame_cache="off") | kw))


def _shared_leftovers():
    return glob.glob(os.path.join(_share_dir(), f"{SHARE_PREFIX}{os.getpid()}-*"))


def test_reader_processes_write_what_a_reader_thread_writes(world, tmp_path):
    threaded = extract(_config(world, tmp_path / "thread", read_workers=0))
    forked = extract(_config(world, tmp_path / "procs", read_workers=2))
    assert forked.n == threaded.n > 16 * 4  # several batches per process
    for layer in ("vision", "trunk.block2"):
        np.testing.assert_array_equal(forked.matrix(layer), threaded.matrix(layer))
    assert forked.meta[C.SAMPLE_ID].tolist() == threaded.meta[C.SAMPLE_ID].tolist()
    assert _shared_leftovers() == []


def test_reader_processes_fill_and_use_the_frame_cache(world, tmp_path):
    cache = tmp_path / "frames"
    first = extract(_config(world, tmp_path / "a", read_workers=2, frame_cache=str(cache)))
    entries = sorted(cache.rglob("*.npy"))
    assert entries  # written by the reader processes
    second = extract(_config(world, tmp_path / "b", read_workers=2, frame_cache=str(cache)))
    assert sorted(cache.rglob("*.npy")) == entries  # nothing decoded again
    np.testing.assert_array_equal(second.matrix("vision"), first.matrix("vision"))


def test_unreadable_episode_in_a_reader_process_is_an_error_naming_it(tmp_path):
    from test_extract import config

    from extract_models import tiny_cnn
    from safetensors.torch import save_file

    ckpt = tmp_path / "enc.safetensors"
    save_file(tiny_cnn(seed=3).state_dict(), ckpt)
    data = (ArrayDataset("hands", "human", seed=1, bad=(1,)), ArrayDataset("arm", "robot", seed=2))
    with pytest.raises(DataError, match="dataset 'hands' episode 1: cannot read frames.*--skip-bad-episodes"):
        extract(config(ckpt, tmp_path / "store", data=data, read_workers=2))
    assert not (tmp_path / "store").exists() and _shared_leftovers() == []


def test_skip_bad_episodes_in_reader_processes_warns_once_and_matches_a_thread(tmp_path, caplog):
    from test_extract import config

    from extract_models import tiny_cnn
    from safetensors.torch import save_file

    ckpt = tmp_path / "enc.safetensors"
    save_file(tiny_cnn(seed=3).state_dict(), ckpt)

    def data():
        return (ArrayDataset("hands", "human", seed=1, bad=(1,)), ArrayDataset("arm", "robot", seed=2))

    with caplog.at_level(logging.WARNING):
        forked = extract(config(ckpt, tmp_path / "procs", data=data(), skip_bad_episodes=True, read_workers=2,
                                batch_size=2))
    assert caplog.text.count("episode 1: cannot read") == 1  # logged once, though several batches found it
    threaded = extract(config(ckpt, tmp_path / "thread", data=data(), skip_bad_episodes=True, read_workers=0,
                              batch_size=2))
    assert forked.n == threaded.n == 50
    np.testing.assert_array_equal(forked.matrix("head"), threaded.matrix("head"))
    assert forked.manifest["warnings"] == threaded.manifest["warnings"]


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_spawned_readers_get_the_datasets_pickled_and_read_the_same_frames(world, method):
    """The start methods of macOS and Windows (the datasets travel pickled, the main module is re-imported)."""
    from probe.extraction.batches import batches_of, read_work
    from probe.extraction.samples import open_data
    from probe.extraction.readpool import read_ahead

    config = _config(world, "-")
    opened = open_data(config.data, config.sampling)
    todo = np.ones(len(opened.samples), dtype=bool)
    alone = [read_work(opened, rows, images=True, size=(64, 64), skip_bad=False)
             for rows in batches_of(opened.samples, todo, 16)]
    spawned = list(read_ahead(opened, batches_of(opened.samples, todo, 16), workers=2, images=True, size=(64, 64),
                              skip_bad=False, bad=set(), method=method))
    assert len(spawned) == len(alone) > 4
    for a, b in zip(alone, spawned):
        np.testing.assert_array_equal(a.rows, b.rows)
        assert list(a.batch.images) == list(b.batch.images)
        for key, frames in a.batch.images.items():
            np.testing.assert_array_equal(frames, b.batch.images[key])
        np.testing.assert_array_equal(a.batch.state, b.batch.state)
    assert _shared_leftovers() == []


def test_default_read_workers_leave_small_machines_reading_in_a_thread():
    assert default_read_workers("cpu", 2) == 0 and default_read_workers("cuda", 2) == 0
    assert default_read_workers("cpu", 16) == 4 and default_read_workers("cuda", 16) == 8
    assert default_read_workers("cuda:0", 6) == 4


def test_negative_read_workers_is_a_config_error(world, tmp_path):
    with pytest.raises(ConfigError, match="read_workers must be at least 0"):
        _config(world, tmp_path / "s", read_workers=-1)
    assert main(["extract", "--checkpoint", "x", "--data", "y", "--layer", "z", "--out", str(tmp_path / "s"),
                 "--read-workers", "-2"]) != 0


def test_without_shared_memory_frames_travel_through_the_pipe_with_a_warning(world, tmp_path, monkeypatch, caplog):
    import probe.extraction.readpool

    blocked = tmp_path / "no-shm"
    blocked.write_text("a file, not a directory: nothing can be created in it (as in a full /dev/shm)")
    monkeypatch.setattr(probe.extraction.readpool, "_share_dir", lambda: str(blocked))
    with caplog.at_level(logging.WARNING):
        piped = extract(_config(world, tmp_path / "piped", read_workers=2))
    assert "could not write frames to shared memory" in caplog.text
    threaded = extract(_config(world, tmp_path / "thread", read_workers=0))
    np.testing.assert_array_equal(piped.matrix("vision"), threaded.matrix("vision"))
