"""The world's two embodiments: how each moves, what it senses and what its actions are.

* **human**: a hand seen from an egocentric head camera. Minimum-jerk reaches with
  curved paths, variable speed and a little tremor. ``observation.state`` is a
  hand-tracking state (wrist xyz, aperture, thumb and index fingertip xyz: 10 values
  in the table frame); ``action`` is the next wrist xyz and aperture (4 values).
* **robot**: a 4-joint arm with a two-finger gripper seen from a fixed third-person
  camera. Slower, regular, straight-line motion with trapezoidal speed profiles.
  ``observation.state`` is joint angles, gripper width and end-effector xyz in the
  robot's base frame (8 values); ``action`` is the next joint targets and a binary
  gripper command (5 values).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

from probe.world.tasks import Grip, Waypoint


class Embodiment(str, Enum):
    """The embodiments of the built-in world."""

    HUMAN = "human"
    ROBOT = "robot"


@dataclass(frozen=True)
class EmbodimentSpec:
    """Names and sizes of an embodiment's features in its LeRobot dataset."""

    name: str
    video_key: str
    state_names: tuple[str, ...]
    action_names: tuple[str, ...]

    @property
    def state_dim(self) -> int:
        return len(self.state_names)

    @property
    def action_dim(self) -> int:
        return len(self.action_names)


SPECS: dict[str, EmbodimentSpec] = {
    "human": EmbodimentSpec(
        "human", "observation.images.egocentric",
        ("wrist_x", "wrist_y", "wrist_z", "aperture", "thumb_tip_x", "thumb_tip_y", "thumb_tip_z",
         "index_tip_x", "index_tip_y", "index_tip_z"),
        ("wrist_x", "wrist_y", "wrist_z", "aperture"),
    ),
    "robot": EmbodimentSpec(
        "robot", "observation.images.front",
        ("base_yaw", "shoulder", "elbow", "wrist_pitch", "gripper_width", "ee_x", "ee_y", "ee_z"),
        ("base_yaw", "shoulder", "elbow", "wrist_pitch", "gripper"),
    ),
}

GRIP_APERTURE = {
    "human": {Grip.OPEN: 0.95, Grip.HOLD: 0.35, Grip.FIST: 0.15},
    "robot": {Grip.OPEN: 1.0, Grip.HOLD: 0.4, Grip.FIST: 0.0},
}
START_APERTURE = {"human": 0.5, "robot": 1.0}

# robot geometry (table frame): base behind the far edge, facing the near side
ROBOT_BASE = np.array([0.5, 1.25, 0.0], np.float32)
SHOULDER_HEIGHT = 0.35
LINK = 0.8  # upper arm and forearm length
GRIPPER_LENGTH = 0.12
HAND_SCALE = 1.4


def _min_jerk(s: np.ndarray) -> np.ndarray:
    return 10 * s**3 - 15 * s**4 + 6 * s**5


def _trapezoid(s: np.ndarray, ramp: float = 0.25) -> np.ndarray:
    """Position along a segment for a constant-acceleration / cruise / deceleration profile."""
    v = 1.0 / (1.0 - ramp)
    a = v / ramp
    return np.where(s < ramp, 0.5 * a * s**2,
                    np.where(s > 1 - ramp, 1 - 0.5 * a * (1 - s) ** 2, 0.5 * a * ramp**2 + v * (s - ramp)))


@dataclass(frozen=True)
class Motion:
    """An effector track: positions ``(T, 3)``, apertures ``(T,)`` and stage index per frame."""

    ee: np.ndarray
    aperture: np.ndarray
    stage: np.ndarray
    bounds: tuple[tuple[int, int], ...]


