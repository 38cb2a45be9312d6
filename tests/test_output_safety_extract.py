"""Output safety (issue #16) of ``probe extract``: one extract at a time per store, ``--resume`` continues only
the same run, and a store's layers are fixed by its first rows."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from safetensors.torch import save_file

from extract_models import ArrayDataset, InterruptingImage, tiny_cnn
from output_safety_fixtures import FACTORY, ROOT, extract_argv, hidden, one_line_error
from output_safety_fixtures import ckpt as ckpt  # a fixture: imported under its own name
from probe.cli import main
from probe.errors import ConfigError, StoreError
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
