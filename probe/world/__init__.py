"""The built-in co-training world: human and robot episodes of the same tabletop tasks.

``generate_world`` renders both embodiments and writes LeRobot v3.0 datasets;
``train_world`` trains a small VLA-shaped policy on them (co-trained and robot-only
recipes, checkpoints at several steps); ``build_world`` does both with caching.
Heavy modules (torch) load only when their functions are used.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "generate_world": "probe.world.generate",
    "WorldConfig": "probe.world.config",
    "TrainConfig": "probe.world.config",
    "Recipe": "probe.world.config",
    "Size": "probe.world.config",
    "TASKS": "probe.world.tasks",
    "STAGES": "probe.world.tasks",
    "train_world": "probe.world.train",
    "build_world": "probe.world.build",
    "World": "probe.world.build",
    "WorldPolicy": "probe.world.policy",
    "load_policy": "probe.world.policy",
    "save_policy": "probe.world.policy",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'probe.world' has no attribute {name!r}")
