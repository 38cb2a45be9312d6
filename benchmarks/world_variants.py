"""Variants of the built-in world's diversity sweep (a research script, not part of the package)

Reproduces the scratch experiments of docs/world-diversity.md (the table of changes): it runs the sweep of
``probe world sweep`` with one change to the world or the model, on an existing generated world (``probe world
generate`` or ``probe demo`` writes one), then ``bench_world_separation.py``'s kNN mixing on the result.

Variants (each one function below that patches ``probe.world.*`` in this process only):

* ``standard``: no change. Deeper prefixes need no variant: ``--set model='{"blocks": 8}'``.
* ``procedural-32``: ``--robots N`` (default 32) procedurally varied robots (arm, colours, scene, camera,
  gripper, action space; generator seed fixed) replace the pre-training mixture. The separation measure
  compares the target robot with the first 4 of them, as the scratch runs did.
* ``randomised-looks``: domain randomisation: every episode of a mixture robot draws its table, background,
  link and sleeve colours at random (the target robot and people keep their looks).
* ``randomised-cameras``: every episode of a mixture robot is filmed from a random camera: a third from a swaying
  head camera following the effector, the rest from a fixed camera anywhere around the table.
* ``object-head``: an object-localisation head on the prefix for every body (the task object's table x, y,
  labelled from where the reach stage ends), its loss added to every step. Its checkpoints hold
  ``heads.objects``, so only this script can load them.
* ``trajectory-head``: the effector-trajectory head ``heads.ee`` reads the prefix output instead of the action
  expert (the checkpoints record ``model.trajectory_from = "prefix"``; the package's policy ignores it).
* ``pooled-vision``: the image encoder averages its last feature map over space instead of flattening it (as
  a ViT's tokens are mean-pooled); the checkpoints record ``model.vision_pool = "mean"``, so only this script
  loads them.
* ``replay``: fine-tuning (both recipes) keeps training on the level's pre-training mixture too, with as many
  batches of each mixture dataset as of the target's (VLA post-training often keeps pre-training data).

Several variants combine: ``--variant replay randomised-looks`` applies each in the order given.

OUT gets ``world/`` (links to WORLD's datasets, evaluation, world.json; the sweep in ``sweep/`` or ``sweep-seedN``),
``separation.json`` and ``variant.json`` (what ran). The sweep's cache key does not know the variant: use one
OUT per variant (a second variant in the same OUT is refused).

    .venv/bin/python benchmarks/world_variants.py --world probe-demo/world --variant randomised-looks \\
        --levels 0 100 --out out/variants/randomised-looks
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import weakref
from dataclasses import asdict, fields, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_world_separation as separation  # noqa: E402
from probe.errors import ConfigError, ProbeError  # noqa: E402
from probe.world.config import SweepConfig  # noqa: E402

MARKER = "variant.json"
LINKED = ("datasets", "evaluation", "world.json")


class Refused(Exception):
    """A one-line refusal (exit code 2)."""


# -- the variants: each installs its change and returns the sweep config to run --------------------------------


def standard(config: SweepConfig, args) -> SweepConfig:
    return config


def procedural(config: SweepConfig, args) -> SweepConfig:
    """``args.robots`` procedural robots replace ``bodies.MIXTURE`` (and join ``bodies.BODIES``, which is
    ``embodiments.SPECS``); the separation measure compares the target robot with the first 4."""
    import probe.world.bodies as B

    rng = np.random.default_rng(1234)
    bases = [B.Arm(), B.Arm(base=(-0.35, 0.55, 0.0), heading=0.0), B.Arm(base=(1.35, 0.5, 0.0), heading=180.0)]

    def u(a, b):
        return float(rng.uniform(a, b))

    bodies = []
    for i in range(args.robots):  # the draws, in this order, are the scratch run's: do not reorder them
        view = ["front", "side", "overhead", "head"][i % 4]
        look = B.Look(tuple(rng.uniform(0.25, 0.9, 3).round(2)), tuple(rng.uniform(0.2, 0.95, 3).round(2)), 0.1,
                      (0.8, 1.1))
        if view == "head":
            shot = B.Shot((0.5 + u(-.1, .1), -0.25 + u(-.05, .05), 0.72 + u(-.05, .05)), (0.5, 0.5, 0.0),
                          u(1.15, 1.3), head=True)
        elif view == "front":
            shot = B.Shot((u(0.6, 1.4), u(-0.5, -0.1), u(0.7, 1.0)), (0.5, 0.55, 0.05), u(1.3, 1.5))
        elif view == "side":
            shot = B.Shot((u(-0.5, -0.1), u(-0.2, 0.3), u(0.7, 1.0)), (0.5, 0.55, 0.05), u(1.3, 1.5))
        else:
            shot = B.Shot((0.5 + u(-.1, .1), u(-0.1, 0.05), u(1.3, 1.6)), (0.5, 0.5, 0.0), 1.25)
        arm = bases[int(rng.integers(3))]
        arm = B.Arm(arm.base, arm.heading, u(0.75, 0.85))
        bodies.append(B._robot(f"proc{i:02d}", look, shot, arm=arm, color=tuple(rng.uniform(0.1, 0.95, 3).round(2)),
                               gripper="hand" if view == "head" and rng.random() < 0.7 else "parallel",
                               action_space=["joint", "ee"][int(rng.integers(2))], speed=u(1.0, 1.4)))
    B.MIXTURE = tuple(bodies)
    B.BODIES.update({b.name: b for b in bodies})
    separation.MIXTURE = B.MIXTURE[:4]
    return config


def randomised_looks(config: SweepConfig, args) -> SweepConfig:
    """``episodes._look`` draws a mixture robot's scene and colours at random in every episode."""
    import probe.world.episodes as EP
    from probe.world.bodies import MIXTURE

    names, own = {b.name for b in MIXTURE}, EP._look

    def _look(b, rng, scene=None):
        out = own(b, rng, scene)
        if b.name in names:
            link = rng.uniform(0.05, 0.95, 3).astype(np.float32)
            out |= {"table": rng.uniform(0.2, 0.9, 3).astype(np.float32),
                    "background": rng.uniform(0.1, 0.95, 3).astype(np.float32),
                    "links": link, "skin": np.clip(link * rng.uniform(0.7, 1.2, 3), 0, 1).astype(np.float32),
                    "sleeve": rng.uniform(0.05, 0.9, 3).astype(np.float32)}
        return out

    EP._look = _look
    return config


