"""The built-in world's tabletop tasks: scenes, stage plans and how objects follow the effector.

Coordinates are in the *table frame*: ``x`` left to right and ``y`` near to far on a
unit table, ``z`` up from its surface (1 unit is about 60 cm). Both embodiments do
the same tasks in this frame; only their bodies, cameras, motion and action spaces
differ (see :mod:`probe.world.embodiments`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from probe.errors import ConfigError
from probe.validate import close_matches


class Grip(str, Enum):
    """What the hand or gripper does at the end of a stage; each embodiment maps it to an aperture."""

    OPEN = "open"
    HOLD = "hold"
    FIST = "fist"


@dataclass(frozen=True)
class Task:
    """A tabletop task: short name, instruction (the LeRobot task string) and ordered stages."""

    name: str
    instruction: str
    stages: tuple[str, ...]


TASKS: tuple[Task, ...] = (
    Task("pick_place", "pick the cup and place it on the plate",
         ("reach", "grasp", "lift", "move", "place", "release")),
    Task("open_drawer", "open the drawer", ("reach", "grasp", "pull", "release", "retreat")),
    Task("push_block", "push the block to the target", ("reach", "lower", "push", "retreat")),
)
TASK_NAMES: tuple[str, ...] = tuple(t.name for t in TASKS)
# every stage name, in first-seen order: the classes of the policy's shared stage head
STAGES: tuple[str, ...] = tuple(dict.fromkeys(s for t in TASKS for s in t.stages))

PALETTE = np.array([
    [0.85, 0.15, 0.15], [0.15, 0.45, 0.85], [0.95, 0.75, 0.10], [0.20, 0.70, 0.30],
    [0.60, 0.25, 0.75], [0.95, 0.50, 0.10], [0.10, 0.75, 0.75], [0.90, 0.40, 0.60],
], dtype=np.float32)


def resolve_tasks(names: Iterable[str] | None = None) -> tuple[Task, ...]:
    """Tasks by short name or instruction (all when ``names`` is None), in the given order.

    Raises
    ------
    ConfigError
        For an unknown name (the message lists the known tasks) or an empty selection.
    """
    if names is None:
        return TASKS
    if isinstance(names, str):
        names = [names]
    by_key = {t.name: t for t in TASKS} | {t.instruction: t for t in TASKS}
    out: list[Task] = []
    for name in names:
        if name not in by_key:
            near = close_matches(str(name), TASK_NAMES)
            hint = f" (did you mean {', '.join(repr(n) for n in near)}?)" if near else ""
            raise ConfigError(
                f"unknown task {name!r}{hint}; known tasks: "
                + ", ".join(f"{t.name} ('{t.instruction}')" for t in TASKS)
            )
        if by_key[name] not in out:
            out.append(by_key[name])
    if not out:
        raise ConfigError(f"no tasks selected; choose one or more of {', '.join(TASK_NAMES)}")
    return tuple(out)


@dataclass(frozen=True)
class Distractor:
    """An object that plays no part in the task."""

    kind: str  # "ball", "box" or "flat"
    xy: np.ndarray
    color: np.ndarray
    size: float


@dataclass(frozen=True)
class Scene:
    """One episode's randomised scene: task object positions, colours and distractors."""

    task: Task
    positions: dict[str, np.ndarray]
    colors: dict[str, np.ndarray]
    distractors: tuple[Distractor, ...] = field(default_factory=tuple)
    push_dir: np.ndarray | None = None


@dataclass(frozen=True)
class Waypoint:
    """Where the effector is, and how it grips, at the end of a stage (``duration`` in seconds)."""

    stage: str
    pos: np.ndarray
    grip: Grip
    duration: float


def _far_enough(p: np.ndarray, others: Sequence[np.ndarray], gap: float) -> bool:
    return all(np.linalg.norm(p - q) >= gap for q in others)


def _sample_xy(rng: np.random.Generator, lo: Sequence[float], hi: Sequence[float],
               others: Sequence[np.ndarray], gap: float) -> np.ndarray:
    for _ in range(200):
        p = rng.uniform(lo, hi).astype(np.float32)
        if _far_enough(p, others, gap):
            return p
    return p


