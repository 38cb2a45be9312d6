"""The diversity sweep: does a shared human/robot space emerge with pre-training diversity?

For each level (percent of :data:`probe.world.bodies.MIXTURE`, 0 = no pre-training):

1. **pre-train** a fresh policy on robot data only: the level's datasets, the same number of
   episodes (``pretrain_episodes``, split evenly) and steps at every level;
2. **fine-tune** it twice with the same objectives for every embodiment: on human + target
   robot data (``cotrained``, the paper's co-fine-tuning) and on the target robot alone
   (``robot-only``, the control); both see ``finetune_steps`` batches of target-robot data
   (co-training alternates them with as many human batches: human data is added, not swapped in);
3. **score behaviour** of both on held-out target-robot episodes of the human-only setting
   (:mod:`probe.world.transfer`).

Layout under the world directory (each checkpoint written atomically, reused by config hash)::

    sweep/pretrained/level-050/   sweep/cotrained/level-050/   sweep/robot-only/level-050/
    sweep/sweep.json              levels, datasets, checkpoints, behaviour and transfer gain per level
    sweep-seed1/...               the same for training seed 1 (seed 0 is ``sweep/``): run several seeds
                                  (:func:`run_sweeps`) to see how much of a curve is training noise

A fine-tuned checkpoint's ``config.json`` records its ``diversity`` level, its ``pretraining``, its
``behaviour`` on the held-out episodes and, for ``cotrained``, the ``transfer_gain``: stores
extracted from it carry them into reports.

The pre-training mixture is rendered in memory (it is training data only, never probed).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from probe.atomic import write_json
from probe.errors import ConfigError, DataError, OutputExistsError
from probe.world.bodies import mixture_at
from probe.world.config import SweepConfig, WorldConfig
from probe.world.embodiments import SPECS
from probe.world.generate import make_episodes, read_world_config
from probe.world.tasks import STAGES
from probe.world.train import EmbodimentData, episodes_to_data, fit, load_embodiment
from probe.world.transfer import episode_scores, summary, transfer_gain

log = logging.getLogger(__name__)

RECIPES = ("robot-only", "cotrained")
MARKER = "sweep.json"


@dataclass(frozen=True)
class Sweep:
    """A finished sweep: its directory and ``sweep.json``."""

    path: Path
    result: dict

    @property
    def levels(self) -> list[int]:
        return [int(r["level"]) for r in self.result["levels"]]

    def checkpoints(self, recipe: str) -> list[Path]:
        """The final checkpoint of ``recipe`` at every level, lowest level first."""
        return [self.path / r["checkpoints"][recipe] for r in self.result["levels"]]


def sweep_dir(world_dir: str | Path, seed: int = 0) -> Path:
    """``WORLD/sweep`` for training seed 0, ``WORLD/sweep-seed<N>`` for seed N."""
    return Path(world_dir) / ("sweep" if int(seed) == 0 else f"sweep-seed{int(seed)}")


def level_dir(world_dir: str | Path, recipe: str, level: int, seed: int = 0) -> Path:
    """``WORLD/sweep/<recipe>/level-NNN`` (recipe: pretrained, cotrained or robot-only; see :func:`sweep_dir`)."""
    return sweep_dir(world_dir, seed) / recipe / f"level-{int(level):03d}"


def _finished(directory: Path, key: dict) -> dict | None:
    marker = directory / MARKER
    if not marker.is_file():
        return None
    done = json.loads(marker.read_text())
    if any(done.get(k) != v for k, v in key.items()):
        return None
    paths = [directory / p for r in done.get("levels", []) for p in r["checkpoints"].values()]
    return done if all((p / "model.safetensors").is_file() for p in paths) else None


def _cached(path: Path, key: dict) -> bool:
    try:
        cfg = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return (path / "model.safetensors").is_file() and cfg.get("sweep_key") == key


class _Mixture:
    """The pre-training datasets, rendered on first use: for each body as many episodes as its
    smallest level needs (the first ``n`` of them at larger levels)."""

    def __init__(self, wconfig: WorldConfig, config: SweepConfig, tasks: list[str], progress: bool):
        self.wconfig, self.config, self.tasks, self.progress = wconfig, config, tasks, progress
        self.data: dict[str, EmbodimentData] = {}

    def per_body(self, level: int) -> int:
        """Episodes per task of each of the level's datasets."""
        bodies = mixture_at(level)
        return max(1, math.ceil(self.config.pretrain_episodes / (len(bodies) * len(self.tasks)))) if bodies else 0

    def at(self, level: int) -> dict[str, EmbodimentData]:
        n = self.per_body(level)
        out = {}
        for b in mixture_at(level):
            if b.name not in self.data:
                need = max(self.per_body(lv) for lv in self.config.levels if b in mixture_at(lv))
                episodes = make_episodes(self.wconfig, b.name, episodes_per_task=need, progress=self.progress)
                self.data[b.name] = episodes_to_data(episodes, self.tasks, self.config.horizon)
            out[b.name] = self.data[b.name].select(self.data[b.name].episode < n * len(self.tasks))
        return out


