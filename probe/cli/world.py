"""probe world: generate the built-in co-training world and train its checkpoints."""

from __future__ import annotations

import argparse

from probe.console import console, outputs

NAME = "world"
HELP = "generate the built-in human/robot co-training world (LeRobot v3 datasets) and train its policy checkpoints"
EXAMPLE = "probe world generate --out world && probe world train world"

SIZES = ("tiny", "small", "default")


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    g = sub.add_parser("generate", help="render human and robot episodes into LeRobot v3.0 datasets")
    g.add_argument("--out", required=True, help="world directory to create (datasets/human, datasets/robot)")
    g.add_argument("--size", default="default", choices=SIZES, help="tiny is for tests, default for the demo")
    g.add_argument("--seed", type=int, default=0, help="generation seed (same seed, same datasets)")
    g.add_argument("--tasks", nargs="+", default=None, help="task names (default: all of pick_place, "
                   "open_drawer, push_block)")
    g.add_argument("--episodes-per-task", type=int, default=None,
                   help="episodes of each task per embodiment (default: the size's preset)")
    g.add_argument("--overwrite", action="store_true", help="replace an existing world directory")
    t = sub.add_parser("train", help="train the co-trained and robot-only recipes on a generated world")
    t.add_argument("world", help="a world directory made by 'probe world generate'")
    t.add_argument("--size", default="default", choices=SIZES, help="training preset (steps, checkpoints)")
    t.add_argument("--recipes", nargs="+", default=None, choices=["cotrained", "robot-only"],
                   help="recipes to train (default: both)")
    t.add_argument("--seed", type=int, default=0, help="training seed")
    t.add_argument("--overwrite", action="store_true", help="replace checkpoints made with another config")
    b = sub.add_parser("build", help="generate and train in one go, reusing cached outputs")
    b.add_argument("--out", required=True, help="world directory")
    b.add_argument("--size", default="default", choices=SIZES)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--overwrite", action="store_true", help="regenerate and retrain")


def run(args: argparse.Namespace) -> int:
    if args.action == "generate":
        from probe.world.generate import generate_world, read_world_config

        out = generate_world(args.out, args.size, args.seed, tasks=args.tasks,
                             episodes_per_task=args.episodes_per_task, overwrite=args.overwrite, progress=True)
        world = read_world_config(out)
        for emb, d in world["datasets"].items():
            console.print(f"{emb}: {d['episodes']} episodes, {d['frames']} frames, video key {d['video_key']}")
        outputs({f"{e} dataset": out / d["path"] for e, d in world["datasets"].items()},
                [f"probe world train {out} --size {args.size}"])
        return 0
    if args.action == "train":
        from probe.world.train import train_world

        done = train_world(args.world, args.size, recipes=args.recipes, seed=args.seed,
                           overwrite=args.overwrite, progress=True)
        outputs({f"{recipe} checkpoints ({len(dirs)})": dirs[0].parent for recipe, dirs in done.items()},
                [f"probe extract {dirs[-1]} ..." for dirs in list(done.values())[:1]])
        return 0
    from probe.world.build import build_world

    world = build_world(args.out, args.size, seed=args.seed, overwrite=args.overwrite, progress=True)
    outputs({"world": world.path} | {f"{r} checkpoints": d[0].parent for r, d in world.checkpoints.items()})
    return 0