def randomised_cameras(config: SweepConfig, args) -> SweepConfig:
    """``episodes._camera`` films every episode of a mixture robot from a camera drawn at random: a third of them
    from a swaying head camera that follows the effector (as humanoids, mobile manipulators and people are
    filmed), the rest from a fixed camera anywhere around the table (the target robot and people keep theirs)."""
    import probe.world.episodes as EP
    from probe.world.bodies import MIXTURE, Shot

    shots, own = {id(b.shot) for b in MIXTURE}, EP._camera

    def _camera(shot, ee, rng, size):
        if id(shot) in shots:
            if rng.random() < 1 / 3:
                shot = Shot((0.5 + rng.uniform(-0.1, 0.1), -0.25 + rng.uniform(-0.05, 0.05),
                             0.72 + rng.uniform(-0.05, 0.05)), (0.5, 0.5, 0.0), rng.uniform(1.15, 1.3), head=True)
            else:
                azimuth, radius = rng.uniform(0, 2 * np.pi), rng.uniform(0.9, 1.2)
                shot = Shot((0.5 + radius * np.cos(azimuth), 0.5 + radius * np.sin(azimuth), rng.uniform(0.7, 1.1)),
                            (0.5, 0.55, 0.05), rng.uniform(1.3, 1.5))
        return own(shot, ee, rng, size)

    EP._camera = _camera
    return config


def object_head(config: SweepConfig, args) -> SweepConfig:
    """``WorldPolicy.__init__`` adds ``heads.objects`` (prefix output -> object x, y) and ``train.step_loss``
    adds its MSE, on the batch's frames without augmentation, for every body."""
    import torch

    import probe.world.policy as P
    import probe.world.train as T
    from probe.world.embodiments import ee_from_state

    init, loss = P.WorldPolicy.__init__, T.step_loss
    targets: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # per dataset object (an id could be reused)

    def __init__(self, cfg):
        init(self, cfg)
        self.heads["objects"] = torch.nn.Linear(self.config["model"]["width"], 2)

    def object_xy(data):
        if data not in targets:
            ee = ee_from_state(data.embodiment, data.state)
            out = np.zeros((len(ee), 2), np.float32)
            for ep in np.unique(data.episode):
                rows = np.flatnonzero(data.episode == ep)
                reach = rows[data.stage[rows] == 0]
                out[rows] = ee[reach[-1] if len(reach) else rows[0], :2]
            targets[data] = torch.from_numpy((out - 0.5) / 0.2)
        return targets[data]

    def step_loss(policy, data, rows, rng):
        img, state, task, *_ = T._batch(data, rows, np.random.default_rng(0), augment=False)
        pred = policy.heads["objects"](policy(img, state, data.embodiment, task)["embedding"])
        return loss(policy, data, rows, rng) + torch.nn.functional.mse_loss(pred, object_xy(data)[rows])

    P.WorldPolicy.__init__ = __init__
    T.step_loss = step_loss
    return config


