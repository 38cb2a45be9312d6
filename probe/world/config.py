"""Typed configuration of the built-in world: what to generate and how to train on it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from enum import Enum
from typing import Any, ClassVar

from probe.errors import ConfigError
from probe.world.tasks import TASK_NAMES, resolve_tasks


class Size(str, Enum):
    """Preset sizes: ``tiny`` for tests (seconds), ``small`` for quick looks, ``default`` for the demo,
    ``large`` for the full diversity curve (every level, longer training: tens of minutes on 2 cores)."""

    TINY = "tiny"
    SMALL = "small"
    DEFAULT = "default"
    LARGE = "large"


class Recipe(str, Enum):
    """Training recipes: human and robot data together, or robot data alone (the baseline)."""

    COTRAINED = "cotrained"
    ROBOT_ONLY = "robot-only"

    @property
    def embodiments(self) -> tuple[str, ...]:
        return ("human", "robot") if self is Recipe.COTRAINED else ("robot",)


def _size(value: str | Size) -> Size:
    try:
        return Size(value)
    except ValueError:
        raise ConfigError(f"unknown world size {value!r}; choose one of {', '.join(s.value for s in Size)}") from None


def config_hash(obj: object) -> str:
    """A short sha256 of a config dataclass (its JSON form)."""
    return hashlib.sha256(json.dumps(asdict(obj), sort_keys=True, default=str).encode()).hexdigest()[:16]


class Presets:
    """``preset(size, **overrides)`` and ``hash`` of a frozen config dataclass; ``PRESETS`` holds each
    size's fields (``SIZED``: the size itself is a field)."""

    PRESETS: ClassVar[dict[Size, dict[str, Any]]] = {}
    SIZED: ClassVar[bool] = False

    @classmethod
    def preset(cls, size: str | Size = Size.DEFAULT, **overrides):
        """The preset of ``size``, with any field overridden."""
        size = _size(size)
        return cls(**({"size": size} if cls.SIZED else {}), **(cls.PRESETS[size] | overrides))

    @property
    def hash(self) -> str:
        return config_hash(self)


@dataclass(frozen=True)
class WorldConfig(Presets):
    """What ``generate_world`` writes: tasks, episodes per task and embodiment, frames and videos."""

    size: Size = Size.DEFAULT
    seed: int = 0
    tasks: tuple[str, ...] = TASK_NAMES
    episodes_per_task: int = 16
    fps: float = 10.0
    image_size: int = 64
    episodes_per_video_file: int = 8
    # the human-only setting: robot training data has its task objects in ``robot_region``; the human data
    # anywhere; ``heldout_episodes_per_task`` robot episodes with objects in ``heldout_region`` measure transfer
    robot_region: str = "near"
    heldout_region: str = "far_right"
    heldout_episodes_per_task: int = 6

    SIZED: ClassVar[bool] = True
    PRESETS: ClassVar[dict[Size, dict[str, Any]]] = {
        Size.TINY: dict(episodes_per_task=2, episodes_per_video_file=4, heldout_episodes_per_task=2),
        Size.SMALL: dict(episodes_per_task=8, heldout_episodes_per_task=4),
        Size.DEFAULT: dict(episodes_per_task=20),
        Size.LARGE: dict(episodes_per_task=30, heldout_episodes_per_task=10)}

    def __post_init__(self) -> None:
        from probe.world.tasks import REGIONS

        for region in (self.robot_region, self.heldout_region):
            if region not in REGIONS:
                raise ConfigError(f"unknown region {region!r}; choose one of {', '.join(REGIONS)}")
        object.__setattr__(self, "size", _size(self.size))
        object.__setattr__(self, "tasks", tuple(t.name for t in resolve_tasks(self.tasks)))
        if int(self.episodes_per_task) < 1:
            raise ConfigError(
                f"episodes_per_task must be at least 1, got {self.episodes_per_task}; "
                "a world needs episodes to write datasets and train on"
            )
        if self.image_size < 16 or self.image_size % 2:
            raise ConfigError(f"image_size must be an even number >= 16 (H.264 needs even sizes), "
                              f"got {self.image_size}")
        if self.fps <= 0:
            raise ConfigError(f"fps must be positive, got {self.fps}")
        if self.episodes_per_video_file < 1:
            raise ConfigError(f"episodes_per_video_file must be at least 1, got {self.episodes_per_video_file}")



