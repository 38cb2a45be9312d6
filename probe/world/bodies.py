"""Every body of the world, and the robot pre-training mixture whose diversity the sweep varies.

A :class:`Body` says how one embodiment looks, moves, is filmed and what its state and
actions are. Three kinds of body exist:

* the **human** (a hand from an egocentric head camera, in a home kitchen);
* the **target robot** ``robot`` (an orange 4-joint arm with a parallel gripper, a
  fixed front camera, a grey lab bench): the robot the human data should help;
* the robots of the **pre-training mixture** (:data:`MIXTURE`): other arms (base pose,
  link length, colour), grippers (parallel, or a five-finger hand on a humanoid),
  cameras (front, side, overhead, a swaying head camera), action spaces (joint
  targets or end-effector positions) and scenes (lab, workshop, homes, lighting).

The mixture is ordered from narrow to broad: its first datasets vary the target
robot's own lab (another camera, another arm colour); later ones add new arms,
action spaces, scenes and humanoids filmed from the head. A pre-training level of
``p`` percent takes the first ``p`` percent of the list (see :func:`mixture_at`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from probe.errors import ConfigError


@dataclass(frozen=True)
class Arm:
    """A 4-joint arm's geometry: base position and heading in the table frame, link lengths."""

    base: tuple[float, float, float] = (0.5, 1.25, 0.0)
    heading: float = -90.0  # degrees: the direction the base's x axis points in the table frame
    link: float = 0.8
    shoulder_height: float = 0.35


@dataclass(frozen=True)
class Shot:
    """A camera: position and look-at point in the table frame, focal length as a multiple of the
    image size; ``head`` cameras sway and follow the effector like a person's head."""

    pos: tuple[float, float, float] = (1.3, -0.2, 0.9)
    target: tuple[float, float, float] = (0.5, 0.55, 0.05)
    focal: float = 1.45
    head: bool = False


