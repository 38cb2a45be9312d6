"""`probe world sweep`: robot pre-training at rising diversity, co-fine-tuning with and without human data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from probe.cli import main
from probe.errors import OutputExistsError
from probe.world.bodies import MIXTURE, mixture_at
from probe.world.config import SweepConfig
from probe.world.generate import generate_world, read_world_config
from probe.world.sweep import run_sweep
from probe.world.embodiments import ee_from_state
from probe.world.train import load_embodiment
from probe.world.tasks import REGIONS


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "world"
    generate_world(out, size="tiny")
    return out


def test_mixture_levels_are_nested_and_span_the_mixture():
    assert mixture_at(0) == ()
    assert mixture_at(100) == MIXTURE
    sizes = [len(mixture_at(level)) for level in (0, 25, 50, 75, 100)]
    assert sizes == sorted(sizes) and len(set(sizes)) == 5
    assert all(mixture_at(25)[i] == mixture_at(75)[i] for i in range(len(mixture_at(25))))
    # the mixture varies every axis the issue names: arms, grippers, cameras, action spaces, scenes
    assert {b.gripper for b in MIXTURE} == {"parallel", "hand"}
    assert {b.action_space for b in MIXTURE} == {"joint", "ee"}
    assert {b.shot.head for b in MIXTURE} == {True, False}
    assert len({b.look for b in MIXTURE}) >= 4 and len({b.arm for b in MIXTURE}) >= 3


def test_world_holds_a_human_only_setting(world):
    info = read_world_config(world)
    tasks = info["config"]["tasks"]
    robot = load_embodiment(world / info["datasets"]["robot"]["path"], "robot", tasks, 4)
    heldout = load_embodiment(world / info["evaluation"]["robot"]["path"], "robot", tasks, 4)
    assert heldout.episode.max() + 1 == info["evaluation"]["robot"]["episodes"]

    def object_x(data) -> np.ndarray:
        # picking and drawer-opening reach straight above the object: the effector's x where 'reach' ends
        ee = ee_from_state("robot", data.state)
        keep = np.isin(data.task, [tasks.index("pick_place"), tasks.index("open_drawer")]) & (data.stage == 0)
        last = np.flatnonzero(keep & ~np.r_[keep[1:], False])
        return ee[last, 0]

    # robot training data keeps its objects in its region; the held-out episodes lie beyond it
    assert object_x(robot).max() <= REGIONS["near"][1] + 0.01
    assert object_x(heldout).min() >= REGIONS["far_right"][0] - 0.01


def test_sweep_trains_every_level_and_records_behaviour(world, capsys):
    config = SweepConfig.preset("tiny")
    sweep = run_sweep(world, config)
    assert sweep.levels == list(config.levels)
    for recipe in ("cotrained", "robot-only"):
        for level, path in zip(config.levels, sweep.checkpoints(recipe)):
            cfg = json.loads((path / "config.json").read_text())
            assert cfg["diversity"] == level and cfg["recipe"] == recipe
            assert cfg["pretraining"]["datasets"] == [b.name for b in mixture_at(level)]
            assert 0 < cfg["behaviour"]["ee_error"] < 1 and 0 <= cfg["behaviour"]["stage_acc"] <= 1
            assert ("transfer_gain" in cfg) == (recipe == "cotrained")
    # every level pre-trains on about the same number of episodes (diversity, not amount, differs)
    budgets = [len(r["pretraining"]) * json.loads((sweep.path / r["checkpoints"]["cotrained"] / "config.json")
                                                  .read_text())["pretraining"]["episodes_per_task"] * 3
               for r in sweep.result["levels"] if r["pretraining"]]
    assert max(budgets) <= 2 * min(budgets)
    for r in sweep.result["levels"]:
        gain = r["transfer_gain"]
        errors = r["behaviour"]
        assert gain["value"] == pytest.approx(1 - errors["cotrained"]["ee_error"] / errors["robot-only"]["ee_error"], rel=1e-4)
        lo, hi = gain["ci"]
        assert lo is None or lo <= gain["value"] <= hi

    # a second run reuses everything; another config is refused unless --overwrite
    stamp = (sweep.checkpoints("cotrained")[-1] / "model.safetensors").stat().st_mtime_ns
    again = run_sweep(world, config)
    assert (again.checkpoints("cotrained")[-1] / "model.safetensors").stat().st_mtime_ns == stamp
    with pytest.raises(OutputExistsError, match=r"--overwrite \(overwrite=True in Python\)"):
        run_sweep(world, SweepConfig.preset("tiny", finetune_steps=21))

    assert main(["world", "sweep", str(world), "--size", "tiny"]) == 0
    printed = capsys.readouterr().out
    assert "transfer gain" in printed and "wrote sweep (seed 0):" in printed


def test_several_training_seeds_each_get_their_own_sweep(world, capsys):
    from probe.world.sweep import sweep_dir

    assert main(["world", "sweep", str(world), "--size", "tiny", "--seed", "0", "1"]) == 0
    printed = capsys.readouterr().out
    assert "wrote sweep (seed 0):" in printed and "wrote sweep (seed 1):" in printed
    # the next steps it prints are commands that run as printed: extract each seed's checkpoints, then report
    import shlex

    from probe.cli import build_parser

    steps = [line.strip() for line in printed.splitlines() if line.strip().startswith("probe ")]
    extracts = [shlex.split(line)[1:] for line in steps if line.startswith("probe extract")]
    assert len(extracts) == 4 and steps[-1].startswith("probe report stores/seed0-*/* stores/seed1-*/*")
    for argv in extracts:
        args = build_parser().parse_args(argv)
        assert len(args.checkpoint) == len(SweepConfig.preset("tiny").levels)
        assert all((Path(c) / "model.safetensors").is_file() for c in args.checkpoint)
    assert sweep_dir(world, 1) == world / "sweep-seed1"
    one = json.loads((world / "sweep-seed1" / "sweep.json").read_text())
    assert one["config"]["seed"] == 1 and [r["level"] for r in one["levels"]] == list(SweepConfig.preset("tiny").levels)
    from safetensors.numpy import load_file

    # the same level trained with another seed: other weights, and the seed recorded in the checkpoint
    top = f"cotrained/level-{max(SweepConfig.preset('tiny').levels):03d}"
    a, b = (load_file(str(sweep_dir(world, s) / top / "model.safetensors")) for s in (0, 1))
    assert not np.array_equal(a["trunk.block0.mlp.0.weight"], b["trunk.block0.mlp.0.weight"])
    assert json.loads((sweep_dir(world, 1) / top / "config.json").read_text())["seed"] == 1
    assert main(["world", "sweep", str(world), "--size", "tiny", "--seed", "-1"]) == 2
    assert "training seeds are integers >= 0" in capsys.readouterr().err


def test_sweep_help_documents_the_levels(capsys):
    with pytest.raises(SystemExit):
        main(["world", "sweep", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps the help
    for size in ("tiny", "small", "default", "large"):
        assert f"{size}: {' '.join(map(str, SweepConfig.preset(size).levels))}" in text
    # the layout it names is the one run_sweep writes
    from probe.world.sweep import RECIPES, level_dir

    assert "WORLD/sweep/{pretrained,cotrained,robot-only}/level-NNN/" in text
    assert {str(level_dir("WORLD", r, 5)) for r in ("pretrained", *RECIPES)} == {
        f"WORLD/sweep/{r}/level-005" for r in ("pretrained", "cotrained", "robot-only")}
    from probe.cli.world import MIXTURE_LINES

    # the static mixture list agrees with the bodies, in order
    described = [line.split(". ", 1)[1] for line in MIXTURE_LINES.splitlines()]
    assert described == [f"{b.name}: {b.kind}, {b.gripper} gripper, {b.action_space} actions, "
                         f"{'head' if b.shot.head else 'fixed'} camera" for b in MIXTURE]
    assert all(b.name in text for b in MIXTURE)


def test_bad_levels_are_one_line(world, capsys):
    assert main(["world", "sweep", str(world), "--levels", "0", "150"]) == 2
    err = capsys.readouterr().err
    assert "0..100" in err and "Traceback" not in err


@pytest.mark.slow
def test_sweep_cotraining_aligns_stages_at_every_level(tmp_path):
    """What the sweep robustly shows (docs/world-diversity.md: the shared space itself does not emerge on this world):
    with human data, a stage classifier trained on robot prefix latents transfers to human ones at every
    level, far better than without it."""
    from test_world_alignment import stage_transfer, trunk_latents

    from probe.world.config import WorldConfig
    from probe.world.policy import load_policy

    out = tmp_path / "w"
    generate_world(out, config=WorldConfig.preset("small", episodes_per_task=5))
    config = SweepConfig(levels=(0, 100), pretrain_steps=300, finetune_steps=200, pretrain_episodes=24)
    sweep = run_sweep(out, config)
    tasks = read_world_config(out)["config"]["tasks"]
    data = {e: load_embodiment(out / f"datasets/{e}", e, tasks, config.horizon) for e in ("human", "robot")}
    for level in config.levels:
        transfer = {}
        for recipe in ("cotrained", "robot-only"):
            policy = load_policy(sweep.checkpoints(recipe)[config.levels.index(level)])
            Xh, yh = trunk_latents(policy, data["human"], "human")
            Xr, yr = trunk_latents(policy, data["robot"], "robot")
            transfer[recipe] = stage_transfer(Xh, yh, Xr, yr)
        assert transfer["cotrained"] > transfer["robot-only"] + 0.1, (level, transfer)
