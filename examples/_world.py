"""Shared by the examples: the built-in world and its latent stores, built once and reused."""

from __future__ import annotations

from pathlib import Path

from probe.extraction.config import ExtractConfig
from probe.model.config import ModelConfig
from probe.extraction.run import extract
from probe.store.store import Store, open_store
from probe.world.build import World, build_world

LAYERS = ("vision", "trunk.block0", "trunk.block1", "trunk.block2")


def world_stores(out: str | Path = "probe-examples", size: str = "small") -> tuple[World, dict[str, list[Store]]]:
    """Build (or reuse) the world in ``out`` and one latent store per checkpoint and recipe."""
    out = Path(out)
    world = build_world(out / "world", size=size, progress=True)
    stores: dict[str, list[Store]] = {}
    for recipe, checkpoints in world.checkpoints.items():
        paths = [out / "stores" / recipe / c.name for c in checkpoints]
        if not all((p / "manifest.json").exists() for p in paths):
            config = ExtractConfig(checkpoints=tuple(str(c) for c in checkpoints),
                                   data=tuple(f"{e}={p}" for e, p in world.datasets.items()),
                                   out=str(out / "stores" / recipe),
                                   overwrite=True,
                                   model=ModelConfig(layers=LAYERS))
            extract(config, progress=True)
        stores[recipe] = [open_store(p) for p in paths]
    return world, stores