# where the object a task acts on may stand (table x), in all of a world's episodes or in part of them:
# ``far_right`` is the human-only setting of the sweep (no robot ever sees an object there in training)
REGIONS: dict[str, tuple[float, float]] = {"any": (0.2, 0.8), "near": (0.2, 0.56), "far_right": (0.64, 0.8)}


def sample_scene(task: Task, rng: np.random.Generator, n_distractors: tuple[int, int] = (1, 3),
                 region: str = "any") -> Scene:
    """Random object positions, colours and distractors for ``task``; the object it acts on (cup,
    cabinet, block) stands in ``region`` (see :data:`REGIONS`)."""
    if region not in REGIONS:
        raise ConfigError(f"unknown region {region!r}; choose one of {', '.join(REGIONS)}")
    lo, hi = REGIONS[region]
    colors = rng.permutation(len(PALETTE))
    pos: dict[str, np.ndarray] = {}
    col: dict[str, np.ndarray] = {}
    push_dir = None
    if task.name == "pick_place":
        pos["cup"] = _sample_xy(rng, (lo, 0.35), (hi, 0.75), [], 0)
        pos["plate"] = _sample_xy(rng, (0.2, 0.3), (0.8, 0.75), [pos["cup"]], 0.3)
        col["cup"] = PALETTE[colors[0]]
        col["plate"] = np.array([0.93, 0.93, 0.9], np.float32) * rng.uniform(0.85, 1.0)
    elif task.name == "open_drawer":
        pos["cabinet"] = _sample_xy(rng, (max(lo, 0.3), 0.6), (min(hi, 0.7), 0.75), [], 0)
        col["cabinet"] = PALETTE[colors[0]] * 0.6
        col["handle"] = np.array([0.75, 0.75, 0.78], np.float32)
    elif task.name == "push_block":
        pos["block"] = _sample_xy(rng, (max(lo, 0.25), 0.35), (min(hi, 0.75), 0.7), [], 0)
        pos["target"] = _sample_xy(rng, (0.2, 0.3), (0.8, 0.75), [pos["block"]], 0.25)
        d = pos["target"] - pos["block"]
        push_dir = (d / np.linalg.norm(d)).astype(np.float32)
        col["block"] = PALETTE[colors[0]]
        col["target"] = PALETTE[colors[1]]
    else:  # pragma: no cover - TASKS is closed
        raise ConfigError(f"no scene for task {task.name!r}")
    used = list(pos.values())
    distractors = []
    for i in range(int(rng.integers(n_distractors[0], n_distractors[1] + 1))):
        xy = _sample_xy(rng, (0.08, 0.15), (0.92, 0.92), used, 0.2)
        used.append(xy)
        distractors.append(Distractor(str(rng.choice(["ball", "box", "flat"])), xy,
                                      PALETTE[colors[2 + i % (len(PALETTE) - 2)]],
                                      float(rng.uniform(0.03, 0.05))))
    return Scene(task, pos, col, tuple(distractors), push_dir)


# table-frame geometry shared by the plan, the object model and the renderer
CUP_HEIGHT = 0.1
BLOCK_SIZE = 0.08
CABINET_SIZE = np.array([0.3, 0.2], np.float32)  # width (x), depth (y)
HANDLE_Z = 0.08
DRAWER_TRAVEL = 0.22


def handle_xy(scene: Scene) -> np.ndarray:
    """Where the drawer handle is when the drawer is closed."""
    c = scene.positions["cabinet"]
    return np.array([c[0], c[1] - CABINET_SIZE[1] / 2 - 0.03], np.float32)


