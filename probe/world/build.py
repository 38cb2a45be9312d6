"""``build_world``: generate the world and train its checkpoints, reusing whatever is already there."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from probe.world.config import Size, TrainConfig, WorldConfig
from probe.world.generate import generate_world, read_world_config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class World:
    """A built world: its directory, datasets per embodiment and checkpoint directories per recipe."""

    path: Path
    datasets: dict[str, Path]
    checkpoints: dict[str, list[Path]]
    config: dict

    def checkpoint(self, recipe: str = "cotrained", step: int | None = None) -> Path:
        """The checkpoint of ``recipe`` at ``step`` (default: the last one)."""
        dirs = self.checkpoints[recipe]
        if step is None:
            return dirs[-1]
        by_step = {int(d.name.split("-")[1]): d for d in dirs}
        if step not in by_step:
            from probe.errors import CheckpointError

            raise CheckpointError(f"no checkpoint at step {step} for recipe {recipe!r}; "
                                  f"steps: {sorted(by_step)}")
        return by_step[step]


def build_world(out: str | Path, size: str | Size = "default", *, seed: int = 0, overwrite: bool = False,
                progress: bool = False) -> World:
    """Generate (if needed) and train (if needed) the built-in world in ``out``.

    A second call with the same size and seed only checks the config hashes and
    returns. A world made with another config is refused unless ``overwrite``.
    """
    from probe.world.train import train_world

    out = Path(out)
    world = ensure_world(out, size, seed=seed, overwrite=overwrite, progress=progress)
    checkpoints = train_world(out, config=TrainConfig.preset(size, seed=seed), overwrite=overwrite,
                              progress=progress)
    datasets = {e: out / d["path"] for e, d in world["datasets"].items()}
    return World(out, datasets, checkpoints, world)


def ensure_world(out: str | Path, size: str | Size = "default", *, seed: int = 0, overwrite: bool = False,
                 progress: bool = False) -> dict:
    """Generate the world's datasets in ``out`` unless they are there with the same config; its ``world.json``."""
    out = Path(out)
    wconfig = WorldConfig.preset(size, seed=seed)
    existing = read_world_config(out)
    if existing is None or existing.get("config_hash") != wconfig.hash or overwrite:
        generate_world(out, config=wconfig, overwrite=overwrite, progress=progress)
    else:
        log.info("reusing world %s (config %s)", out, wconfig.hash)
    return read_world_config(out)


def build_sweep(out: str | Path, size: str | Size = "default", *, seed: int = 0, overwrite: bool = False,
                progress: bool = False, levels: tuple[int, ...] | None = None):
    """Generate (if needed) the world and run (if needed) its diversity sweep; returns ``(World, Sweep)``
    where the World's checkpoints are the sweep's, per recipe, lowest level first."""
    from probe.world.config import SweepConfig
    from probe.world.sweep import run_sweep

    out = Path(out)
    world = ensure_world(out, size, seed=seed, overwrite=overwrite, progress=progress)
    config = SweepConfig.preset(size, seed=seed, **({"levels": levels} if levels else {}))
    sweep = run_sweep(out, config, overwrite=overwrite, progress=progress)
    datasets = {e: out / d["path"] for e, d in world["datasets"].items()}
    checkpoints = {r: sweep.checkpoints(r) for r in ("cotrained", "robot-only")}
    return World(out, datasets, checkpoints, world), sweep
