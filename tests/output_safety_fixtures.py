"""Shared checks and fixtures of the output-safety tests (issue #16): a command's one-line error, the hidden files
it may leave behind, ``probe extract``'s argv, a store and a checkpoint.

A test module takes a fixture by importing it under its own name (``from output_safety_fixtures import store as
store``), which makes it that module's fixture, as if defined there.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from extract_models import tiny_cnn_checkpoint
from probe.store.writer import write_store

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
FACTORY = "extract_models:tiny_cnn"


def one_line_error(capsys) -> str:
    """The command's stderr: one line, ``error: ...``, no traceback (after progress bars, if any)."""
    err = capsys.readouterr().err
    *bars, line = [line.strip() for line in err.splitlines() if line.strip()] or [""]
    assert line.startswith("error: ") and "Traceback" not in err, err
    assert all("%|" in bar or "it/s" in bar for bar in bars), err
    return line


def hidden(folder: Path) -> list[str]:
    """Temporaries, staging and lock files a command may have left in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) if folder.is_dir() else []


@pytest.fixture
def store(tmp_path, meta, latents_matrix):
    return write_store(tmp_path / "data" / "store", meta, {"latent": latents_matrix})


@pytest.fixture
def ckpt(tmp_path):
    return tiny_cnn_checkpoint(tmp_path / "ckpts" / "enc-a.safetensors")


def extract_argv(out, *checkpoints, extra=()):
    """``probe extract`` whose output checks come first: the data need not exist to test them."""
    argv = ["extract", "--data", "human=/nonexistent/hands", "--layer", "head", "--model", FACTORY, "--out", str(out)]
    for checkpoint in checkpoints:
        argv += ["--checkpoint", str(checkpoint)]
    return argv + list(extra)