def trajectory_head(config: SweepConfig, args) -> SweepConfig:
    """``WorldPolicy.forward`` computes ``ee_trajectory`` with ``heads.ee`` from the prefix output (its
    ``embedding``) for policies whose model config says ``trajectory_from: prefix``, which this sets."""
    import probe.world.policy as P

    forward = P.WorldPolicy.forward

    def prefix_forward(self, image, state, embodiment, task):
        out = forward(self, image, state, embodiment, task)
        if self.config["model"].get("trajectory_from") == "prefix":
            out["ee_trajectory"] = self.heads["ee"](out["embedding"]).view(-1, self.horizon, 3)
        return out

    P.WorldPolicy.forward = prefix_forward
    return replace(config, model=dict(config.model) | {"trajectory_from": "prefix"})


def replay(config: SweepConfig, args) -> SweepConfig:
    """Fine-tuning (both recipes) keeps training on the level's pre-training mixture as well, as VLA
    post-training often keeps some of the pre-training data: ``sweep._train`` gets the mixture's datasets added
    to the recipe's, with ``finetune_steps`` batches of each (the target data's batches are unchanged)."""
    import probe.world.sweep as S

    at, train, seen = S._Mixture.at, S._train, {}

    def mixture_at(self, level):
        seen[level] = at(self, level)
        return seen[level]

    def _train(policy, data, steps, seed, cfg, desc, progress, lr):
        recipe, sep, level = desc.rpartition(" at ")
        mixture = seen.get(int(level.rstrip("%")), {}) if sep and not desc.startswith("pre-training") else {}
        if mixture:
            data = dict(data) | mixture
            steps = cfg.finetune_steps * len(data)
            # the sweep normalised the policy for the target only: the mixture keeps its pre-training statistics
        return train(policy, data, steps, seed, cfg, desc, progress, lr)

    S._Mixture.at, S._train = mixture_at, _train
    return config


def pooled_vision(config: SweepConfig, args) -> SweepConfig:
    """The image encoder averages its last feature map over space (as a ViT's tokens are mean-pooled) instead
    of flattening it: ``VisionEncoder`` for policies whose model config says ``vision_pool: mean``."""
    import torch

    import probe.world.policy as P

    init, forward = P.VisionEncoder.__init__, P.VisionEncoder.forward

    def __init__(self, channels, width, image_size):
        init(self, channels, width, image_size)
        self.pooled = True
        self.proj = torch.nn.Linear(channels[-1], width)

    def pooled_forward(self, image):
        if not getattr(self, "pooled", False):
            return forward(self, image)
        return self.proj(self.conv(image * 2.0 - 1.0).mean(dim=(2, 3)))

    policy_init = P.WorldPolicy.__init__

    def policy_init_(self, cfg):
        pooled = (cfg.get("model") or {}).get("vision_pool") == "mean"
        P.VisionEncoder.__init__ = __init__ if pooled else init
        try:
            policy_init(self, cfg)
        finally:
            P.VisionEncoder.__init__ = init

    P.VisionEncoder.forward = pooled_forward
    P.WorldPolicy.__init__ = policy_init_
    return replace(config, model=dict(config.model) | {"vision_pool": "mean"})


VARIANTS = {"standard": standard, "pooled-vision": pooled_vision, "procedural-32": procedural, "randomised-looks": randomised_looks,
            "randomised-cameras": randomised_cameras,
            "object-head": object_head, "trajectory-head": trajectory_head, "replay": replay}


# -- the run ---------------------------------------------------------------------------------------------------


def sweep_config(args) -> SweepConfig:
    known = {f.name for f in fields(SweepConfig)}
    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or key not in known:
            raise Refused(f"--set takes KEY=JSON with KEY a SweepConfig field ({', '.join(sorted(known))}), "
                          f"got {item!r}")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError as exc:
            raise Refused(f"--set {key}: {value!r} is not JSON ({exc}), e.g. --set model='{{\"blocks\": 8}}'") from None
    for key, value in (("levels", args.levels), ("seed", args.seed)):
        if value is not None:
            if key in overrides:
                raise Refused(f"--{key} and --set {key}=... both given; use one")
            overrides[key] = value
    try:
        return SweepConfig.preset(args.size, **overrides)
    except (ConfigError, TypeError, ValueError) as exc:
        raise Refused(f"bad sweep config: {exc}") from None


