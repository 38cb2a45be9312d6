"""probe world: generate the built-in co-training world and train its checkpoints."""

from __future__ import annotations

import argparse

from probe.console import console, outputs, print_table

NAME = "world"
HELP = "generate the built-in human/robot co-training world (LeRobot v3 datasets) and train its policy checkpoints"
EXAMPLE = "probe world generate --out world && probe world train world"

SIZES = ("tiny", "small", "default", "large")


# Static text, so that building the parser imports nothing heavy; tests/test_world_sweep.py checks it
# against SweepConfig's presets and probe.world.bodies.MIXTURE.
PRESET_LEVELS = "tiny: 0 50 100; small: 0 25 50 100; default: 0 25 50 100; large: 0 25 50 75 100"
MIXTURE_LINES = """\
  1. lab_side: arm, parallel gripper, joint actions, fixed camera
  2. lab_front_b: arm, parallel gripper, joint actions, fixed camera
  3. workshop_overhead: arm, parallel gripper, ee actions, fixed camera
  4. studio_left: arm, parallel gripper, joint actions, fixed camera
  5. home_counter: arm, parallel gripper, ee actions, fixed camera
  6. humanoid_lab: arm, hand gripper, ee actions, head camera
  7. humanoid_home: arm, hand gripper, ee actions, head camera
  8. home_table: arm, parallel gripper, ee actions, fixed camera
"""


SWEEP_DESCRIPTION = """\
The diversity sweep: does a shared human/robot space emerge with robot pre-training diversity?

For each LEVEL (percent of the robot pre-training mixture; 0 = no pre-training):
  1. pre-train on robot data only: the first LEVEL% of the mixture below, the same number of
     episodes and steps at every level, so that levels differ in diversity alone;
  2. fine-tune twice with the same objectives for every embodiment: on human + target robot data
     (cotrained) and on the target robot alone (robot-only, the control); both see the same
     number of target-robot batches (co-training adds as many human batches);
  3. score both on held-out target-robot episodes of the human-only setting (task objects where
     only people put them in training): effector-trajectory error, stage accuracy, and the
     transfer gain 1 - error(cotrained) / error(robot-only) with a paired 95% interval.

Writes WORLD/sweep/{pretrained,cotrained,robot-only}/level-NNN/ and WORLD/sweep/sweep.json;
a second run with the same config reuses them. --seed 0 1 2 trains each level with three seeds
(seed N > 0 in WORLD/sweep-seedN/): a report over all of them gives each level's values with
95% intervals across seeds. The mixture, narrow to broad:
"""



