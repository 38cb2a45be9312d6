"""Output safety (issue #16) of ``probe extract``: one extract at a time per store, ``--resume`` continues only
the same run, and a store's layers are fixed by its first rows."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from safetensors.torch import save_file

from extract_models import ArrayDataset, InterruptingImage, tiny_cnn, tiny_cnn_checkpoint
from output_safety_fixtures import FACTORY, ROOT, extract_argv, hidden, one_line_error
from output_safety_fixtures import ckpt as ckpt  # a fixture: imported under its own name
from probe.cli import main
from probe.errors import ConfigError, OutputExistsError, StoreError
from probe.extraction.run import extract, lock_path
from probe.store.store import open_store
from probe.store.writer import StoreWriter
from tests.conftest import extract_config

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")


def datasets(**kw):
    return (ArrayDataset("hands", "human", seed=1, **kw), ArrayDataset("arm", "robot", seed=2, **kw))


def config(ckpt, out, **kw):
    base = dict(checkpoints=(str(ckpt),), data=datasets(), layers=("stem", "head"), out=str(out), model=FACTORY,
                adapter="extract_models:InterruptingImage", adapter_kwargs={"size": None}, batch_size=4,
                device="cpu")
    return extract_config(**(base | kw))


# -- one extract at a time per store -------------------------------------------------------------------------


HOLD = ("import sys\nfrom pathlib import Path\nfrom probe.lock import exclusive\n"
        "with exclusive(Path(sys.argv[1]), what='store'):\n    print('held', flush=True)\n    sys.stdin.read()\n")


def test_a_second_extract_into_the_same_out_is_refused_naming_the_first(tmp_path, ckpt, capsys):
    out = tmp_path / "store"
    first = subprocess.Popen([sys.executable, "-c", HOLD, str(lock_path(out))], cwd=ROOT, text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert first.stdout.readline().strip() == "held"
        assert main(extract_argv(out, ckpt)) == 2
        line = one_line_error(capsys)
        assert "is being written by another run" in line and f"pid {first.pid} on " in line
        assert not out.exists() and hidden(tmp_path) == [lock_path(out).name]  # the first run's lock only
    finally:
        first.kill()  # dies holding the lock: its file stays, the lock does not
        first.wait()
    assert hidden(tmp_path) == [lock_path(out).name]
    stored = extract(config(ckpt, out))
    assert stored.n == 60 and hidden(tmp_path) == []


# -- --resume continues only the same run ----------------------------------------------------------------------


def _interrupted(ckpt, out, monkeypatch, **kw):
    monkeypatch.setattr(InterruptingImage, "after", 3)
    with pytest.raises(KeyboardInterrupt):
        extract(config(ckpt, out, **kw))
    monkeypatch.setattr(InterruptingImage, "after", None)
    (partial,) = out.parent.glob(f".*{out.name}*.partial")
    assert np.load(partial / "done.npy").sum() == 12
    return partial


def test_resume_with_another_checkpoint_is_refused_and_the_staged_rows_kept(tmp_path, ckpt, monkeypatch):
    other = ckpt.with_name("enc-b.safetensors")
    save_file(tiny_cnn(seed=9).state_dict(), other)
    out = tmp_path / "store"
    partial = _interrupted(ckpt, out, monkeypatch)
    with pytest.raises(ConfigError, match=r"cannot resume: the staged run in .* used checkpoint\.sha256 [0-9a-f]{12}, "
                                          r"this run [0-9a-f]{12}; rerun without --resume"):
        extract(config(other, out, resume=True))
    assert not out.exists() and np.load(partial / "done.npy").sum() == 12  # still resumable as it was
    resumed = extract(config(ckpt, out, resume=True))
    full = extract(config(ckpt, tmp_path / "full"))
    np.testing.assert_array_equal(resumed.matrix("head"), full.matrix("head"))
    assert hidden(tmp_path) == []


def test_resume_with_other_layers_is_refused(tmp_path, ckpt, monkeypatch):
    out = tmp_path / "store"
    _interrupted(ckpt, out, monkeypatch, layers=("stem",))
    with pytest.raises(ConfigError, match=r'used layers \["stem"\], this run \["head", "stem"\]'):
        extract(config(ckpt, out, resume=True, layers=("stem", "head")))
    with pytest.raises(ConfigError, match=r'used adapter\.kwargs\.size null, this run 8'):
        extract(config(ckpt, out, resume=True, layers=("stem",), adapter_kwargs={"size": 8}))
    assert not out.exists()


def test_resume_over_a_complete_store_made_otherwise_is_refused(tmp_path, ckpt):
    other = ckpt.with_name("enc-b.safetensors")
    save_file(tiny_cnn(seed=9).state_dict(), other)
    out = tmp_path / "store"
    made = extract(config(ckpt, out))
    with pytest.raises(ConfigError, match=r"the complete store .* used checkpoint\.sha256 .*pass --overwrite"):
        extract(config(other, out, resume=True))
    with pytest.raises(ConfigError, match=r"used sampling\.stride 1, this run 2"):
        extract(config(ckpt, out, resume=True, stride=2))
    assert open_store(out).fingerprint == made.fingerprint
    assert extract(config(ckpt, out, resume=True)).fingerprint == made.fingerprint  # the same run: kept


def test_a_layer_that_appears_after_rows_were_written_is_refused(tmp_path, meta, latents_matrix):
    writer = StoreWriter(tmp_path / "s", meta)
    writer.write(np.arange(10), {"a": latents_matrix[:10]})
    with pytest.raises(StoreError, match=r"layer 'b' first appears after 10 rows were written without it"):
        writer.write(np.arange(10, 20), {"a": latents_matrix[10:20], "b": latents_matrix[10:20]})


# -- a rerun after an interrupted run of several checkpoints points to --resume ------------------------------


def test_a_rerun_of_an_unfinished_run_of_several_checkpoints_points_to_resume(tmp_path, ckpt, monkeypatch, capsys):
    other = ckpt.with_name("enc-b.safetensors")
    save_file(tiny_cnn(seed=9).state_dict(), other)
    out = tmp_path / "stores"
    first = extract(config(ckpt, out / "enc-a"))  # the first pass published its store ...
    capsys.readouterr()
    assert main(extract_argv(out, ckpt, other)) == 2  # ... and the second had not begun
    line = one_line_error(capsys)
    assert f"store '{out / 'enc-a'}' already exists, from an unfinished run (no store 'enc-b' yet)" in line
    assert "pass --resume to continue it" in line and "--overwrite to start over" in line
    _interrupted(other, out / "enc-b", monkeypatch)  # ... or was interrupted
    assert main(extract_argv(out, ckpt, other)) == 2
    line = one_line_error(capsys)
    assert "from an unfinished run (the rows of 'enc-b' are staged in" in line and "pass --resume" in line
    both = extract(config(ckpt, out, checkpoints=(str(ckpt), str(other)), resume=True))
    assert [s.path.name for s in both] == ["enc-a", "enc-b"] and both[0].fingerprint == first.fingerprint
    np.testing.assert_array_equal(both[1].matrix("head"), extract(config(other, tmp_path / "b")).matrix("head"))
    assert hidden(out) == []


def test_a_rerun_of_an_interrupted_single_store_points_to_resume_and_keeps_its_rows(tmp_path, ckpt, monkeypatch,
                                                                                     capsys):
    """One checkpoint: a rerun without --resume or --overwrite used to start over; it is refused before any work
    (the staged rows kept), and --resume then continues them."""
    out = tmp_path / "store"
    partial = _interrupted(ckpt, out, monkeypatch)
    capsys.readouterr()
    assert main(extract_argv(out, ckpt)) == 2
    line = one_line_error(capsys)
    assert f"an interrupted run of store '{out}' left its rows staged in" in line
    assert "pass --resume to continue it, or --overwrite to start over" in line
    assert np.load(partial / "done.npy").sum() == 12 and not out.exists()
    with pytest.raises(OutputExistsError, match="pass --resume"):
        extract(config(ckpt, out))
    resumed = extract(config(ckpt, out, resume=True))
    np.testing.assert_array_equal(resumed.matrix("head"), extract(config(ckpt, tmp_path / "fresh")).matrix("head"))
    assert hidden(out.parent) == []


def test_a_users_folder_beside_stores_gets_no_resume_hint(tmp_path, ckpt, capsys):
    out = tmp_path / "stores"
    (out / "enc-a").mkdir(parents=True)
    (out / "enc-a" / "notes.txt").write_text("mine")
    assert main(extract_argv(out, ckpt, ckpt.with_name("enc-b.safetensors"))) == 2
    line = one_line_error(capsys)
    assert "already exists" in line and "--resume" not in line


# -- checkpoints of the same name get telling store names ----------------------------------------------------


def test_checkpoints_of_the_same_name_are_named_by_the_folders_where_they_differ(tmp_path):
    from probe.extraction.run import _checkpoint_names

    names = _checkpoint_names
    assert names(["A/cotrained/level-100", "B/robot-only/level-100"]) == ["cotrained-level-100",
                                                                          "robot-only-level-100"]
    assert names(["a/run/enc.pt", "b/run/enc.pt", "c/x.pt"]) == ["a-enc", "b-enc", "x"]
    assert names(["r1/checkpoints/000400/pretrained_model", "r2/checkpoints/000400/pretrained_model"]) == [
        "r1-000400", "r2-000400"]
    assert names(["A/x/m.pt", "A/y/m.pt", "B/y/m.pt"]) == ["A-x-m", "A-y-m", "B-y-m"]
    assert names(["ckpts/step-000200.pt", "ckpts/step-000400.pt"]) == ["step-000200", "step-000400"]  # as before
    assert names(["same/m.pt", "same/m.pt"]) == ["m", "m"]  # no folder tells them apart: numbered by store_paths


def test_two_checkpoints_of_one_folder_name_go_to_telling_stores(tmp_path):
    a = tiny_cnn_checkpoint(tmp_path / "A" / "cotrained" / "enc.safetensors")
    b = tiny_cnn_checkpoint(tmp_path / "B" / "robot-only" / "enc.safetensors", seed=9)
    out = tmp_path / "stores"
    stores = extract(config(a, out, checkpoints=(str(a), str(b))))
    assert [s.path.name for s in stores] == ["cotrained-enc", "robot-only-enc"]
    assert [s.provenance["checkpoint"]["path"] for s in stores] == [str(a), str(b)]