def _policy(tasks: list[str], image_size: int, config: SweepConfig, data: dict[str, EmbodimentData]):
    import torch

    from probe.world.policy import make_policy

    torch.manual_seed(config.seed)
    embodiments = {n: {"state_dim": s.state_dim, "action_dim": s.action_dim, "video_key": s.video_key}
                   for n, s in SPECS.items()}
    policy = make_policy(embodiments, tasks, list(STAGES), image_size, dict(config.model) | {"horizon": config.horizon})
    _normalize(policy, data)
    return policy


def _normalize(policy, data: dict[str, EmbodimentData]) -> None:
    for e, d in data.items():
        policy.set_normalization(e, "state", d.state.mean(0), d.state.std(0))
        policy.set_normalization(e, "action", d.action.mean(0), d.action.std(0))


def _train(policy, data: dict[str, EmbodimentData], steps: int, seed: int, config: SweepConfig, desc: str,
           progress: bool, lr: float) -> None:
    import torch

    tconfig = config.train_config(steps, seed)
    opt = torch.optim.AdamW(policy.parameters(), lr=lr, weight_decay=config.weight_decay)
    fit(policy, opt, data, range(1, steps + 1), tconfig, desc=desc, progress=progress)


def run_sweep(world_dir: str | Path, config: SweepConfig | None = None, *, size: str = "default",
              overwrite: bool = False, progress: bool = False) -> Sweep:
    """Run (or reuse) the diversity sweep on a generated world with ``config.seed``; see the module docstring.

    Parameters
    ----------
    world_dir : a directory made by :func:`probe.world.generate.generate_world`.
    config : the sweep's levels and training lengths (default: ``SweepConfig.preset(size)``).
    overwrite : replace a sweep made with another config (the same config is reused).
    """
    config = config or SweepConfig.preset(size)
    return run_sweeps(world_dir, config, [config.seed], overwrite=overwrite, progress=progress)[0]


def run_sweeps(world_dir: str | Path, config: SweepConfig, seeds: Sequence[int], *, overwrite: bool = False,
               progress: bool = False) -> list[Sweep]:
    """:func:`run_sweep` for each training seed (``config`` with its ``seed`` replaced), the pre-training
    mixture rendered once; each seed's sweep in its own :func:`sweep_dir`."""
    world_dir = Path(world_dir)
    world = read_world_config(world_dir)
    if world is None or "evaluation" not in world:
        raise DataError(f"'{world_dir}' is not a generated world with held-out episodes (world.json version 2); "
                        f"create one with 'probe world generate --out {world_dir}'")
    if not seeds or any(int(s) < 0 for s in seeds):
        raise ConfigError(f"training seeds are integers >= 0, got {list(seeds)}")
    configs = [replace(config, seed=int(s)) for s in dict.fromkeys(seeds)]
    todo = []
    for c in configs:  # every refusal before any work
        key = {"world_hash": world["config_hash"], "sweep_hash": c.hash}
        out = sweep_dir(world_dir, c.seed)
        if _finished(out, key) is None and (out / MARKER).exists() and not overwrite:
            raise OutputExistsError(f"'{out}' holds a sweep of another world or config; pass --overwrite "
                                    "(overwrite=True in Python) to replace it, or sweep another world directory")
        todo.append((c, key, out))
    inputs = _Inputs(world_dir, world, config, progress)
    return [_one_sweep(world_dir, world, c, key, out, inputs, progress) for c, key, out in todo]


class _Inputs:
    """What every seed's sweep reads, loaded on first use: the target datasets, the held-out episodes and the
    rendered pre-training mixture (training seeds do not change them)."""

    def __init__(self, world_dir: Path, world: dict, config: SweepConfig, progress: bool):
        self.world_dir, self.world, self.config, self.progress = world_dir, world, config, progress

    @functools.cached_property
    def target(self) -> dict[str, EmbodimentData]:
        return {e: self._load(self.world["datasets"][e]["path"], e) for e in ("human", "robot")}

    @functools.cached_property
    def heldout(self) -> EmbodimentData:
        return self._load(self.world["evaluation"]["robot"]["path"], "robot")

    @functools.cached_property
    def mixture(self) -> _Mixture:
        config = self.world["config"]
        wconfig = WorldConfig(**{k: v for k, v in config.items() if k in WorldConfig.__dataclass_fields__})
        return _Mixture(wconfig, self.config, list(config["tasks"]), self.progress)

    def _load(self, path: str, embodiment: str) -> EmbodimentData:
        return load_embodiment(self.world_dir / path, embodiment, list(self.world["config"]["tasks"]),
                               self.config.horizon)


