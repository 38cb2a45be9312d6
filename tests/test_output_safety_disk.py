"""Output safety (issue #16) on full disks: a full disk or a file-size limit is one line with exit code 2 (not a
SIGBUS) and nothing left behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import save_file

from extract_models import tiny_cnn
from fs_helpers import fill, small_disk
from output_safety_fixtures import ROOT, TESTS, one_line_error
from output_safety_fixtures import store as store  # a fixture: imported under its own name
from probe import columns as C
from probe.cli import main

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")


# -- full disks ------------------------------------------------------------------------------------------------


def _cli(argv, **kw) -> subprocess.CompletedProcess:
    """The CLI in a child process: a SIGBUS there fails the test instead of killing the session."""
    code = "import sys\nfrom probe.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    return subprocess.run([sys.executable, "-c", code, *map(str, argv)], cwd=ROOT, capture_output=True, text=True, **kw)


def _big_source(tmp_path, meta) -> Path:
    path = tmp_path / "big.npz"
    X = np.random.default_rng(0).normal(size=(len(meta), 4000)).astype(np.float32)  # 5 MB
    np.savez(path, X=X, embodiment=meta[C.EMBODIMENT].to_numpy(str), episode=meta[C.EPISODE].to_numpy(),
             task=meta[C.TASK].to_numpy(str), stage=meta[C.STAGE].to_numpy(str))
    return path


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def test_import_on_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, meta):
    source = _big_source(tmp_path, meta)
    with small_disk(tmp_path / "small", "1M") as disk:
        done = _cli(["import", source, "--out", disk / "store"])
        assert done.returncode == 2, (done.returncode, done.stderr)  # was -7: killed by SIGBUS
        line = _one_line(done.stderr)
        assert f"no space left on the device of '{disk / 'store'}' (it needs 5.1 MB" in line
        assert "the store was not written" in line
        assert os.listdir(disk) == []


EXTRACT_ON = """
import sys
sys.path.insert(0, sys.argv[1])
from extract_models import ArrayDataset
from probe.errors import ProbeError
from probe.extraction.config import ExtractConfig, PassConfig
from probe.extraction.run import extract
from probe.model.config import ModelConfig

data = tuple(ArrayDataset(n, e, seed=s, n_episodes=10, length=100) for n, e, s in (("hands", "human", 1), ("arm", "robot", 2)))
model = ModelConfig(layers=("stem", "head"), model="extract_models:tiny_cnn", model_kwargs={"dim": 256},
                    adapter_kwargs={"size": None}, device="cpu")
try:
    extract(ExtractConfig(checkpoints=(sys.argv[2],), data=data, out=sys.argv[3], model=model,
                          passes=PassConfig(batch_size=64, frame_cache="off", read_workers=0)))
except ProbeError as exc:
    print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
    sys.exit(2)
"""


def test_extract_on_a_full_disk_is_an_error_not_a_sigbus(tmp_path):
    ckpt = tmp_path / "wide.safetensors"
    save_file(tiny_cnn(dim=256, seed=3).state_dict(), ckpt)
    with small_disk(tmp_path / "small", "1M") as disk:  # 2,000 rows of 'stem' (8) and 'head' (256) need 2.1 MB
        done = subprocess.run([sys.executable, "-c", EXTRACT_ON, str(TESTS), str(ckpt), str(disk / "store")],
                              cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 2, (done.returncode, done.stderr)  # was -7: killed by SIGBUS
        assert "Traceback" not in done.stderr
        *logged, line = done.stderr.strip().splitlines()  # the failed checkpoint is logged, then raised
        assert all("no space left on the device of" in lg for lg in logged)
        assert line.startswith("DiskFullError: no space left on the device of") and "it needs 2.1 MB" in line
        assert "the partial store was removed" in line
        assert os.listdir(disk) == []  # no staging directory filling the disk, no lock file


def test_a_file_size_limit_is_the_same_one_line_error(tmp_path, meta):
    """``ulimit -f`` (EFBIG) exercises the same reservation as a full disk, without root."""
    import resource

    source = _big_source(tmp_path, meta)
    out = tmp_path / "out"
    out.mkdir()

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    done = _cli(["import", source, "--out", out / "store"], preexec_fn=limit)
    assert done.returncode == 2, (done.returncode, done.stderr)
    line = _one_line(done.stderr)
    assert f"no space left on the device of '{out / 'store'}' (it needs 5.1 MB" in line and "file-size limit" in line
    assert os.listdir(out) == []


def test_metrics_json_on_a_full_disk_is_one_line(tmp_path, store, capsys):
    with small_disk(tmp_path / "small", "64k") as disk:
        fill(disk)
        argv = ["metrics", str(store.path), "--families", "mixing", "--bootstrap", "0", "--nulls", "0",
                "--out", str(disk / "m.json")]
        assert main(argv) == 2
        line = one_line_error(capsys)
        assert f"no space left on the device of '{disk / 'm.json'}'" in line and "was not written" in line
        assert os.listdir(disk) == ["filler"]
