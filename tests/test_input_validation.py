"""Inputs that are accepted but meaningless: each is refused in one line, exit code 2, nothing written."""

from __future__ import annotations

import json

import numpy as np
import pytest

from probe.cli import main
from tests.conftest import SHARED_DATA, assert_refused, clustered_latents, synthetic_meta


def _npz(path, n: int = 40, dim: int = 8, **overrides):
    rng = np.random.default_rng(0)
    arrays = {"X": rng.normal(size=(n, dim)).astype(np.float32),
              "embodiment": np.array(["human", "robot"] * (n // 2)),
              "episode": np.repeat(np.arange(n // 10), 10),
              "task": np.array(["pick"] * n), "stage": np.array(["reach", "grasp"] * (n // 2))}
    arrays.update(overrides)
    np.savez(path, **arrays)
    return path


@pytest.fixture
def store(tmp_path):
    from probe.store.writer import write_store

    meta = synthetic_meta()
    return write_store(tmp_path / "store", meta, {"l": clustered_latents(meta)})


def test_import_refuses_an_npz_without_rows(tmp_path, capsys):
    src = _npz(tmp_path / "empty.npz", n=0)
    assert_refused(capsys, ["import", str(src), "--out", str(tmp_path / "s")], "has no rows")
    assert not (tmp_path / "s").exists()


def test_import_refuses_latents_of_width_zero(tmp_path, capsys):
    src = _npz(tmp_path / "w0.npz", dim=0)
    assert_refused(capsys, ["import", str(src), "--out", str(tmp_path / "s")], "width 0")
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("fps", ["0", "-5", "nan", "inf"])
def test_import_refuses_a_meaningless_frame_rate(tmp_path, capsys, fps):
    src = _npz(tmp_path / "ok.npz")
    assert_refused(capsys, ["import", str(src), "--out", str(tmp_path / "s"), "--fps", fps], "--fps")
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("episode", [np.array(["a", "b"] * 20), np.r_[np.arange(39.0), np.nan],
                                     np.linspace(0, 3, 40)])
def test_import_refuses_episode_ids_that_are_not_integers(tmp_path, capsys, episode):
    src = _npz(tmp_path / "ep.npz", episode=episode)
    assert_refused(capsys, ["import", str(src), "--out", str(tmp_path / "s")], "column 'episode' must hold integer ids")
    assert not (tmp_path / "s").exists()


def test_import_accepts_whole_float_episode_ids(tmp_path, capsys):
    src = _npz(tmp_path / "ep.npz", episode=np.repeat(np.arange(4.0), 10))
    assert main(["import", str(src), "--out", str(tmp_path / "s")]) == 0
    assert (tmp_path / "s" / "manifest.json").is_file()


def test_a_store_of_width_zero_is_refused_downstream(store, capsys):
    manifest = json.loads((store.path / "manifest.json").read_text())
    file = store.path / "layers" / manifest["layers"]["l"]["file"]
    np.save(file, np.zeros((store.n, 0), np.float32))
    manifest["layers"]["l"]["dim"] = 0
    (store.path / "manifest.json").write_text(json.dumps(manifest))
    assert_refused(capsys, ["metrics", str(store.path)], "width 0")


def test_metrics_names_the_embodiments_when_human_is_unknown(store, tmp_path, capsys):
    out = tmp_path / "m.json"
    assert_refused(capsys, ["metrics", str(store.path), "--human", "hand", "--out", str(out)],
             "'hand'", "human, robot", "--human")
    assert not out.exists()


def test_metrics_on_an_empty_store_says_so(tmp_path, capsys):
    from probe.store.writer import write_store

    meta = synthetic_meta()
    empty = write_store(tmp_path / "empty", meta.iloc[:0], {"l": clustered_latents(meta)[:0]})
    assert_refused(capsys, ["metrics", str(empty.path)], "empty (0 rows)")


def test_coverage_refuses_a_negative_top(store, capsys):
    assert_refused(capsys, ["coverage", str(store.path), "--top", "-3"], "--top")


def test_report_refuses_a_negative_bootstrap_before_any_work(store, tmp_path, capsys):
    assert_refused(capsys, ["report", str(store.path), "--out", str(tmp_path / "r"), "--bootstrap", "-1"], "--bootstrap")
    assert not (tmp_path / "r").exists()


def test_layers_summarises_a_mismatched_world_checkpoint_in_one_line(tmp_path, capsys):
    import torch

    from probe.world.policy import make_policy, save_policy

    torch.manual_seed(0)
    policy = make_policy({"human": {"state_dim": 4, "action_dim": 3}, "robot": {"state_dim": 5, "action_dim": 2}},
                         ["pick"], ["reach", "grasp"], image_size=32, model={"width": 32})
    ckpt = save_policy(policy, tmp_path / "ckpt", 0, "cotrained")
    config = json.loads((ckpt / "config.json").read_text())
    config["model"]["width"] = 24
    (ckpt / "config.json").write_text(json.dumps(config))
    err = assert_refused(capsys, ["layers", str(ckpt)], "shape mismatches", "more)", "config.json")
    assert "--model" not in err and len(err) < 600


@pytest.mark.skipif(not (SHARED_DATA / "g1_inspire_pick_can").is_dir(), reason="needs ../shared/data")
def test_layers_advice_names_its_own_flags_for_an_unreadable_episode(tmp_path, capsys):
    from extract_models import tiny_cnn

    import torch

    torch.jit.save(torch.jit.script(tiny_cnn().eval()), tmp_path / "encoder.pt")
    err = assert_refused(capsys, ["layers", str(tmp_path / "encoder.pt"), "--data",
                            f"robot={SHARED_DATA / 'g1_inspire_pick_can'}"], "episode 0", "--input-shape",
                         "pass --skip-bad-episodes")  # a flag probe layers has
    assert "Traceback" not in err
