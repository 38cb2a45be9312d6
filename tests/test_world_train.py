"""The world's policy and training: forward interface, checkpoints, caching, resuming, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from probe.cli import main
from probe.errors import CheckpointError, ConfigError, OutputExistsError
from probe.world.build import build_world
from probe.world.config import TrainConfig
from probe.world.generate import generate_world
from probe.world.policy import POLICY_TYPE, load_policy
from probe.world.train import train_world

STEPS = [0, 6, 12]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("trained") / "w"
    generate_world(out, size="tiny", seed=0)
    train_world(out, "tiny")
    return out


def _ckpt(world: Path, recipe: str, step: int) -> Path:
    return world / "checkpoints" / recipe / f"step-{step:06d}"


@pytest.mark.parametrize("recipe", ["cotrained", "robot-only"])
def test_checkpoints_are_lerobot_style_safetensors_dirs(world, recipe):
    for step in STEPS:
        d = _ckpt(world, recipe, step)
        assert (d / "config.json").is_file() and (d / "model.safetensors").is_file()
        assert not list(d.glob("*.bin")) + list(d.glob("*.pt")) + list(d.glob("*.pth"))
        cfg = json.loads((d / "config.json").read_text())
        assert cfg["type"] == POLICY_TYPE and cfg["step"] == step and cfg["recipe"] == recipe and cfg["seed"] == 0
        assert cfg["embodiments"]["human"]["state_dim"] == 10 and cfg["embodiments"]["robot"]["state_dim"] == 8
        assert cfg["tasks"] == ["pick_place", "open_drawer", "push_block"] and cfg["image_size"] == [64, 64]
        assert cfg["training"]["embodiments_trained"] == (["human", "robot"] if recipe == "cotrained" else ["robot"])
    assert not [p for p in (world / "checkpoints" / recipe).iterdir() if p.name.startswith(".")]


def test_forward_interface_and_module_names(world):
    policy = load_policy(_ckpt(world, "cotrained", 12))
    names = dict(policy.named_modules())
    for name in ("vision", "stems.human", "stems.robot", "trunk.block0", "trunk.block1", "trunk.block2",
                 "heads.action.human", "heads.action.robot", "heads.ee", "heads.stage", "task_embedding"):
        assert name in names
    assert policy.config["step"] == 12 and not policy.training
    for emb, sd, ad in (("human", 10, 4), ("robot", 8, 5)):
        out = policy(torch.rand(3, 3, 64, 64), torch.rand(3, sd), emb, torch.tensor([0, 1, 2]))
        assert out["action"].shape == (3, ad)
        assert out["ee_trajectory"].shape == (3, 4, 3)
        assert out["stage_logits"].shape == (3, len(policy.config["stages"]))
        assert out["embedding"].shape == (3, 128)
        assert all(torch.isfinite(v).all() for v in out.values())


def test_bad_forward_inputs_are_explained(world):
    policy = load_policy(_ckpt(world, "cotrained", 0))
    with pytest.raises(ConfigError, match=r"state: expected \(B=2, 10\) for embodiment 'human', got \(2, 8\)"):
        policy(torch.rand(2, 3, 64, 64), torch.rand(2, 8), "human", torch.tensor([0, 0]))
    with pytest.raises(ConfigError, match=r"unknown embodiment 'dog'; this policy knows \['human', 'robot'\]"):
        policy(torch.rand(2, 3, 64, 64), torch.rand(2, 8), "dog", torch.tensor([0, 0]))
    with pytest.raises(ConfigError, match=r"image: expected .*\(B, 3, 64, 64\)"):
        policy(torch.rand(2, 64, 64, 3), torch.rand(2, 8), "robot", torch.tensor([0, 0]))


def test_training_changes_what_each_recipe_trains(world):
    def weights(recipe, step):
        return load_file(str(_ckpt(world, recipe, step) / "model.safetensors"))

    co0, co1 = weights("cotrained", 0), weights("cotrained", 12)
    ro0, ro1 = weights("robot-only", 0), weights("robot-only", 12)
    key = "trunk.block0.mlp.0.weight"
    assert torch.equal(co0[key], ro0[key])  # same seed, same initialisation
    assert not torch.equal(co0[key], co1[key]) and not torch.equal(ro0[key], ro1[key])
    stem = "stems.human.0.weight"
    assert not torch.equal(co0[stem], co1[stem])  # co-training updates the human stem
    assert torch.equal(ro0[stem], ro1[stem])  # robot-only never sees a human sample


def test_second_run_is_cached(world):
    marker = world / "checkpoints/cotrained/step-000012/model.safetensors"
    before = marker.stat().st_mtime_ns
    import time

    t = time.perf_counter()
    train_world(world, "tiny")
    assert time.perf_counter() - t < 1.0
    assert marker.stat().st_mtime_ns == before


def test_other_config_is_refused_unless_overwrite(world):
    with pytest.raises(OutputExistsError, match=r"holds checkpoints of another world or training config.*--overwrite "
                                                 r"\(overwrite=True in Python\)"):
        train_world(world, config=TrainConfig.preset("tiny", steps=4, checkpoint_steps=(0, 4),
                                                     recipes=("robot-only",)))


def test_interrupted_training_leaves_no_partial_checkpoint_and_resumes(world, tmp_path):
    out = generate_world(tmp_path / "w", size="tiny", seed=0)
    config = TrainConfig.preset("tiny", recipes=("cotrained",))

    def stop(step):
        if step == 9:
            raise KeyboardInterrupt

    from probe.world.train import train_recipe

    with pytest.raises(KeyboardInterrupt):
        train_recipe(out, "cotrained", config, on_step=stop)
    rdir = out / "checkpoints/cotrained"
    assert sorted(p.name for p in rdir.iterdir()) == ["step-000000", "step-000006"]  # whole dirs only
    assert not (rdir / "training.json").exists()
    train_world(out, config=config)  # resumes from step 6
    assert sorted(p.name for p in rdir.iterdir()) == ["step-000000", "step-000006", "step-000012", "training.json"]
    resumed = load_file(str(rdir / "step-000012/model.safetensors"))
    straight = load_file(str(world / "checkpoints/cotrained/step-000012/model.safetensors"))
    for k in straight:
        np.testing.assert_allclose(resumed[k].numpy(), straight[k].numpy(), rtol=1e-4, atol=1e-5)


def test_train_needs_a_generated_world(tmp_path):
    with pytest.raises(Exception, match="not a generated world.*probe world generate"):
        train_world(tmp_path, "tiny")


def test_load_policy_errors(world, tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_policy(tmp_path / "nope")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({"type": "act"}))
    with pytest.raises(CheckpointError, match="type 'act', expected 'probe-world-policy'"):
        load_policy(bad)


def test_build_world_reuses_everything(world):
    built = build_world(world, "tiny")
    assert built.checkpoint("cotrained") == _ckpt(world, "cotrained", 12)
    assert built.checkpoint("robot-only", 0) == _ckpt(world, "robot-only", 0)
    assert set(built.datasets) == {"human", "robot"}
    with pytest.raises(CheckpointError, match=r"steps: \[0, 6, 12\]"):
        built.checkpoint("cotrained", 5)


def test_cli_world_generate_and_train(world, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["world", "generate", "--out", str(out), "--size", "tiny", "--episodes-per-task", "1",
                 "--tasks", "push_block"]) == 0
    assert "probe world train" in capsys.readouterr().out
    assert main(["world", "generate", "--out", str(out), "--size", "tiny"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["world", "generate", "--out", str(tmp_path / "x"), "--tasks", "fly"]) == 2
    assert "known tasks: pick_place" in capsys.readouterr().err
    assert main(["world", "train", str(out), "--size", "tiny", "--recipes", "robot-only"]) == 0
    assert (out / "checkpoints/robot-only/step-000012/model.safetensors").is_file()


def test_probe_layers_suggests_the_prefix_output_last(world, capsys):
    """``probe layers`` on a world checkpoint suggests the layers to extract, the prefix's last block (where a VLA
    analysis looks) last, so that commands falling back to a store's last layer land on it."""
    assert main(["layers", str(_ckpt(world, "cotrained", 12))]) == 0
    out = capsys.readouterr().out
    suggested = next(line for line in out.splitlines() if line.startswith("suggested layers"))
    assert suggested.endswith("vision, trunk.block0, expert.block0, trunk.block2")
    assert "--layer vision --layer trunk.block0 --layer expert.block0 --layer trunk.block2 --out STORE" in out