def plan_motion(embodiment: str, plan: list[Waypoint], start: np.ndarray, fps: float,
                rng: np.random.Generator) -> Motion:
    """Time and interpolate a stage plan the way ``embodiment`` moves."""
    human = embodiment == "human"
    if human:
        speed = rng.uniform(0.7, 1.45)  # people vary a lot from one episode to the next
        durations = [w.duration / speed * rng.uniform(0.75, 1.3) for w in plan]
    else:
        durations = [w.duration * 1.6 * rng.uniform(0.95, 1.05) for w in plan]
    counts = [max(3, int(round(d * fps))) for d in durations]
    grips = GRIP_APERTURE[embodiment]
    pos0, ap0 = np.asarray(start, np.float32), START_APERTURE[embodiment]
    ees, aps, stages, bounds, t0 = [], [], [], [], 0
    for i, (w, n) in enumerate(zip(plan, counts)):
        s = np.arange(1, n + 1, dtype=np.float32) / n
        prof = _min_jerk(s) if human else _trapezoid(s)
        seg = pos0 + prof[:, None] * (w.pos - pos0)
        if human:  # curved paths: a sideways and upward bulge that peaks mid-segment
            bulge = np.sin(np.pi * prof)[:, None] * np.array(
                [rng.normal(0, 0.03), 0.0, abs(rng.normal(0, 0.02))], np.float32)
            seg = seg + bulge
        ap1 = grips[w.grip]
        if human:
            ap = ap0 + _min_jerk(np.clip(s * 1.3, 0, 1)) * (ap1 - ap0)  # hand pre-shapes early
        else:
            ap = ap0 + np.clip((s - 0.5) * 2.5, 0, 1) * (ap1 - ap0)  # gripper acts near the end
        ees.append(seg)
        aps.append(ap)
        stages.append(np.full(n, i, np.int64))
        bounds.append((t0, t0 + n))
        t0 += n
        pos0, ap0 = w.pos, ap1
    ee = np.concatenate(ees).astype(np.float32)
    aperture = np.concatenate(aps).astype(np.float32)
    if human:  # physiological tremor: small smooth noise
        tremor = rng.normal(0, 0.004, size=ee.shape).astype(np.float32)
        ee = ee + np.cumsum(tremor, axis=0) * 0.3 - np.cumsum(tremor, axis=0).mean(0) * 0.3
        aperture = np.clip(aperture + rng.normal(0, 0.01, len(aperture)).astype(np.float32), 0, 1)
    ee[:, 2] = np.maximum(ee[:, 2], 0.02)
    return Motion(ee, aperture, np.concatenate(stages), tuple(bounds))


def start_position(embodiment: str, rng: np.random.Generator) -> np.ndarray:
    """Where the effector rests before the task starts."""
    if embodiment == "human":
        return np.array([rng.uniform(0.35, 0.65), rng.uniform(0.0, 0.12), rng.uniform(0.2, 0.3)], np.float32)
    return np.array([0.5, 0.75, 0.35], np.float32)


# -- human hand model -------------------------------------------------------------------------

def hand_keypoints(wrist: np.ndarray, aperture: np.ndarray) -> dict[str, np.ndarray]:
    """Palm centre and the base and tip of each finger, ``(T, 3)`` each, in the table frame.

    The hand points away from the body (+y) and slightly down; fingers spread and
    curl with the aperture; the thumb comes from the left of the palm (right hand).
    """
    a = aperture[:, None]
    fwd = np.array([0.0, 1.0, -0.35], np.float32)
    fwd /= np.linalg.norm(fwd)
    side = np.array([1.0, 0.0, 0.0], np.float32)
    down = np.cross(side, fwd)
    down = -down / np.linalg.norm(down)
    h = HAND_SCALE
    palm = wrist + fwd * 0.05 * h
    out = {"palm": palm}
    for i, off in enumerate((-0.03, -0.01, 0.01, 0.03)):
        base = palm + (fwd * 0.035 + side * off) * h
        spread = side * off * (1.0 + 2.0 * a) * h
        length = (0.045 + 0.035 * a) * h  # curled fingers look shorter
        tip = base + fwd * length + spread + down * (0.03 * (1 - a)) * h
        out[f"finger{i}_base"], out[f"finger{i}_tip"] = base, tip
    thumb_base = palm + (-side * 0.035 + fwd * 0.005) * h
    thumb_tip = thumb_base + (-side * (0.015 + 0.035 * a) + fwd * (0.04 - 0.01 * a) + down * 0.02) * h
    out["thumb_base"], out["thumb_tip"] = thumb_base, thumb_tip
    out["elbow"] = wrist + np.array([0.08, -0.3, -0.05], np.float32)
    return out


