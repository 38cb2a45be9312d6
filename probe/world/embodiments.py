"""How the world's bodies move, what they sense and what their actions are.

* **human**: a hand seen from an egocentric head camera. Minimum-jerk reaches with
  curved paths, variable speed and a little tremor. ``observation.state`` is a
  hand-tracking state (wrist xyz, aperture, thumb and index fingertip xyz: 10 values
  in the table frame); ``action`` is the next wrist xyz and aperture (4 values).
* **robots** (the target ``robot`` and the pre-training mixture, see
  :mod:`probe.world.bodies`): 4-joint arms seen from their own cameras. Slower,
  regular, straight-line motion with trapezoidal speed profiles. Joint-space robots
  (the target among them): ``observation.state`` is joint angles, gripper width and
  end-effector xyz in the robot's base frame (8 values), ``action`` the next joint
  targets and a binary gripper command (5 values). End-effector robots: state is
  effector xyz in the base frame and gripper width (4), action the next effector xyz
  and gripper opening (4).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from probe.world.bodies import BODIES, Arm, Body, body
from probe.world.tasks import Grip, Waypoint


# every body's dataset names and sizes (video_key, state/action names and dims), by embodiment name
SPECS: dict[str, Body] = BODIES

GRIP_APERTURE = {
    "human": {Grip.OPEN: 0.95, Grip.HOLD: 0.35, Grip.FIST: 0.15},
    "robot": {Grip.OPEN: 1.0, Grip.HOLD: 0.4, Grip.FIST: 0.0},
}
START_APERTURE = {"human": 0.5, "robot": 1.0}

# the target robot's geometry (table frame): base behind the far edge, facing the near side
TARGET_ARM = Arm()
ROBOT_BASE = np.array(TARGET_ARM.base, np.float32)
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
                rng: np.random.Generator, moves_as: str | None = None) -> Motion:
    """Time and interpolate a stage plan the way ``embodiment`` moves (``moves_as`` ``"human"`` or ``"robot"``:
    the way that kind of body moves instead, a counterfactual)."""
    b = body(embodiment)
    human = b.human if moves_as is None else moves_as == "human"
    if human:
        speed = rng.uniform(0.7, 1.45)  # people vary a lot from one episode to the next
        durations = [w.duration / speed * rng.uniform(0.75, 1.3) for w in plan]
    else:
        durations = [w.duration * 1.6 / b.speed * rng.uniform(0.95, 1.05) for w in plan]
    counts = [max(3, int(round(d * fps))) for d in durations]
    style = "human" if human else "robot"
    grips = GRIP_APERTURE[style]
    pos0, ap0 = np.asarray(start, np.float32), START_APERTURE[style]
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


def start_position(embodiment: str, rng: np.random.Generator, moves_as: str | None = None) -> np.ndarray:
    """Where the effector rests before the task starts (``moves_as``: as :func:`plan_motion`)."""
    if (body(embodiment).human if moves_as is None else moves_as == "human"):
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

def _axes(arm: Arm) -> tuple[np.ndarray, np.ndarray]:
    """The base's forward and left axes in the table plane."""
    a = np.deg2rad(arm.heading)
    return np.array([np.cos(a), np.sin(a)], np.float32), np.array([-np.sin(a), np.cos(a)], np.float32)


def to_base_frame(p: np.ndarray, arm: Arm = TARGET_ARM) -> np.ndarray:
    """Table-frame points ``(..., 3)`` in the arm's base frame (x forward, y left, z up)."""
    fwd, left = _axes(arm)
    d = p - np.asarray(arm.base, np.float32)
    return np.stack([d[..., :2] @ fwd, d[..., :2] @ left, d[..., 2]], axis=-1).astype(np.float32)


def from_base_frame(p: np.ndarray, arm: Arm = TARGET_ARM) -> np.ndarray:
    """Inverse of :func:`to_base_frame`."""
    fwd, left = _axes(arm)
    xy = p[..., :1] * fwd + p[..., 1:2] * left
    return (np.concatenate([xy, p[..., 2:3]], axis=-1) + np.asarray(arm.base, np.float32)).astype(np.float32)