def prepare_out(out: Path, world: Path, record: dict, overwrite: bool) -> Path:
    """Check OUT before anything is written; refuse rather than remove what this script did not write."""
    if out.exists() and not out.is_dir():
        raise Refused(f"--out '{out}' is a file; choose a directory")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise Refused(f"--out '{out}' exists and is not empty; pass --overwrite to rerun into it, "
                          "or choose another directory")
        try:
            old = json.loads((out / MARKER).read_text())
        except (OSError, ValueError):
            old = None
        if old is None and any((out / name).exists() for name in ("world", "separation.json")):
            raise Refused(f"--out '{out}' holds world/ or separation.json that this script did not write "
                          f"(no {MARKER}); choose another directory")
        if old is not None and (old.get("variant"), old.get("robots")) != (record["variant"], record["robots"]):
            held = f"{old.get('variant')!r}" + (f" with {old['robots']} robots" if old.get("robots") else "")
            raise Refused(f"--out '{out}' holds variant {held}; "
                          "the sweep's cache does not know variants: use another --out")
        for name in LINKED:
            if (out / "world" / name).exists() and not (out / "world" / name).is_symlink():
                raise Refused(f"'{out / 'world' / name}' is not a link this script made; choose another --out")
    (out / "world").mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text(json.dumps(record, indent=2) + "\n")
    for name in LINKED:
        link = out / "world" / name
        if link.is_symlink():
            link.unlink()  # the link only, never its target
        os.symlink(world / name, link)
    return out / "world"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--world", required=True, type=Path, help="a generated world (datasets/, evaluation/, world.json)")
    ap.add_argument("--variant", required=True, nargs="+", choices=sorted(VARIANTS),
                    help="one variant, or several to combine (applied in the order given)")
    ap.add_argument("--out", required=True, type=Path, help="where OUT/world, its sweep and separation.json go")
    ap.add_argument("--overwrite", action="store_true", help="rerun into a non-empty OUT this script wrote")
    ap.add_argument("--size", default="default", help="SweepConfig preset (tiny, small, default, large)")
    ap.add_argument("--levels", type=int, nargs="+", help="diversity levels (default: the preset's)")
    ap.add_argument("--seed", type=int, help="training seed (default: the preset's, 0)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=JSON", help="override a SweepConfig field")
    ap.add_argument("--robots", type=int, help="procedural-32 only: how many robots (default 32)")
    ap.add_argument("--episodes", type=int, default=4, help="separation: episodes per task and body (default 4)")
    args = ap.parse_args(argv)
    try:
        return run(args)
    except Refused as exc:
        print(f"world_variants: error: {exc}", file=sys.stderr)
        return 2


def run(args) -> int:
    if len(set(args.variant)) < len(args.variant):
        raise Refused(f"--variant names {' '.join(args.variant)}: give each variant once")
    procedural_robots = "procedural-32" in args.variant
    if args.robots is not None and not procedural_robots:
        raise Refused(f"--robots is for --variant procedural-32, not {' '.join(args.variant)}")
    args.robots = (32 if args.robots is None else args.robots) if procedural_robots else None
    if args.robots is not None and args.robots < 1:
        raise Refused(f"--robots must be at least 1, got {args.robots}")
    world = args.world.resolve()
    missing = [name for name in LINKED if not (world / name).exists()]
    if missing:
        raise Refused(f"--world '{args.world}' lacks {', '.join(missing)}; pass a generated world "
                      "('probe world generate --out DIR' or 'probe demo' writes one)")
    config = sweep_config(args)
    name = "+".join(args.variant)
    record = {"format": "world-variant", "variant": name, "robots": args.robots, "world": str(world),
              "command": " ".join([Path(sys.argv[0]).name, *(sys.argv[1:])])}
    for variant in args.variant:  # the one place a variant changes anything (this process only)
        config = VARIANTS[variant](config, args)
    target = prepare_out(args.out, world, record | {"config": asdict(config)}, args.overwrite)

    from probe.world.sweep import run_sweep

    t0 = time.perf_counter()
    try:
        sweep = run_sweep(target, config, overwrite=args.overwrite)
    except ProbeError as exc:
        raise Refused(str(exc)) from None
    print(f"{name}: sweep in {time.perf_counter() - t0:.0f} s ({sweep.path})", flush=True)
    for r in sweep.result["levels"]:
        errors = {k: round(v["ee_error"], 4) for k, v in r["behaviour"].items()}
        print(f"{name} {r['level']:>3}%  {len(r['pretraining'])} pre-training datasets  "
              f"gain {r['transfer_gain']['value']:+.3f}  ee error {errors}", flush=True)
    out_json = args.out / "separation.json"
    argv = sys.argv
    sys.argv = ["bench_world_separation.py", "--world", str(target), "--seed", str(config.seed),
                "--episodes", str(args.episodes), "--json", str(out_json)]
    try:
        separation.main()
    finally:
        sys.argv = argv
    print(f"sweep: {sweep.path / 'sweep.json'}\nseparation: {out_json}\nvariant: {args.out / MARKER}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