# -- robot kinematics -------------------------------------------------------------------------

def to_base_frame(p: np.ndarray) -> np.ndarray:
    """Table-frame points ``(..., 3)`` in the robot's base frame (x forward, y left, z up)."""
    d = p - ROBOT_BASE
    return np.stack([-d[..., 1], d[..., 0], d[..., 2]], axis=-1)


def from_base_frame(p: np.ndarray) -> np.ndarray:
    """Inverse of :func:`to_base_frame`."""
    return np.stack([p[..., 1], -p[..., 0], p[..., 2]], axis=-1) + ROBOT_BASE


def robot_ik(ee: np.ndarray) -> np.ndarray:
    """Joint angles ``(T, 4)`` (base yaw, shoulder, elbow, wrist pitch) that put the gripper tips at ``ee``."""
    b = to_base_frame(ee)
    yaw = np.arctan2(b[:, 1], b[:, 0])
    r = np.hypot(b[:, 0], b[:, 1])
    wz = b[:, 2] + GRIPPER_LENGTH - SHOULDER_HEIGHT
    d = np.clip(np.hypot(r, wz), 1e-3, 2 * LINK - 1e-3)
    elbow = np.arccos(np.clip((d**2 - 2 * LINK**2) / (2 * LINK**2), -1, 1))
    shoulder = np.arctan2(wz, r) + np.arctan2(LINK * np.sin(elbow), LINK + LINK * np.cos(elbow))
    wrist = -(shoulder - elbow) - np.pi / 2  # keeps the gripper pointing down
    return np.stack([yaw, shoulder, elbow, wrist], axis=1).astype(np.float32)


def robot_points(joints: np.ndarray) -> dict[str, np.ndarray]:
    """Shoulder, elbow and wrist positions ``(T, 3)`` in the table frame (forward kinematics)."""
    yaw, sh, el = joints[:, 0], joints[:, 1], joints[:, 2]
    heading = np.stack([np.cos(yaw), np.sin(yaw)], axis=1)

    def point(r: np.ndarray, z: np.ndarray) -> np.ndarray:
        return from_base_frame(np.stack([heading[:, 0] * r, heading[:, 1] * r, z], axis=1))

    zero = np.zeros_like(yaw)
    elbow_r, elbow_z = LINK * np.cos(sh), SHOULDER_HEIGHT + LINK * np.sin(sh)
    wrist_r = elbow_r + LINK * np.cos(sh - el)
    wrist_z = elbow_z + LINK * np.sin(sh - el)
    return {"shoulder": point(zero, zero + SHOULDER_HEIGHT), "elbow": point(elbow_r, elbow_z),
            "wrist": point(wrist_r, wrist_z)}


# -- observation.state and action -------------------------------------------------------------

def state_and_action(embodiment: str, motion: Motion) -> tuple[np.ndarray, np.ndarray]:
    """``observation.state`` and ``action`` arrays (float32) of one episode."""
    ee, ap = motion.ee, motion.aperture
    nxt = np.r_[np.arange(1, len(ee)), len(ee) - 1]
    if embodiment == "human":
        k = hand_keypoints(ee, ap)
        state = np.concatenate([ee, ap[:, None], k["thumb_tip"], k["finger0_tip"]], axis=1)
        action = np.concatenate([ee[nxt], ap[nxt, None]], axis=1)
    else:
        joints = robot_ik(ee)
        width = 0.03 + 0.1 * ap
        state = np.concatenate([joints, width[:, None], to_base_frame(ee)], axis=1)
        command = (ap[nxt] > 0.7).astype(np.float32)
        action = np.concatenate([joints[nxt], command[:, None]], axis=1)
    return state.astype(np.float32), action.astype(np.float32)


def ee_from_state(embodiment: str, state: np.ndarray) -> np.ndarray:
    """Effector position in the common table frame ``(T, 3)`` from ``observation.state``.

    This is the calibration a trainer knows (camera-to-table for hands, base-to-table
    for the robot); the shared trajectory objective is expressed in this frame.
    """
    if embodiment == "human":
        return state[:, :3]
    return from_base_frame(state[:, 5:8])