@dataclass(frozen=True)
class Look:
    """Scene appearance: table and background colours, a lighting gain, and how much each varies."""

    table: tuple[float, float, float]
    background: tuple[float, float, float]
    jitter: float = 0.08
    light: tuple[float, float] = (0.95, 1.05)

    def sample(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        gain = rng.uniform(*self.light)
        table = np.asarray(self.table, np.float32) * rng.uniform(1 - self.jitter, 1 + self.jitter, 3)
        back = np.asarray(self.background, np.float32) * rng.uniform(1 - self.jitter, 1 + self.jitter, 3)
        return {"table": np.clip(table * gain, 0, 1).astype(np.float32),
                "background": np.clip(back * gain, 0, 1).astype(np.float32)}


LAB = Look((0.62, 0.64, 0.67), (0.22, 0.24, 0.27), 0.04)
KITCHEN = Look((0.58, 0.42, 0.26), (0.85, 0.82, 0.74), 0.12, (0.85, 1.05))


@dataclass(frozen=True)
class Body:
    """One embodiment: its look, motion style, camera, state and action spaces, and dataset names."""

    name: str
    kind: str  # "hand" (a person) or "arm" (a robot)
    video_key: str
    look: Look
    shot: Shot
    arm: Arm = field(default_factory=Arm)
    gripper: str = "parallel"  # "parallel", or "hand" for a humanoid's five-finger hand
    color: tuple[float, float, float] = (0.95, 0.55, 0.15)
    action_space: str = "joint"  # "joint" (joint targets + gripper command) or "ee" (effector xyz + aperture)
    speed: float = 1.0

    @property
    def human(self) -> bool:
        return self.kind == "hand"

    @property
    def state_names(self) -> tuple[str, ...]:
        if self.human:
            return ("wrist_x", "wrist_y", "wrist_z", "aperture", "thumb_tip_x", "thumb_tip_y", "thumb_tip_z",
                    "index_tip_x", "index_tip_y", "index_tip_z")
        if self.action_space == "ee":
            return ("ee_x", "ee_y", "ee_z", "gripper_width")
        return ("base_yaw", "shoulder", "elbow", "wrist_pitch", "gripper_width", "ee_x", "ee_y", "ee_z")

    @property
    def action_names(self) -> tuple[str, ...]:
        if self.human:
            return ("wrist_x", "wrist_y", "wrist_z", "aperture")
        if self.action_space == "ee":
            return ("ee_x", "ee_y", "ee_z", "gripper")
        return ("base_yaw", "shoulder", "elbow", "wrist_pitch", "gripper")

    @property
    def state_dim(self) -> int:
        return len(self.state_names)

    @property
    def action_dim(self) -> int:
        return len(self.action_names)


HUMAN = Body("human", "hand", "observation.images.egocentric", KITCHEN,
             Shot((0.5, -0.22, 0.72), (0.5, 0.5, 0.0), 1.2, head=True))
TARGET = Body("robot", "arm", "observation.images.front", LAB, Shot())


def _robot(name: str, look: Look, shot: Shot, **kw) -> Body:
    return Body(name, "arm", "observation.images.main", look, shot, **kw)


# narrow to broad: see the module docstring. Nothing here is tuned to any metric.
MIXTURE: tuple[Body, ...] = (
    _robot("lab_side", LAB, Shot((-0.4, 0.1, 0.85), (0.5, 0.55, 0.05), 1.4), color=(0.2, 0.45, 0.85)),
    _robot("lab_front_b", LAB, Shot((0.9, -0.45, 0.8), (0.5, 0.5, 0.05), 1.4), color=(0.85, 0.85, 0.85),
           arm=Arm(link=0.85)),
    _robot("workshop_overhead", Look((0.32, 0.33, 0.36), (0.55, 0.55, 0.6), 0.1, (0.8, 1.15)),
           Shot((0.5, -0.05, 1.5), (0.5, 0.5, 0.0), 1.25), color=(0.25, 0.7, 0.3), action_space="ee",
           arm=Arm(base=(-0.35, 0.55, 0.0), heading=0.0, link=0.75)),
    _robot("studio_left", Look((0.85, 0.85, 0.82), (0.35, 0.3, 0.45), 0.1, (0.85, 1.1)),
           Shot((-0.1, -0.35, 0.8), (0.55, 0.55, 0.05), 1.35), color=(0.6, 0.25, 0.75),
           arm=Arm(base=(1.35, 0.5, 0.0), heading=180.0, link=0.78), speed=1.3),
    _robot("home_counter", Look((0.7, 0.6, 0.45), (0.9, 0.88, 0.8), 0.12, (0.85, 1.1)),
           Shot((0.2, -0.4, 0.9), (0.5, 0.5, 0.0), 1.3), color=(0.15, 0.15, 0.18), action_space="ee",
           speed=1.2),
    _robot("humanoid_lab", LAB, Shot((0.5, -0.25, 0.75), (0.5, 0.5, 0.0), 1.2, head=True),
           color=(0.4, 0.42, 0.45), gripper="hand", action_space="ee", speed=1.3),
    _robot("humanoid_home", Look((0.55, 0.45, 0.3), (0.8, 0.8, 0.72), 0.15, (0.8, 1.1)),
           Shot((0.5, -0.2, 0.7), (0.5, 0.5, 0.0), 1.2, head=True),
           color=(0.85, 0.85, 0.88), gripper="hand", action_space="ee", speed=1.4),
    _robot("home_table", Look((0.45, 0.3, 0.2), (0.75, 0.7, 0.6), 0.15, (0.8, 1.1)),
           Shot((0.85, -0.3, 0.7), (0.45, 0.5, 0.0), 1.3), color=(0.9, 0.2, 0.2), action_space="ee",
           arm=Arm(base=(0.5, 1.3, 0.0), link=0.82), speed=1.2),
)

BODIES: dict[str, Body] = {b.name: b for b in (HUMAN, TARGET, *MIXTURE)}


def body(name: str) -> Body:
    """The body called ``name``."""
    try:
        return BODIES[name]
    except KeyError:
        raise ConfigError(f"unknown embodiment {name!r}; the world has {', '.join(BODIES)}") from None


def mixture_at(level: int) -> tuple[Body, ...]:
    """The pre-training datasets of diversity ``level`` (percent of :data:`MIXTURE`, 0 = none)."""
    if not 0 <= int(level) <= 100:
        raise ConfigError(f"a diversity level is a percentage in 0..100, got {level}")
    return MIXTURE[:math.ceil(len(MIXTURE) * int(level) / 100)]
