"""What keeps the world's human and robot latents apart? (a measurement script, not a test)

Issue 17 asks the built-in world to show a shared human/robot space emerging with pre-training
diversity; it does not emerge (``docs/world-diversity.md``). This script asks why, on the
checkpoints of a finished sweep (``probe demo`` or ``probe world sweep`` writes them), with
counterfactual renders: the same people filmed in the target robot's lab, from the robot's own
camera, or both (``make_episode(look=..., shot=...)``), moving as the robot does (``moves_as``), and
the target robot moving as a person, also in the person's kitchen and head camera (only its arm and gripper
its own: compared with the robot and with the person), and each pre-training robot beside the target robot. For every checkpoint and pair it reports the kNN embodiment-mixing ratio (k = 15,
cosine; 1 = mixed as by chance, 0 = separate) on the prefix's output (the policy's
``embedding``), and the same ratio for human vs robot at every prefix layer.

Episodes are rendered fresh (their own random streams), with task objects where the target
robot's training data has them (the ``near`` region) for every body, so object positions do not
separate anyone.

    .venv/bin/python benchmarks/bench_world_separation.py --world out/demo/world --episodes 4 \
        --json out/world_separation.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from metrics.knn import knn  # noqa: E402
from metrics.mixing import knn_embodiment_mixing  # noqa: E402
from probe.world.bodies import HUMAN, KITCHEN, LAB, MIXTURE, TARGET  # noqa: E402
from probe.world.episodes import make_episode  # noqa: E402
from probe.world.tasks import TASKS, sample_scene  # noqa: E402

K = 15
PREFIX = ("vision", "fuse", "trunk.block0", "trunk.block1", "trunk.block2", "norm")
HUMANS = {"human": {}, "human in the robot's lab": {"look": LAB}, "human from the robot's camera": {"shot": TARGET.shot},
          "human in the lab, robot's camera": {"look": LAB, "shot": TARGET.shot},
          "human moving as the robot": {"moves_as": "robot"},
          "human moving as the robot, in the lab, robot's camera": {"look": LAB, "shot": TARGET.shot, "moves_as": "robot"}}
# the target robot where only its effector (arm and gripper) is its own: each compared with the robot and the person
ROBOTS = {"robot moving as a person": {"moves_as": "human"},
          "robot in the kitchen, head camera, moving as a person": {"look": KITCHEN, "shot": HUMAN.shot,
                                                                    "moves_as": "human"}}


def render(embodiment: str, episodes: int, stream: int, **overrides) -> list:
    rng = np.random.default_rng([7, stream])
    out = []
    for i in range(episodes * len(TASKS)):
        task = TASKS[i % len(TASKS)]
        out.append(make_episode(task, embodiment, rng, scene=sample_scene(task, rng, region="near"), **overrides))
    return out


def activations(policy, episodes: list, embodiment: str, layers: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Each named module's output on the episodes' frames (the state input is the body's own), captured with
    the extraction's own hooks (:class:`probe.model.hooks.LayerHooks`)."""
    import torch

    from probe.model.hooks import LayerHooks

    tasks = list(policy.config["tasks"])
    images = np.concatenate([e.frames for e in episodes])
    state = np.concatenate([e.state for e in episodes])
    task = np.concatenate([[tasks.index(e.task.name)] * e.length for e in episodes])
    found: dict[str, list] = {name: [] for name in layers}
    with torch.no_grad(), LayerHooks(policy, layers, "flatten", where="world policy") as hooks:
        for rows in np.array_split(np.arange(len(images)), max(1, len(images) // 256)):
            hooks.reset()
            policy(torch.from_numpy(images[rows]).permute(0, 3, 1, 2).float() / 255.0,
                   torch.from_numpy(state[rows]), embodiment, torch.from_numpy(task[rows]))
            for name, x in hooks.collect().items():
                found[name].append(x)
    return {name: torch.cat(v).numpy().astype(np.float32) for name, v in found.items()}


def mixing(a: np.ndarray, b: np.ndarray) -> float:
    X = np.concatenate([a, b]).astype(np.float32)
    return float(knn_embodiment_mixing(knn(X, k=K, metric="cosine"), np.r_[np.zeros(len(a)), np.ones(len(b))]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--world", required=True, type=Path, help="a world directory holding a finished sweep")
    ap.add_argument("--seed", type=int, default=0, help="the sweep's training seed (default 0: WORLD/sweep)")
    ap.add_argument("--episodes", type=int, default=4, help="episodes per task and body (default 4)")
    ap.add_argument("--json", type=Path, help="write the table here as JSON")
    args = ap.parse_args()

    import torch

    from probe.world.policy import load_policy
    from probe.world.sweep import MARKER, sweep_dir

    torch.set_num_threads(2)
    where = sweep_dir(args.world, args.seed)
    sweep = json.loads((where / MARKER).read_text())
    t0 = time.perf_counter()
    robot = render("robot", args.episodes, 1)
    humans = {name: render("human", args.episodes, 2, **kw) for name, kw in HUMANS.items()}
    others = {b.name: render(b.name, args.episodes, 3 + i) for i, b in enumerate(MIXTURE)}
    robots = {name: render("robot", args.episodes, 50 + i, **kw) for i, (name, kw) in enumerate(ROBOTS.items())}
    checkpoints = [(f"{recipe} {r['level']}%", where / path)
                   for r in sweep["levels"] for recipe, path in r["checkpoints"].items()]
    checkpoints += [(f"pretrained {r['level']}%", where / "pretrained" / f"level-{r['level']:03d}")
                    for r in sweep["levels"] if r["pretraining"]]
    rows = []
    for label, path in checkpoints:
        policy = load_policy(path)
        own = activations(policy, robot, "robot", PREFIX)
        row = {"checkpoint": label, "human vs robot by layer": {}, "vs robot": {}, "vs human": {}}
        for name, eps in humans.items():
            acts = activations(policy, eps, "human", PREFIX if name == "human" else ("norm",))
            row["vs robot"][name] = mixing(own["norm"], acts["norm"])
            if name == "human":
                person = acts["norm"]
                row["human vs robot by layer"] = {layer: mixing(own[layer], acts[layer]) for layer in PREFIX}
        for name, eps in robots.items():
            acts = activations(policy, eps, "robot", ("norm",))["norm"]
            row["vs robot"][name], row["vs human"][name] = mixing(own["norm"], acts), mixing(person, acts)
        known = [b for b in others if b in policy.embodiments]
        for b in known:
            row["vs robot"][b] = mixing(own["norm"], activations(policy, others[b], b, ("norm",))["norm"])
        rows.append(row)
        print(f"{label:<18}", "  ".join(f"{k}={v:.2f}" for k, v in row["vs robot"].items()), flush=True)
        print(f"{'':<18}", "vs human:", "  ".join(f"{k}={v:.2f}" for k, v in row["vs human"].items()), flush=True)
        print(f"{'':<18}", "by layer:", "  ".join(f"{k}={v:.2f}" for k, v in row["human vs robot by layer"].items()),
              flush=True)
    result = {"world": str(args.world), "k": K, "episodes_per_task": args.episodes, "rows": rows,
              "seconds": round(time.perf_counter() - t0, 1)}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"done in {result['seconds']} s")


if __name__ == "__main__":
    main()