def stage_plan(scene: Scene) -> list[Waypoint]:
    """The effector's waypoint at the end of each stage (before embodiment-specific timing)."""
    t = scene.task.name
    P = lambda x, y, z: np.array([x, y, z], np.float32)  # noqa: E731
    if t == "pick_place":
        (cx, cy), (px, py) = scene.positions["cup"], scene.positions["plate"]
        return [
            Waypoint("reach", P(cx, cy - 0.02, 0.16), Grip.OPEN, 0.9),
            Waypoint("grasp", P(cx, cy, 0.06), Grip.HOLD, 0.6),
            Waypoint("lift", P(cx, cy, 0.28), Grip.HOLD, 0.5),
            Waypoint("move", P(px, py, 0.28), Grip.HOLD, 0.9),
            Waypoint("place", P(px, py, 0.07), Grip.HOLD, 0.6),
            Waypoint("release", P(px, py - 0.03, 0.18), Grip.OPEN, 0.5),
        ]
    if t == "open_drawer":
        hx, hy = handle_xy(scene)
        return [
            Waypoint("reach", P(hx, hy - 0.1, HANDLE_Z + 0.05), Grip.OPEN, 0.9),
            Waypoint("grasp", P(hx, hy, HANDLE_Z), Grip.HOLD, 0.6),
            Waypoint("pull", P(hx, hy - DRAWER_TRAVEL, HANDLE_Z), Grip.HOLD, 0.9),
            Waypoint("release", P(hx, hy - DRAWER_TRAVEL - 0.02, HANDLE_Z + 0.02), Grip.OPEN, 0.4),
            Waypoint("retreat", P(hx, hy - DRAWER_TRAVEL - 0.2, 0.3), Grip.OPEN, 0.6),
        ]
    if t == "push_block":
        b, d = scene.positions["block"], scene.push_dir
        tgt = scene.positions["target"]
        behind = b - d * (BLOCK_SIZE / 2 + 0.05)
        end = tgt - d * (BLOCK_SIZE / 2 + 0.05)
        return [
            Waypoint("reach", P(behind[0], behind[1], 0.2), Grip.FIST, 0.9),
            Waypoint("lower", P(behind[0], behind[1], 0.04), Grip.FIST, 0.5),
            Waypoint("push", P(end[0], end[1], 0.04), Grip.FIST, 1.0),
            Waypoint("retreat", P(end[0] - d[0] * 0.1, end[1] - d[1] * 0.1, 0.3), Grip.FIST, 0.6),
        ]
    raise ConfigError(f"no plan for task {t!r}")  # pragma: no cover


def object_tracks(scene: Scene, ee: np.ndarray, stage: np.ndarray) -> dict[str, np.ndarray]:
    """Per-frame object positions ``(T, 3)`` (and ``drawer`` opening ``(T,)``) given the effector track.

    Objects move only through contact: the cup is carried from the end of *grasp*
    to the end of *place*, the drawer follows the handle while *pull*-ing, and the
    block is pushed ahead of the effector during *push*.
    """
    T = len(ee)
    names = scene.task.stages
    name_of = np.array(names)[stage]
    out: dict[str, np.ndarray] = {}
    if scene.task.name == "pick_place":
        cup = np.tile(np.r_[scene.positions["cup"], 0.0].astype(np.float32), (T, 1))
        carried = np.isin(name_of, ["lift", "move", "place"])
        cup[carried] = ee[carried] - np.array([0, 0, 0.06], np.float32)
        after = np.flatnonzero(np.isin(name_of, ["release"]))
        if carried.any() and after.size:
            last = cup[np.flatnonzero(carried)[-1]].copy()
            last[2] = 0.0
            cup[after] = last
        cup[:, 2] = np.maximum(cup[:, 2], 0.0)
        out["cup"] = cup
        out["plate"] = np.tile(np.r_[scene.positions["plate"], 0.0].astype(np.float32), (T, 1))
    elif scene.task.name == "open_drawer":
        hy = handle_xy(scene)[1]
        opening = np.zeros(T, np.float32)
        pulling = name_of == "pull"
        opening[pulling] = np.clip(hy - ee[pulling, 1], 0.0, DRAWER_TRAVEL)
        idx = np.flatnonzero(pulling)
        if idx.size:
            opening[idx[-1] + 1:] = opening[idx[-1]]
        out["drawer"] = opening
    elif scene.task.name == "push_block":
        d = scene.push_dir
        b0 = scene.positions["block"]
        offset = BLOCK_SIZE / 2 + 0.05
        along = (ee[:, :2] - b0) @ d + offset  # how far the pusher is past the block's start
        pushing = name_of == "push"
        shift = np.where(pushing, np.maximum(along, 0.0), 0.0)
        shift = np.maximum.accumulate(shift)
        block = np.zeros((T, 3), np.float32)
        block[:, :2] = b0 + shift[:, None] * d
        out["block"] = block
        out["target"] = np.tile(np.r_[scene.positions["target"], 0.0].astype(np.float32), (T, 1))
    return out
