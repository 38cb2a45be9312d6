"""Checkpoint loading: safetensors, safe torch.load, wrappers, TorchScript, and every bad input."""

from __future__ import annotations

import argparse
import hashlib
import logging

import pytest
import torch
from safetensors.torch import save_file

from probe.model.checkpoints import CheckpointKind, check_checkpoint, load_checkpoint
from probe.model.state_dicts import load_state_dict
from probe.errors import CheckpointError, ConfigError

from extract_models import tiny_cnn

FACTORY = "extract_models:tiny_cnn"
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")


def _same_outputs(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        return torch.allclose(a(x), b(x))


def test_safetensors_with_factory(tmp_path):
    ref = tiny_cnn(seed=5)
    save_file(ref.state_dict(), tmp_path / "w.safetensors")
    loaded = load_checkpoint(tmp_path / "w.safetensors", model=FACTORY)
    assert loaded.kind == CheckpointKind.STATE_DICT
    assert _same_outputs(ref, loaded.model)
    assert not _same_outputs(tiny_cnn(seed=0), loaded.model)  # weights really came from the file
    assert loaded.sha256 == hashlib.sha256((tmp_path / "w.safetensors").read_bytes()).hexdigest()
    assert loaded.provenance()["factory"] == FACTORY
    assert not loaded.model.training


def test_directory_with_model_safetensors(tmp_path):
    ref = tiny_cnn(seed=5, dim=4)
    (tmp_path / "run").mkdir()
    save_file(ref.state_dict(), tmp_path / "run" / "model.safetensors")
    loaded = load_checkpoint(tmp_path / "run", model=FACTORY, model_kwargs={"dim": 4})
    assert _same_outputs(ref, loaded.model)
    assert loaded.name == "run"


def test_pt_wrappers_prefix_and_step(tmp_path):
    ref = tiny_cnn(seed=7)
    wrapped = {"state_dict": {f"module.{k}": v for k, v in ref.state_dict().items()}, "step": 400,
               "optimizer_lr": 0.1}
    torch.save(wrapped, tmp_path / "ckpt.pt")
    loaded = load_checkpoint(tmp_path / "ckpt.pt", model=FACTORY)
    assert _same_outputs(ref, loaded.model)
    assert loaded.step == 400
    nested = {"model": {"state_dict": ref.state_dict()}}
    torch.save(nested, tmp_path / "nested.pth")
    assert set(load_state_dict(tmp_path / "nested.pth")) == set(ref.state_dict())


def test_torchscript_archive(tmp_path):
    ref = tiny_cnn(seed=2)
    torch.jit.save(torch.jit.script(ref), tmp_path / "enc.pt")
    loaded = load_checkpoint(tmp_path / "enc.pt")
    assert loaded.kind == CheckpointKind.TORCHSCRIPT
    assert _same_outputs(ref, loaded.model)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.safetensors", model=FACTORY)


@pytest.mark.parametrize("name", ["w.safetensors", "w.pt"])
def test_corrupt_checkpoint(tmp_path, name):
    (tmp_path / name).write_bytes(b"\x00\x01not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(tmp_path / name, model=FACTORY)


def test_truncated_safetensors(tmp_path):
    save_file(tiny_cnn().state_dict(), tmp_path / "w.safetensors")
    data = (tmp_path / "w.safetensors").read_bytes()
    (tmp_path / "w.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(tmp_path / "w.safetensors", model=FACTORY)


def test_check_without_loading_finds_truncated_and_missing_files(tmp_path):
    save_file(tiny_cnn().state_dict(), tmp_path / "w.safetensors")
    torch.save(tiny_cnn().state_dict(), tmp_path / "w.pt")
    check_checkpoint(tmp_path / "w.safetensors", model=FACTORY)  # whole files pass
    check_checkpoint(tmp_path / "w.pt", model=FACTORY)
    for name in ("w.safetensors", "w.pt"):
        data = (tmp_path / name).read_bytes()
        (tmp_path / f"cut-{name}").write_bytes(data[: len(data) // 2])
        with pytest.raises(CheckpointError, match="truncated"):
            check_checkpoint(tmp_path / f"cut-{name}", model=FACTORY)
    with pytest.raises(CheckpointError, match="does not exist"):
        check_checkpoint(tmp_path / "nope.pt", model=FACTORY)
    (tmp_path / "policy").mkdir()
    (tmp_path / "policy" / "config.json").write_text('{"type": "probe-world-policy"}')
    with pytest.raises(CheckpointError, match="lacks model.safetensors"):
        check_checkpoint(tmp_path / "policy")


def test_pickle_needs_trust(tmp_path, caplog):
    ref = tiny_cnn(seed=4)
    torch.save(ref, tmp_path / "whole.pt")  # a whole pickled module
    with pytest.raises(CheckpointError, match=r"--trust-checkpoint \(trust=True in Python\)"):
        load_checkpoint(tmp_path / "whole.pt")
    with caplog.at_level(logging.WARNING, logger="probe.model.checkpoints"):
        loaded = load_checkpoint(tmp_path / "whole.pt", trust=True)
    assert loaded.kind == CheckpointKind.PICKLED_MODULE
    assert _same_outputs(ref, loaded.model)
    assert any("trust" in r.getMessage() for r in caplog.records)


def test_pickle_with_objects_and_factory_needs_trust(tmp_path):
    torch.save({"state_dict": tiny_cnn().state_dict(), "args": argparse.Namespace(lr=0.1)}, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match="not loaded because unpickling can run code"):
        load_checkpoint(tmp_path / "c.pt", model=FACTORY)


def test_a_plain_pickle_is_refused_in_one_line_without_torchs_protocol_warning(tmp_path, capsys):
    import pickle
    import warnings

    from probe.cli import main

    path = tmp_path / "model.pkl"
    with path.open("wb") as fh:  # pickle's own protocol 4, not torch.save's 2: torch warns about it
        pickle.dump({"args": argparse.Namespace(lr=0.1)}, fh, protocol=4)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(CheckpointError, match="not loaded because unpickling can run code"):
            load_checkpoint(path)
        assert main(["layers", str(path)]) == 2
    assert not [w for w in seen if "pickle protocol" in str(w.message)], [str(w.message) for w in seen]
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err


def test_keys_do_not_match(tmp_path):
    state = tiny_cnn(dim=16).state_dict()
    state.pop("head.bias")
    state["extra.weight"] = torch.zeros(2)
    save_file(state, tmp_path / "w.safetensors")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path / "w.safetensors", model=FACTORY)
    msg = str(info.value)
    assert "1 missing in checkpoint: head.bias" in msg
    assert "1 unexpected in checkpoint: extra.weight" in msg


def test_shapes_do_not_match(tmp_path):
    save_file(tiny_cnn(dim=16).state_dict(), tmp_path / "w.safetensors")
    with pytest.raises(CheckpointError, match=r"head.weight: model \(4, 8\) vs checkpoint \(16, 8\)"):
        load_checkpoint(tmp_path / "w.safetensors", model=FACTORY, model_kwargs={"dim": 4})


def test_state_dict_without_model(tmp_path):
    torch.save(tiny_cnn().state_dict(), tmp_path / "w.pt")
    with pytest.raises(CheckpointError, match="--model package.module:factory"):
        load_checkpoint(tmp_path / "w.pt")


def test_bad_factory_spec(tmp_path):
    save_file(tiny_cnn().state_dict(), tmp_path / "w.safetensors")
    with pytest.raises(ConfigError, match="has no attribute 'tiny_cnx'"):
        load_checkpoint(tmp_path / "w.safetensors", model="extract_models:tiny_cnx")
    with pytest.raises(ConfigError, match="expected 'package.module:name'"):
        load_checkpoint(tmp_path / "w.safetensors", model="extract_models.tiny_cnn")


def test_directory_that_is_not_a_policy(tmp_path):
    with pytest.raises(CheckpointError, match="not a world policy"):
        load_checkpoint(tmp_path)
