"""Datasets are read in place and never written: an output path that is a dataset (a LeRobot folder, a
hand-keypoints recording) or lies inside one, or (``probe extract``) lies inside a ``--data`` folder, is one
line with exit code 2 before any work, the dataset left as it was; and a directory with no write permission
bit is read-only for root too."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED_DATA, files_under
from output_safety_fixtures import ckpt as ckpt, store as store  # fixtures: imported under their own names
from output_safety_fixtures import extract_argv, hidden, one_line_error
from probe.cli import main
from probe.dataset_folders import KEYPOINTS, LEROBOT, dataset_kind
from probe.errors import OutputPathError
from probe.validate import check_output_location, check_output_path

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")

REAL_ROBOT = SHARED_DATA / "g1_inspire_pick_can"
REAL_SIM = SHARED_DATA / "gr1_sim_picknplace"
SAID = "datasets are read in place and never written: choose a path outside it"


def lerobot_folder(root: Path) -> Path:
    """A LeRobot-shaped v3.0 folder: what recognises one (meta/info.json) and a data file."""
    (root / "meta").mkdir(parents=True)
    (root / "meta" / "info.json").write_text(json.dumps({"codebase_version": "v3.0", "fps": 10}))
    (root / "data" / "chunk-000").mkdir(parents=True)
    (root / "data" / "chunk-000" / "file-000.parquet").write_bytes(b"PAR1")
    return root


def keypoints_folder(root: Path) -> Path:
    """A hand-keypoints recording: a (T, 21, 3) .npy beside its video."""
    root.mkdir(parents=True)
    np.save(root / "hand.npy", np.zeros((4, 21, 3), np.float32))
    (root / "hand.mp4").write_bytes(b"\0" * 16)
    return root


def snapshot(folder: Path) -> tuple:
    """Every entry under ``folder`` (files: size and mtime) and the folder's own mtime: a write shows."""
    dirs = sorted(str(Path(d).relative_to(folder)) for d, _, _ in os.walk(folder))
    return dirs, files_under(folder), folder.stat().st_mtime_ns


@pytest.fixture
def robot(tmp_path):
    return lerobot_folder(tmp_path / "robot_ds")


@pytest.fixture
def hand(tmp_path):
    return keypoints_folder(tmp_path / "hand_rec")


def test_the_recogniser_agrees_with_the_readers(robot, hand, tmp_path):
    from probe.readers import detect_format
    from probe.readers.base import Format

    assert dataset_kind(robot) == LEROBOT and detect_format(robot) is Format.LEROBOT_V3
    assert dataset_kind(hand) == KEYPOINTS and detect_format(hand) is Format.KEYPOINTS
    assert dataset_kind(tmp_path / "robot_ds" / "data") is None and dataset_kind(tmp_path) is None


# -- probe extract ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["inside", "root", "root --overwrite"])
def test_extract_into_a_lerobot_dataset_is_one_line_and_leaves_it_alone(where, robot, tmp_path, ckpt, capsys):
    before = snapshot(robot)
    out = robot / "stores" / "x" if where == "inside" else robot
    argv = extract_argv(out, ckpt, extra=["--overwrite"] if "overwrite" in where else [])
    argv[argv.index("human=/nonexistent/hands")] = f"robot={robot}"
    assert main(argv) == 2
    line = one_line_error(capsys)
    assert (f"is inside the LeRobot dataset '{robot}'" if where == "inside" else "is a LeRobot dataset") in line
    assert SAID in line and "already exists" not in line and "--overwrite" not in line, line
    assert snapshot(robot) == before and hidden(tmp_path) == []


def test_extract_inside_any_data_folder_or_onto_a_data_file_is_refused(tmp_path, ckpt, capsys):
    plain = tmp_path / "my_clips"  # not a dataset any reader knows: still --data, still never written
    plain.mkdir()
    (plain / "notes.txt").write_text("mine")
    h5 = tmp_path / "demo.hdf5"
    h5.write_bytes(b"mine")
    for data, out, said in ((plain, plain / "store", f"is inside the --data folder '{plain}'"),
                            (plain, plain, f"is the --data folder '{plain}'"),
                            (h5, h5, f"is the --data file '{h5}'")):
        argv = extract_argv(out, ckpt, extra=["--overwrite"])
        argv[argv.index("human=/nonexistent/hands")] = f"human={data}"
        assert main(argv) == 2
        line = one_line_error(capsys)
        assert said in line and SAID in line, line
    assert sorted(os.listdir(plain)) == ["notes.txt"] and h5.read_bytes() == b"mine" and hidden(tmp_path) == []


def test_several_checkpoints_into_a_dataset_are_refused(robot, ckpt, capsys):
    before = snapshot(robot)
    assert main(extract_argv(robot / "stores", ckpt, ckpt.with_name("enc-b.safetensors"))) == 2
    assert f"is inside the LeRobot dataset '{robot}'" in one_line_error(capsys)
    assert snapshot(robot) == before


# -- every other command that writes ----------------------------------------------------------------------------


def _commands(store):
    return {
        "report": lambda out: ["report", str(store.path), "--out", str(out)],
        "index": lambda out: ["index", str(store.path), "--out", str(out)],
        "metrics --out": lambda out: ["metrics", str(store.path), "--out", str(out)],
        "export": lambda out: ["export", str(store.path), "--layer", "latent", "--out", str(out)],
    }