def _action(sub, name: str, help: str, description: str, example: str) -> argparse.ArgumentParser:
    """A ``probe world ACTION`` parser with a description, an example and ``--debug`` like every command."""
    import textwrap

    p = sub.add_parser(name, help=help, epilog=f"example:\n  {example}",
                       description=description if "\n" in description else textwrap.fill(description, 100),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show full tracebacks on errors")
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    g = _action(sub, "generate", "render human and robot episodes into LeRobot v3.0 datasets",
                "Render the built-in world's human and robot episodes (pick_place, open_drawer, push_block) into "
                "two LeRobot v3.0 datasets, WORLD/datasets/human and WORLD/datasets/robot.",
                "probe world generate --out world --size small")
    g.add_argument("--out", required=True, help="world directory to create (datasets/human, datasets/robot)")
    g.add_argument("--size", default="default", choices=SIZES,
                   help="tiny is for tests, default for the demo (default: %(default)s)")
    g.add_argument("--seed", type=int, default=0, help="generation seed: same seed, same datasets (default: 0)")
    g.add_argument("--tasks", nargs="+", default=None, help="task names (default: all of pick_place, "
                   "open_drawer, push_block)")
    g.add_argument("--episodes-per-task", type=int, default=None,
                   help="episodes of each task per embodiment (default: the size's preset)")
    g.add_argument("--overwrite", action="store_true", help="replace an existing world directory")
    t = _action(sub, "train", "train the co-trained and robot-only recipes on a generated world",
                "Train the world policy twice on a generated world: on human + robot data (cotrained) and on "
                "robot data alone (robot-only). Checkpoints go to WORLD/checkpoints/<recipe>/step-NNNNNN; a second "
                "run with the same config reuses them.",
                "probe world train world --size small")
    t.add_argument("world", help="a world directory made by 'probe world generate'")
    t.add_argument("--size", default="default", choices=SIZES,
                   help="training preset: steps and checkpoints (default: %(default)s)")
    t.add_argument("--recipes", nargs="+", default=None, choices=["cotrained", "robot-only"],
                   help="recipes to train (default: both)")
    t.add_argument("--seed", type=int, default=0, help="training seed (default: 0)")
    t.add_argument("--overwrite", action="store_true", help="replace checkpoints made with another config")
    w = _action(sub, "sweep", "pre-train on robot mixtures of rising diversity, co-fine-tune with human data, "
                "score transfer", SWEEP_DESCRIPTION + MIXTURE_LINES,
                "probe world sweep world --size small --seed 0 1 2")
    w.add_argument("world", help="a world directory made by 'probe world generate'")
    w.add_argument("--size", default="default", choices=SIZES,
                   help="preset of levels and training lengths (default: %(default)s)")
    w.add_argument("--levels", nargs="+", type=int, default=None, metavar="PERCENT",
                   help="pre-training diversity levels in percent of the mixture (0 = no pre-training); "
                        f"default: the size's preset ({PRESET_LEVELS})")
    w.add_argument("--seed", type=int, nargs="+", default=[0], metavar="SEED",
                   help="training seed(s); several give intervals across seeds in reports (default: 0)")
    w.add_argument("--overwrite", action="store_true", help="replace a sweep made with another config")
    b = _action(sub, "build", "generate and train in one go, reusing cached outputs",
                "'probe world generate' then 'probe world train' (both recipes) into one world directory; what an "
                "earlier run made with the same size and seed is reused.",
                "probe world build --out world --size small")
    b.add_argument("--out", required=True, help="world directory")
    b.add_argument("--size", default="default", choices=SIZES,
                   help="dataset and training preset: tiny is for tests, default for the demo (default: %(default)s)")
    b.add_argument("--seed", type=int, default=0, help="generation and training seed (default: 0)")
    b.add_argument("--overwrite", action="store_true", help="regenerate and retrain")


def run(args: argparse.Namespace) -> int:
    if args.action == "generate":
        from probe.world.generate import generate_world, read_world_config

        out = generate_world(args.out, args.size, args.seed, tasks=args.tasks,
                             episodes_per_task=args.episodes_per_task, overwrite=args.overwrite, progress=True)
        world = read_world_config(out)
        for emb, d in world["datasets"].items():
            console.print(f"{emb}: {d['episodes']} episodes, {d['frames']} frames, video key {d['video_key']}",
                          markup=False)
        outputs({f"{e} dataset": out / d["path"] for e, d in world["datasets"].items()},
                [f"probe world sweep {out} --size {args.size}", f"probe world train {out} --size {args.size}"])
        return 0
    if args.action == "sweep":
        return _sweep(args)
    if args.action == "train":
        from probe.world.train import train_world

        done = train_world(args.world, args.size, recipes=args.recipes, seed=args.seed,
                           overwrite=args.overwrite, progress=True)
        outputs({f"{recipe} checkpoints ({len(dirs)})": dirs[0].parent for recipe, dirs in done.items()},
                [f"probe extract --checkpoint {dirs[-1]} --data human={args.world}/datasets/human "
                 f"--data robot={args.world}/datasets/robot --out stores/{recipe}" for recipe, dirs in done.items()])
        return 0
    from probe.world.build import build_world

    world = build_world(args.out, args.size, seed=args.seed, overwrite=args.overwrite, progress=True)
    outputs({"world": world.path} | {f"{r} checkpoints": d[0].parent for r, d in world.checkpoints.items()})
    return 0


def _sweep(args: argparse.Namespace) -> int:
    import shlex
    from pathlib import Path

    from probe.world.config import SweepConfig
    from probe.world.sweep import run_sweeps, transfer_table

    config = SweepConfig.preset(args.size, **({"levels": tuple(args.levels)} if args.levels else {}))
    sweeps = run_sweeps(args.world, config, args.seed, overwrite=args.overwrite, progress=True)
    for sweep in sweeps:
        print_table(transfer_table(sweep.result))
    seeds = [s.result["config"]["seed"] for s in sweeps]
    data = [f"{e}={Path(args.world) / 'datasets' / e}" for e in ("human", "robot")]
    extract = [shlex.join(["probe", "extract", "--checkpoint", *map(str, sweep.checkpoints(recipe)),
                           "--data", data[0], "--data", data[1], "--out", f"stores/seed{seed}-{recipe}"])
               for sweep, seed in zip(sweeps, seeds) for recipe in ("cotrained", "robot-only")]
    stores = " ".join(f"stores/seed{seed}-*/*" for seed in seeds)
    outputs({f"sweep (seed {seed})": sweep.path / "sweep.json" for sweep, seed in zip(sweeps, seeds)},
            extract + [f"probe report {stores} --out report"])
    return 0