def _one_sweep(world_dir: Path, world: dict, config: SweepConfig, key: dict, out_dir: Path, inputs: _Inputs,
               progress: bool) -> Sweep:
    from probe.world.policy import load_policy, save_policy

    done = _finished(out_dir, key)
    if done is not None:
        log.info("sweep already run with this config; reusing %s", out_dir)
        return Sweep(out_dir, done)
    if (out_dir / MARKER).exists():
        shutil.rmtree(out_dir)  # another config's sweep, replaced: run_sweeps refused it without overwrite

    tasks = list(world["config"]["tasks"])
    image_size = int(world["config"]["image_size"])
    target, heldout, mixture = inputs.target, inputs.heldout, inputs.mixture
    recipes = {"robot-only": {"robot": target["robot"]}, "cotrained": target}
    levels = []
    for level in config.levels:
        pre_dir = level_dir(world_dir, "pretrained", level, config.seed)
        bodies = [b.name for b in mixture_at(level)]
        pretraining = {"level": level, "datasets": bodies, "episodes_per_task": mixture.per_body(level),
                       "steps": config.pretrain_steps if bodies else 0}
        extra = {"sweep_key": key, "diversity": level, "pretraining": pretraining,
                 "sweep": asdict(config), "world": str(world_dir)}
        if bodies and not _cached(pre_dir, key):
            data = mixture.at(level)
            policy = _policy(tasks, image_size, config, data | target)
            _train(policy, data, config.pretrain_steps, config.seed, config, f"pre-training {level}%", progress,
                   config.lr)
            save_policy(policy, pre_dir, config.pretrain_steps, "pretrained", seed=config.seed, overwrite=True,
                        extra=extra)
        scores, record = {}, {"level": level, "pretraining": bodies, "checkpoints": {}, "behaviour": {}}
        for recipe in RECIPES:
            out = level_dir(world_dir, recipe, level, config.seed)
            if _cached(out, key):
                policy = load_policy(out)
            else:
                policy = load_policy(pre_dir).train() if bodies else _policy(tasks, image_size, config, target)
                _normalize(policy, target)
                # every recipe sees finetune_steps batches of target-robot data; co-training alternates
                # them with as many human batches (so human data is added, not swapped for robot data)
                _train(policy, recipes[recipe], config.finetune_steps * len(recipes[recipe]), config.seed + 1,
                       config, f"{recipe} at {level}%", progress, config.finetune_lr)
            scores[recipe] = episode_scores(policy, heldout)
            record["behaviour"][recipe] = summary(scores[recipe])
            found = {"behaviour": {"setting": world["evaluation"]["robot"]["region"]} | record["behaviour"][recipe]}
            if recipe == "cotrained":
                record["transfer_gain"] = transfer_gain(scores["cotrained"]["ee_error"],
                                                        scores["robot-only"]["ee_error"], seed=config.seed)
                found["transfer_gain"] = record["transfer_gain"]
            if not _cached(out, key):
                save_policy(policy, out, config.finetune_steps * len(recipes[recipe]), recipe, seed=config.seed,
                            overwrite=True,
                            extra=extra | found)
            record["checkpoints"][recipe] = str(out.relative_to(out_dir))
        levels.append(record)
    result = key | {"format": "probe-world-sweep", "config": asdict(config),
                    "setting": world["evaluation"]["robot"]["region"], "levels": levels}
    write_json(out_dir / MARKER, result)
    return Sweep(out_dir, result)


def transfer_by_level(result: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """``{level: {"gain": {...}, "behaviour": {...}}}`` from a ``sweep.json``."""
    return {int(r["level"]): {"gain": r["transfer_gain"], "behaviour": r["behaviour"]} for r in result["levels"]}


def transfer_table(result: dict[str, Any]):
    """A rich table of behaviour per level (errors with and without human data, the transfer gain)."""
    from rich.table import Table

    table = Table("diversity", "pre-training datasets", "ee error robot-only", "ee error cotrained",
                  "transfer gain [95% CI]", title=f"behaviour on the human-only setting ({result['setting']})")
    for r in result["levels"]:
        g = r["transfer_gain"]
        ci = f" [{g['ci'][0]:+.2f}, {g['ci'][1]:+.2f}]" if g["ci"][0] is not None else ""
        table.add_row(f"{r['level']}%", str(len(r["pretraining"])), f"{r['behaviour']['robot-only']['ee_error']:.4f}",
                      f"{r['behaviour']['cotrained']['ee_error']:.4f}", f"{g['value']:+.2f}{ci}")
    return table