@pytest.mark.parametrize("command", ["report", "index", "metrics --out", "export"])
@pytest.mark.parametrize("dataset", ["lerobot", "keypoints"])
def test_other_commands_into_a_dataset_are_one_line(command, dataset, robot, hand, store, tmp_path, capsys):
    folder = robot if dataset == "lerobot" else hand
    before = snapshot(folder)
    name = {"metrics --out": "m.json", "export": "e.parquet"}.get(command, "out")
    assert main(_commands(store)[command](folder / "sub" / name)) == 2
    line = one_line_error(capsys)
    kind = "LeRobot dataset" if dataset == "lerobot" else "hand-keypoints recording"
    assert f"is inside the {kind} '{folder}'" in line and SAID in line, line
    assert snapshot(folder) == before and hidden(tmp_path) == []


def test_overwrite_of_a_dataset_root_names_the_dataset_not_already_exists(robot, store, capsys):
    before = snapshot(robot)
    for extra in ([], ["--overwrite"]):
        assert main(_commands(store)["report"](robot) + extra) == 2
        line = one_line_error(capsys)
        assert f"report directory '{robot}' is a LeRobot dataset" in line and "already exists" not in line, line
    assert snapshot(robot) == before


def test_a_link_into_a_dataset_counts_as_inside_it(robot, tmp_path):
    link = tmp_path / "shortcut"
    link.symlink_to(robot, target_is_directory=True)
    with pytest.raises(OutputPathError, match=f"is inside the LeRobot dataset '{link}'"):
        check_output_location(link / "store", "store")


def test_a_project_folder_with_a_clip_and_an_array_is_no_keypoints_recording(tmp_path):
    """A ``.npy`` beside a video counts as a keypoints recording only when the array is ``(T, 21, 3)`` (read from
    its header), so a user's project folder holding a clip and some other array does not bar outputs inside it."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "clip.mp4").write_bytes(b"\0")
    np.save(project / "latents.npy", np.zeros((5, 16), np.float32))
    assert check_output_location(project / "runs" / "out.json", "output") == project / "runs" / "out.json"
    np.save(project / "hand.npy", np.zeros((5, 21, 3), np.float32))
    with pytest.raises(OutputPathError, match="is inside the hand-keypoints recording"):
        check_output_location(project / "runs" / "out.json", "output")


def test_an_output_beside_a_dataset_still_works(robot, hand, store, tmp_path, capsys):
    before = snapshot(robot), snapshot(hand)
    assert main(_commands(store)["index"](tmp_path / "idx")) == 0
    assert main(_commands(store)["metrics --out"](tmp_path / "m.json") + ["--families", "mixing", "--bootstrap", "0",
                                                                          "--nulls", "0"]) == 0
    assert (tmp_path / "idx" / "index.json").is_file() and (tmp_path / "m.json").is_file()
    assert check_output_path(tmp_path / "fresh" / "out.json", False) == tmp_path / "fresh" / "out.json"
    assert (snapshot(robot), snapshot(hand)) == before


# -- read-only directories, root included -----------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="only root writes into a mode 0o555 directory; for other users os.access already refuses "
                           "it (tests/test_output_safety_paths.py covers that message)")
@pytest.mark.parametrize("command", ["report", "metrics --out"])
def test_a_directory_without_write_bits_is_read_only_for_root_too(command, store, tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert main(_commands(store)[command](ro / "out.json")) == 2
        line = one_line_error(capsys)
        assert f"directory '{ro}' is not writable (mode dr-xr-xr-x" in line, line
        assert "check the path and permissions" in line and os.listdir(ro) == []
        ro.chmod(0o755)  # an ordinary writable directory: as before
        assert check_output_path(ro / "out.json", False) == ro / "out.json"
    finally:
        ro.chmod(0o755)


# -- the real, read-only datasets (never written: nothing below can write, even if a check were lost) ----------


@pytest.mark.skipif(not REAL_ROBOT.is_dir() or not REAL_SIM.is_dir(), reason="the shared real datasets are absent")
def test_the_real_datasets_are_refused(ckpt, monkeypatch, capsys):
    from probe.errors import ConfigError
    from probe.report.build import REPORT_KIND
    from probe.store.store import STORE_KIND

    def guard(*args, **kwargs):  # the first step after extract's output checks: stop before any lock or store
        raise ConfigError("GUARD: the output checks let an --out inside a real dataset through")

    monkeypatch.setattr("probe.model.checkpoints.check_checkpoint", guard)
    before = snapshot(REAL_ROBOT), snapshot(REAL_SIM)
    for out, extra in ((REAL_ROBOT / "stores" / "x", []), (REAL_ROBOT, ["--overwrite"])):
        argv = extract_argv(out, ckpt, extra=extra)
        argv[argv.index("human=/nonexistent/hands")] = f"robot={REAL_ROBOT}"
        assert main(argv) == 2
        line = one_line_error(capsys)
        said = "is a LeRobot dataset" if out == REAL_ROBOT else f"is inside the LeRobot dataset '{REAL_ROBOT}'"
        assert f"--out '{out}' {said}" in line and "already exists" not in line, line
    with pytest.raises(OutputPathError, match=f"is inside the LeRobot dataset '{REAL_SIM}'"):
        check_output_path(REAL_SIM / "report", False, kind=REPORT_KIND)  # probe report's check, which writes nothing
    with pytest.raises(OutputPathError, match="is a LeRobot dataset; datasets are read in place"):
        check_output_path(REAL_SIM, True, kind=STORE_KIND)
    assert (snapshot(REAL_ROBOT), snapshot(REAL_SIM)) == before
