"""Several checkpoints in one pass over the data: same stores as one pass each, data read once, failures isolated."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import extract_config
import torch
from safetensors.torch import save_file

from probe.cli import main
from probe.errors import CheckpointError, ConfigError, LatentsError
from probe.extraction.run import extract
from probe.sizes import parse_bytes
from probe.extraction.passes import plan_passes
from probe.extraction.config import PassConfig

from extract_models import ArrayDataset, tiny_cnn

FACTORY = "extract_models:tiny_cnn"
FRAMES = 2 * 3 * 10  # two datasets of three episodes of ten frames


def _save(tmp_path, name, model):
    path = tmp_path / "ckpts" / f"{name}.safetensors"
    path.parent.mkdir(exist_ok=True)
    save_file(model.state_dict(), path)
    return str(path)


@pytest.fixture
def ckpts(tmp_path):
    return [_save(tmp_path, f"enc-step-{100 * s:06d}", tiny_cnn(seed=s)) for s in (1, 2, 3)]


def datasets():
    return (ArrayDataset("hands", "human", seed=1), ArrayDataset("arm", "robot", seed=2))


def frames_read(data):
    return sum(d.frames_read for d in data)


def config(ckpts, out, data=None, **kw):
    base = dict(checkpoints=tuple(ckpts), data=data or datasets(), layers=("stem", "head"), out=str(out),
                model=FACTORY, adapter="image", adapter_kwargs={"size": None}, batch_size=4, device="cpu")
    return extract_config(**(base | kw))


def _leftovers(directory):
    return sorted(p.name for p in directory.rglob(".*"))


def _assert_same(stores, reference):
    for store, ref in zip(stores, reference):
        assert store.meta["sample_id"].tolist() == ref.meta["sample_id"].tolist()
        for layer in ref.layers:
            np.testing.assert_array_equal(store.matrix(layer), ref.matrix(layer))


def test_one_pass_reads_once_and_equals_one_pass_per_checkpoint(tmp_path, ckpts):
    separate_data, pass_data = datasets(), datasets()
    separate = extract(config(ckpts, tmp_path / "separate", data=separate_data, pass_memory=0))
    together = extract(config(ckpts, tmp_path / "together", data=pass_data))
    assert frames_read(separate_data) == 3 * FRAMES
    assert frames_read(pass_data) == FRAMES  # each frame read and decoded once for the three checkpoints
    assert [s.path.name for s in together] == ["enc-step-000100", "enc-step-000200", "enc-step-000300"]
    _assert_same(together, separate)
    assert not np.allclose(together[0].matrix("head"), together[1].matrix("head"))
    assert together[1].provenance["checkpoint"]["path"] == ckpts[1]
    assert _leftovers(tmp_path / "together") == []


def test_concurrent_model_workers_write_what_one_worker_writes(tmp_path, ckpts, monkeypatch):
    import probe.extraction.passes

    monkeypatch.setattr(probe.extraction.passes, "cpu_cores", lambda: 4)  # four batches in flight, whatever this machine has
    before = torch.get_num_threads()
    torch.set_num_threads(4)
    try:
        together = extract(config(ckpts, tmp_path / "four"))
        assert torch.get_num_threads() == 4  # restored after the pass
    finally:
        torch.set_num_threads(before)
    alone = extract(config(ckpts, tmp_path / "one", model_workers=1))
    _assert_same(together, alone)


def test_model_workers_option_sets_batches_at_once_and_threads(monkeypatch):
    import probe.extraction.passes
    from probe.errors import ConfigError

    monkeypatch.setattr(probe.extraction.passes, "cpu_cores", lambda: 4)
    before = torch.get_num_threads()
    torch.set_num_threads(4)
    try:
        with probe.extraction.passes.model_workers("cpu") as workers:
            assert (workers, torch.get_num_threads()) == (4, 1)
        with probe.extraction.passes.model_workers("cpu", 1) as workers:  # --model-workers 1: one batch on every core
            assert (workers, torch.get_num_threads()) == (1, 4)
        with probe.extraction.passes.model_workers("cuda", 3) as workers:
            assert workers == 1
        assert torch.get_num_threads() == 4
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ConfigError, match="model_workers must be at least 1"):
        config(["x"], "out", model_workers=0)


def test_memory_budget_groups_checkpoints_into_passes(tmp_path, ckpts):
    size = sum(p.numel() * p.element_size() for p in tiny_cnn().parameters())
    data = datasets()
    extract(config(ckpts, tmp_path / "two", data=data, pass_memory=2 * size))
    assert frames_read(data) == 2 * FRAMES  # passes of two checkpoints and of one
    cfg = config(ckpts, tmp_path / "plan", pass_memory=f"{2 * size}B")
    items = [(i, c, tmp_path / str(i)) for i, c in enumerate(ckpts)]
    assert [[r.index for r in runs] for runs in plan_passes(cfg, items, "cpu", 2 * size)] == [[0, 1], [2]]
    assert [len(runs) for runs in plan_passes(cfg, items, "cpu", 0)] == [1, 1, 1]


def test_failing_checkpoint_is_dropped_and_the_others_are_published(tmp_path, ckpts):
    broken = tiny_cnn(seed=5)
    with torch.no_grad():
        broken.head.weight.fill_(float("nan"))
    bad = _save(tmp_path, "enc-step-000500", broken)
    out = tmp_path / "cmp"
    with pytest.raises(LatentsError) as info:
        extract(config([ckpts[0], bad, ckpts[1]], out))
    message = str(info.value)
    assert f"checkpoint '{bad}' failed" in message and "NaN or Inf in layer 'head'" in message
    assert "the stores of the other checkpoints were written" in message and "enc-step-000100" in message
    assert sorted(p.name for p in out.iterdir()) == ["enc-step-000100", "enc-step-000200"]
    assert _leftovers(out) == []  # the failed checkpoint left nothing half-written
    reference = extract(config(ckpts[:2], tmp_path / "ref"))
    from probe.store.store import open_store

    _assert_same([open_store(out / "enc-step-000100"), open_store(out / "enc-step-000200")], reference)


def test_a_truncated_checkpoint_of_a_later_pass_fails_before_the_first_pass(tmp_path, ckpts):
    data = open(ckpts[2], "rb").read()
    cut = tmp_path / "ckpts" / "enc-step-000700.safetensors"
    cut.write_bytes(data[: len(data) // 3])  # e.g. still being written by the trainer
    data_sets = datasets()
    with pytest.raises(CheckpointError, match="truncated"):
        extract(config([ckpts[0], ckpts[1], str(cut)], tmp_path / "cmp", data=data_sets, pass_memory=0))
    assert frames_read(data_sets) == 0 and not (tmp_path / "cmp").exists()


def test_unloadable_checkpoint_fails_before_any_extraction(tmp_path, ckpts):
    corrupt = tmp_path / "ckpts" / "enc-step-000900.safetensors"
    corrupt.write_bytes(b"garbage")
    data = datasets()
    with pytest.raises(CheckpointError, match="corrupt"):
        extract(config([ckpts[0], str(corrupt)], tmp_path / "cmp", data=data))
    assert frames_read(data) == 0 and not (tmp_path / "cmp").exists()


def test_interrupted_pass_resumes_every_checkpoint(tmp_path, ckpts, monkeypatch):
    from extract_models import InterruptingImage

    full = extract(config(ckpts[:2], tmp_path / "full"))
    interrupting = dict(adapter="extract_models:InterruptingImage")  # the same adapter options when resumed
    monkeypatch.setattr(InterruptingImage, "after", 3)
    with pytest.raises(KeyboardInterrupt):
        extract(config(ckpts[:2], tmp_path / "cmp", **interrupting))
    partials = sorted((tmp_path / "cmp").glob(".*.partial"))
    assert len(partials) == 2 and [int(np.load(p / "done.npy").sum()) for p in partials] == [12, 12]
    monkeypatch.setattr(InterruptingImage, "after", None)
    data = datasets()
    resumed = extract(config(ckpts[:2], tmp_path / "cmp", data=data, resume=True, **interrupting))
    assert frames_read(data) == FRAMES - 12  # rows both checkpoints had written are not read again
    _assert_same(resumed, full)
    assert _leftovers(tmp_path / "cmp") == []


def test_resume_with_one_complete_one_interrupted_and_one_new_checkpoint(tmp_path, ckpts, monkeypatch):
    from extract_models import InterruptingImage

    full = extract(config(ckpts, tmp_path / "full"))
    out = tmp_path / "cmp"
    interrupting = dict(adapter="extract_models:InterruptingImage")  # the same adapter options in every run
    extract(config(ckpts[:1], out / "enc-step-000100", **interrupting))  # complete already
    monkeypatch.setattr(InterruptingImage, "after", 3)
    with pytest.raises(KeyboardInterrupt):  # interrupted after three batches
        extract(config(ckpts[1:2], out / "enc-step-000200", **interrupting))
    monkeypatch.setattr(InterruptingImage, "after", None)
    data = datasets()
    resumed = extract(config(ckpts, out, data=data, resume=True, **interrupting))
    assert frames_read(data) == FRAMES  # the new checkpoint needs every frame, read once for both
    _assert_same(resumed, full)
    assert _leftovers(out) == []


def test_parse_bytes():
    assert parse_bytes("4GB") == 4 * 10**9 and parse_bytes("512MiB") == 512 * 2**20
    assert parse_bytes("1.5g") == 1_500_000_000 and parse_bytes(0) == 0 and parse_bytes(1024) == 1024
    assert parse_bytes(None) is None and parse_bytes("auto") is None
    with pytest.raises(ConfigError, match=r"--pass-memory: expected a size like 4GB.*got '4 parsecs'"):
        parse_bytes("4 parsecs")
    with pytest.raises(ConfigError, match="cannot be negative"):
        parse_bytes(-1)
    assert PassConfig(pass_memory="2kB").pass_memory == 2000


def test_cli_pass_memory_options(tmp_path, ckpts, capsys):
    base = ["extract", "--checkpoint", ckpts[0], "--data", "human=/nope", "--layer", "head", "--model", FACTORY,
            "--out", str(tmp_path / "s")]
    assert main(base + ["--pass-memory", "lots"]) == 2
    assert "--pass-memory: expected a size like 4GB" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(base + ["--pass-memory", "1GB", "--one-checkpoint-per-pass"])
    assert "not allowed with argument" in capsys.readouterr().err