@dataclass(frozen=True)
class TrainConfig(Presets):
    """How ``train_world`` trains each recipe and which steps it checkpoints (step 0 always)."""

    steps: int = 600
    checkpoint_steps: tuple[int, ...] = (0, 50, 150, 300, 600)
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    horizon: int = 4
    recipes: tuple[Recipe, ...] = (Recipe.COTRAINED, Recipe.ROBOT_ONLY)
    seed: int = 0
    threads: int = 1  # the model is small: one thread is as fast and robust on a busy machine
    model: dict = field(default_factory=dict)

    PRESETS: ClassVar[dict[Size, dict[str, Any]]] = {
        Size.TINY: dict(steps=12, checkpoint_steps=(0, 6, 12), batch_size=8),
        Size.SMALL: dict(steps=300, checkpoint_steps=(0, 30, 100, 300)),
        Size.DEFAULT: dict(steps=1200, checkpoint_steps=(0, 50, 150, 300, 600, 1200)),
        Size.LARGE: dict(steps=3000, checkpoint_steps=(0, 100, 300, 1000, 3000))}

    def __post_init__(self) -> None:
        try:
            recipes = tuple(Recipe(r) for r in self.recipes)
        except ValueError:
            raise ConfigError(f"unknown recipe in {list(self.recipes)}; choose from "
                              f"{', '.join(r.value for r in Recipe)}") from None
        object.__setattr__(self, "recipes", recipes)
        if self.steps < 1:
            raise ConfigError(f"steps must be at least 1, got {self.steps}")
        steps = tuple(sorted({0, self.steps, *(int(s) for s in self.checkpoint_steps)}))
        if steps[-1] > self.steps or steps[0] < 0:
            raise ConfigError(f"checkpoint_steps must lie in [0, steps={self.steps}], got {list(self.checkpoint_steps)}")
        object.__setattr__(self, "checkpoint_steps", steps)
        if self.batch_size < 2:
            raise ConfigError(f"batch_size must be at least 2, got {self.batch_size}")

    def with_(self, **changes) -> TrainConfig:
        return replace(self, **changes)


@dataclass(frozen=True)
class SweepConfig(Presets):
    """The diversity sweep: robot pre-training at each ``levels`` percent of the mixture (0 = none), then
    co-fine-tuning on human + target robot data and, as the control, fine-tuning on the target robot alone.

    Every level trains the same number of steps on the same number of pre-training episodes
    (``pretrain_episodes``, split evenly over the level's datasets): levels differ in diversity only.
    """

    levels: tuple[int, ...] = (0, 25, 50, 75, 100)
    pretrain_steps: int = 2000
    finetune_steps: int = 1000
    pretrain_episodes: int = 96
    batch_size: int = 32
    lr: float = 2e-3
    finetune_lr: float = 2e-3  # the fine-tuning learning rate (a quarter of it was tried: no change, see README)
    weight_decay: float = 1e-4
    horizon: int = 4
    seed: int = 0
    threads: int = 1
    model: dict = field(default_factory=dict)

    PRESETS: ClassVar[dict[Size, dict[str, Any]]] = {
        Size.TINY: dict(levels=(0, 50, 100), pretrain_steps=40, finetune_steps=20, pretrain_episodes=12, batch_size=8),
        Size.SMALL: dict(levels=(0, 25, 50, 100), pretrain_steps=600, finetune_steps=300, pretrain_episodes=48),
        # the demo's: four levels, trimmed to fit its time budget on 2 cores
        Size.DEFAULT: dict(levels=(0, 25, 50, 100), pretrain_steps=1500, finetune_steps=500),
        Size.LARGE: dict(levels=(0, 25, 50, 75, 100), pretrain_steps=4000, finetune_steps=1500,
                         pretrain_episodes=144)}

    def __post_init__(self) -> None:
        levels = tuple(sorted({int(v) for v in self.levels}))
        if not levels or levels[0] < 0 or levels[-1] > 100:
            raise ConfigError(f"diversity levels are percentages in 0..100, got {list(self.levels)}")
        object.__setattr__(self, "levels", levels)
        for name in ("pretrain_steps", "finetune_steps", "pretrain_episodes"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.batch_size < 2:
            raise ConfigError(f"batch_size must be at least 2, got {self.batch_size}")

    def train_config(self, steps: int, seed: int) -> TrainConfig:
        """The :class:`TrainConfig` of one phase (``steps`` long) of the sweep."""
        return TrainConfig(steps=steps, checkpoint_steps=(0, steps), batch_size=self.batch_size, lr=self.lr,
                           weight_decay=self.weight_decay, horizon=self.horizon, seed=seed, threads=self.threads,
                           model=dict(self.model))
