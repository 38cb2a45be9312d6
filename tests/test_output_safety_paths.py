"""Output safety (issue #16): ``--overwrite`` replaces only the toolkit's own output of the same kind, and
output paths that cannot be written (a file or a directory in the way, a read-only folder, an OS error) are one
line with exit code 2 and nothing left behind; outputs follow the umask."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from fs_helpers import read_only
from output_safety_fixtures import ckpt as ckpt, store as store  # fixtures: imported under their own names
from output_safety_fixtures import extract_argv, hidden, one_line_error
from probe import columns as C
from probe.cli import main
from probe.retrieval.index import build_index
from probe.store.store import open_store

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")


@pytest.fixture
def index(store, tmp_path):
    return build_index(store, "latent", tmp_path / "data" / "index")


@pytest.fixture
def source(tmp_path, meta, latents_matrix):
    """An ``.npz`` for ``probe import``."""
    path = tmp_path / "data" / "latents.npz"
    path.parent.mkdir(exist_ok=True)
    np.savez(path, X=latents_matrix, embodiment=meta[C.EMBODIMENT].to_numpy(str), episode=meta[C.EPISODE].to_numpy(),
             task=meta[C.TASK].to_numpy(str), stage=meta[C.STAGE].to_numpy(str))
    return path


def _commands(store, index, source, ckpt):
    """Each command with an output directory, as ``(name, argv for an --out)``."""
    return {
        "import": lambda out: ["import", str(source), "--out", str(out)],
        "extract": lambda out: extract_argv(out, ckpt),
        "index": lambda out: ["index", str(store.path), "--out", str(out)],
        "report": lambda out: ["report", str(store.path), "--out", str(out)],
        "retrieve --export-clips": lambda out: ["retrieve", "--index", str(index.path), "--sample-id",
                                                str(store.meta[C.SAMPLE_ID].iloc[0]), "--export-clips", str(out)],
    }


def _file_commands(store, index):
    """Each command with an output file."""
    return {
        "metrics --out": lambda out: ["metrics", str(store.path), "--out", str(out)],
        "metrics --csv": lambda out: ["metrics", str(store.path), "--csv", str(out)],
        "export": lambda out: ["export", str(store.path), "--layer", "latent", "--out", str(out)],
        "coverage": lambda out: ["coverage", str(store.path), "--out", str(out)],
        "retrieve --eval --out": lambda out: ["retrieve", "--index", str(index.path), "--eval", "--out", str(out)],
    }


DIR_COMMANDS = ["import", "extract", "index", "report", "retrieve --export-clips"]
FILE_COMMANDS = ["metrics --out", "metrics --csv", "export", "coverage", "retrieve --eval --out"]


# -- --overwrite replaces only the toolkit's own output of the same kind ---------------------------------------


@pytest.mark.parametrize("command", DIR_COMMANDS)
def test_overwrite_never_replaces_a_users_folder(command, tmp_path, store, index, source, ckpt, capsys):
    mine = tmp_path / "mine"
    (mine / "thesis").mkdir(parents=True)
    (mine / "notes.txt").write_text("mine")
    argv = _commands(store, index, source, ckpt)[command](mine) + ["--overwrite"]
    assert main(argv) == 2
    line = one_line_error(capsys)
    assert f"'{mine}' is not a" in line and "written by this toolkit" in line and "notes.txt" in line
    assert (mine / "notes.txt").read_text() == "mine" and (mine / "thesis").is_dir()
    assert hidden(tmp_path) == [] and hidden(mine) == []


def test_overwrite_replaces_the_toolkits_own_output_of_the_same_kind_only(tmp_path, store, index, source, capsys):
    out = tmp_path / "out"
    assert main(["import", str(source), "--out", str(out)]) == 0
    assert main(["import", str(source), "--out", str(out), "--overwrite"]) == 0  # a store: replaced
    (tmp_path / "empty").mkdir()
    assert main(["import", str(source), "--out", str(tmp_path / "empty"), "--overwrite"]) == 0  # nothing to lose
    assert open_store(tmp_path / "empty").n == store.n
    capsys.readouterr()
    assert main(["import", str(source), "--out", str(index.path), "--overwrite"]) == 2  # an index is no store
    assert "is not a store written by this toolkit" in one_line_error(capsys)
    assert (index.path / "index.json").is_file()
    assert main(["index", str(store.path), "--out", str(out), "--overwrite"]) == 2  # nor a store an index
    assert "is not an index directory written by" in one_line_error(capsys) and open_store(out).n == store.n
    assert hidden(tmp_path) == []


def test_out_that_is_the_working_directory_or_above_or_home_is_refused(tmp_path, source, ckpt, monkeypatch, capsys):
    work = tmp_path / "work" / "here"
    work.mkdir(parents=True)
    (work / "keep.txt").write_text("mine")
    monkeypatch.chdir(work)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for out in (".", "..", str(work), str(home), "/"):
        assert main(["import", str(source), "--out", out, "--overwrite"]) == 2
        line = one_line_error(capsys)
        assert ("is the home directory, one above it or the file-system root" in line if out == str(home)
                else "current directory or one above it" in line), line  # '/' is above the working directory
    assert main(extract_argv(".", ckpt, ckpt.with_name("enc-b.safetensors"), extra=["--overwrite"])) == 2
    assert "current directory" in one_line_error(capsys)
    assert (work / "keep.txt").read_text() == "mine" and sorted(os.listdir(work)) == ["keep.txt"]


def test_several_checkpoints_replace_only_their_own_stores(tmp_path, ckpt, capsys):
    out = tmp_path / "stores"
    (out / "enc-b").mkdir(parents=True)  # a user's folder named like a checkpoint
    (out / "enc-b" / "notes.txt").write_text("mine")
    (out / "README").write_text("mine")
    assert main(extract_argv(out, ckpt, ckpt.with_name("enc-b.safetensors"), extra=["--overwrite"])) == 2
    line = one_line_error(capsys)
    assert f"'{out / 'enc-b'}' is not a store written by this toolkit" in line
    assert (out / "enc-b" / "notes.txt").read_text() == "mine" and (out / "README").read_text() == "mine"
    assert sorted(os.listdir(out)) == ["README", "enc-b"]


# -- paths that cannot be written: checked before any work -------------------------------------------------------


@pytest.mark.parametrize("command", DIR_COMMANDS + FILE_COMMANDS)
def test_a_file_in_the_middle_of_the_output_path_is_one_line(command, tmp_path, store, index, source, ckpt, capsys):
    blocker = tmp_path / "afile"
    blocker.write_text("mine")
    argv = (_commands(store, index, source, ckpt) | _file_commands(store, index))[command](blocker / "sub" / "out")
    assert main(argv) == 2
    assert f"'{blocker}' is a file, so " in one_line_error(capsys)
    assert blocker.read_text() == "mine" and hidden(tmp_path) == []


@pytest.mark.parametrize("command", FILE_COMMANDS)
def test_a_directory_where_an_output_file_goes_is_one_line(command, tmp_path, store, index, capsys):
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    assert main(_file_commands(store, index)[command](folder)) == 2
    assert f"'{folder}' is a directory" in one_line_error(capsys)
    assert os.listdir(folder) == ["keep.txt"]


@pytest.mark.parametrize("command", DIR_COMMANDS)
def test_a_file_where_an_output_directory_goes_is_one_line(command, tmp_path, store, index, source, ckpt, capsys):
    file = tmp_path / "afile"
    file.write_text("mine")
    assert main(_commands(store, index, source, ckpt)[command](file) + ["--overwrite"]) == 2
    assert f"'{file}' is a file, but a" in one_line_error(capsys)
    assert file.read_text() == "mine"


@pytest.mark.parametrize("command", DIR_COMMANDS + FILE_COMMANDS)
def test_a_read_only_output_directory_is_one_line(command, tmp_path, store, index, source, ckpt, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    with read_only(ro):
        argv = (_commands(store, index, source, ckpt) | _file_commands(store, index))[command](ro / "out")
        assert main(argv) == 2
        line = one_line_error(capsys)
    assert f"directory '{ro}' is not writable" in line and "check the path and permissions" in line
    assert os.listdir(ro) == []


def test_an_os_error_no_check_foresaw_is_one_line_and_debug_shows_it(tmp_path, store, capsys):
    out = tmp_path / ("x" * 300 + ".json")  # a name longer than the file system allows
    argv = ["metrics", str(store.path), "--families", "mixing", "--bootstrap", "0", "--nulls", "0", "--out", str(out)]
    assert main(argv) == 2
    line = one_line_error(capsys)
    assert line.startswith("error: File name too long: '") and line.endswith("; check the path and permissions")
    with pytest.raises(OSError):
        main(["--debug"] + argv)
    assert hidden(tmp_path) == []


# -- permissions follow the umask ------------------------------------------------------------------------------


def _modes(root: Path) -> dict[str, int]:
    out = {".": root.stat().st_mode & 0o777}
    for path in root.rglob("*"):
        out[str(path.relative_to(root))] = path.stat().st_mode & 0o777
    return out


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_outputs_follow_the_umask(umask, tmp_path, store, source, capsys):
    before = os.umask(umask)
    try:
        assert main(["import", str(source), "--out", str(tmp_path / "store")]) == 0
        assert main(["index", str(store.path), "--out", str(tmp_path / "index")]) == 0
        assert main(["coverage", str(store.path), "--out", str(tmp_path / "coverage.json")]) == 0
    finally:
        os.umask(before)
    folder, file = 0o777 & ~umask, 0o666 & ~umask
    for root in (tmp_path / "store", tmp_path / "index"):
        modes = _modes(root)
        assert {name: mode for name, mode in modes.items() if mode != ((root / name).is_dir() and folder or file)} == {}
    assert (tmp_path / "coverage.json").stat().st_mode & 0o777 == file