def robot_ik(ee: np.ndarray, arm: Arm = TARGET_ARM) -> np.ndarray:
    """Joint angles ``(T, 4)`` (base yaw, shoulder, elbow, wrist pitch) that put the gripper tips at ``ee``."""
    link = arm.link
    b = to_base_frame(ee, arm)
    yaw = np.arctan2(b[:, 1], b[:, 0])
    r = np.hypot(b[:, 0], b[:, 1])
    wz = b[:, 2] + GRIPPER_LENGTH - arm.shoulder_height
    d = np.clip(np.hypot(r, wz), 1e-3, 2 * link - 1e-3)
    elbow = np.arccos(np.clip((d**2 - 2 * link**2) / (2 * link**2), -1, 1))
    shoulder = np.arctan2(wz, r) + np.arctan2(link * np.sin(elbow), link + link * np.cos(elbow))
    wrist = -(shoulder - elbow) - np.pi / 2  # keeps the gripper pointing down
    return np.stack([yaw, shoulder, elbow, wrist], axis=1).astype(np.float32)


def robot_points(joints: np.ndarray, arm: Arm = TARGET_ARM) -> dict[str, np.ndarray]:
    """Shoulder, elbow and wrist positions ``(T, 3)`` in the table frame (forward kinematics)."""
    yaw, sh, el = joints[:, 0], joints[:, 1], joints[:, 2]
    heading = np.stack([np.cos(yaw), np.sin(yaw)], axis=1)
    link, height = arm.link, arm.shoulder_height

    def point(r: np.ndarray, z: np.ndarray) -> np.ndarray:
        return from_base_frame(np.stack([heading[:, 0] * r, heading[:, 1] * r, z], axis=1), arm)

    zero = np.zeros_like(yaw)
    elbow_r, elbow_z = link * np.cos(sh), height + link * np.sin(sh)
    wrist_r = elbow_r + link * np.cos(sh - el)
    wrist_z = elbow_z + link * np.sin(sh - el)
    return {"shoulder": point(zero, zero + height), "elbow": point(elbow_r, elbow_z),
            "wrist": point(wrist_r, wrist_z)}


# -- observation.state and action -------------------------------------------------------------

def state_and_action(embodiment: str, motion: Motion) -> tuple[np.ndarray, np.ndarray]:
    """``observation.state`` and ``action`` arrays (float32) of one episode."""
    b = body(embodiment)
    ee, ap = motion.ee, motion.aperture
    nxt = np.r_[np.arange(1, len(ee)), len(ee) - 1]
    if b.human:
        k = hand_keypoints(ee, ap)
        state = np.concatenate([ee, ap[:, None], k["thumb_tip"], k["finger0_tip"]], axis=1)
        action = np.concatenate([ee[nxt], ap[nxt, None]], axis=1)
    elif b.action_space == "ee":  # effector position in the base frame and the gripper opening
        width = 0.03 + 0.1 * ap
        base = to_base_frame(ee, b.arm)
        state = np.concatenate([base, width[:, None]], axis=1)
        action = np.concatenate([base[nxt], ap[nxt, None]], axis=1)
    else:
        joints = robot_ik(ee, b.arm)
        width = 0.03 + 0.1 * ap
        state = np.concatenate([joints, width[:, None], to_base_frame(ee, b.arm)], axis=1)
        command = (ap[nxt] > 0.7).astype(np.float32)
        action = np.concatenate([joints[nxt], command[:, None]], axis=1)
    return state.astype(np.float32), action.astype(np.float32)


def ee_from_state(embodiment: str, state: np.ndarray) -> np.ndarray:
    """Effector position in the common table frame ``(T, 3)`` from ``observation.state``.

    This is the calibration a trainer knows (camera-to-table for hands, base-to-table
    for robots); the shared trajectory objective is expressed in this frame.
    """
    b = body(embodiment)
    if b.human:
        return state[:, :3]
    if b.action_space == "ee":
        return from_base_frame(state[:, :3], b.arm)
    return from_base_frame(state[:, 5:8], b.arm)
