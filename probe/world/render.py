"""Vectorised numpy rendering of the world's small RGB frames.

A pinhole camera looks at the table; every pixel's ray is intersected with the table
plane to paint the table, flat objects and soft shadows; upright objects, the hand
and the robot are projected and drawn as anti-aliased discs, capsules and boxes,
back to front. All frames of an episode are drawn at once (arrays ``(T, H, W)``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from probe.world import tasks as W
from probe.world.bodies import Arm
from probe.world.embodiments import GRIPPER_LENGTH, HAND_SCALE, TARGET_ARM, hand_keypoints, robot_ik, robot_points

SKIN = np.array([0.87, 0.66, 0.52], np.float32)
STEEL = np.array([0.62, 0.63, 0.66], np.float32)
DARK = np.array([0.18, 0.18, 0.2], np.float32)
ROBOT_ORANGE = np.array([0.95, 0.55, 0.15], np.float32)


@dataclass(frozen=True)
class Camera:
    """Per-frame camera positions and look-at targets ``(T, 3)``; ``focal`` in pixels."""

    pos: np.ndarray
    target: np.ndarray
    focal: float
    size: int

    def basis(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        fwd = self.target - self.pos
        fwd /= np.linalg.norm(fwd, axis=1, keepdims=True)
        right = np.cross(fwd, np.array([0.0, 0.0, 1.0], np.float32))
        right /= np.linalg.norm(right, axis=1, keepdims=True)
        down = np.cross(fwd, right)
        return fwd, right, down

    def project(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pixel coordinates ``u, v`` and depth of points ``(T, 3)`` (or one point ``(3,)``)."""
        fwd, right, down = self.basis()
        d = np.broadcast_to(p, self.pos.shape) - self.pos
        z = np.maximum((d * fwd).sum(1), 1e-3)
        c = self.size / 2
        return c + self.focal * (d * right).sum(1) / z, c + self.focal * (d * down).sum(1) / z, z

    def table_hits(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Table-plane coordinates ``x, y`` ``(T, H, W)`` seen by each pixel, and whether the ray hits it."""
        fwd, right, down = self.basis()
        g = (np.arange(self.size, dtype=np.float32) + 0.5 - self.size / 2) / self.focal
        ray = (fwd[:, None, None, :] + g[None, None, :, None] * right[:, None, None, :]
               + g[None, :, None, None] * down[:, None, None, :])
        dz = ray[..., 2]
        hit = dz < -1e-4
        t = np.where(hit, -self.pos[:, 2, None, None] / np.where(hit, dz, -1.0), 0.0)
        x = self.pos[:, 0, None, None] + t * ray[..., 0]
        y = self.pos[:, 1, None, None] + t * ray[..., 1]
        return x, y, hit


class Canvas:
    """``T`` frames being painted, with anti-aliased primitives in pixel or table coordinates."""

    def __init__(self, camera: Camera, background: np.ndarray):
        self.cam = camera
        T, S = len(camera.pos), camera.size
        self.img = np.empty((T, S, S, 3), np.float32)
        self.img[:] = background
        g = np.arange(S, dtype=np.float32) + 0.5
        self.U, self.V = g[None, None, :], g[None, :, None]
        self.tx, self.ty, self.hit = camera.table_hits()
        # table-plane anti-aliasing width: the table distance one pixel covers
        self.px = np.maximum(np.hypot(np.gradient(self.tx, axis=2), np.gradient(self.ty, axis=2)), 1e-4)

    def paint(self, alpha: np.ndarray, color: np.ndarray) -> None:
        color = np.asarray(color, np.float32).reshape(-1, 1, 1, 3) if np.ndim(color) == 2 else color
        self.img += alpha[..., None] * (color - self.img)

    # --- table plane ---
    def table_rect(self, x0, y0, x1, y1) -> np.ndarray:
        """Alpha of a table-plane rectangle; bounds are scalars or ``(T,)`` arrays."""
        r = lambda a: np.reshape(np.asarray(a, np.float32), (-1, 1, 1))  # noqa: E731
        dx = np.maximum(r(x0) - self.tx, self.tx - r(x1))
        dy = np.maximum(r(y0) - self.ty, self.ty - r(y1))
        return np.clip(0.5 - np.maximum(dx, dy) / self.px, 0, 1) * self.hit

    def table_disc(self, xy: np.ndarray, radius, soft: float = 0.0) -> np.ndarray:
        """Alpha of a table-plane disc at ``xy`` (``(2,)`` or ``(T, 2)``); ``soft`` blurs its edge."""
        xy = np.broadcast_to(np.asarray(xy, np.float32), (len(self.tx), 2))
        radius = np.reshape(np.asarray(radius, np.float32), (-1, 1, 1))
        d = np.hypot(self.tx - xy[:, 0, None, None], self.ty - xy[:, 1, None, None])
        width = self.px + np.reshape(np.asarray(soft, np.float32), (-1, 1, 1))
        return np.clip(0.5 - (d - radius) / width, 0, 1) * self.hit

    # --- projected 3-D primitives ---
    def _radius(self, world_r: float, z: np.ndarray) -> np.ndarray:
        return np.maximum(self.cam.focal * world_r / z, 0.5)[:, None, None]

    def sphere(self, p: np.ndarray, world_r: float) -> np.ndarray:
        u, v, z = self.cam.project(p)
        d = np.hypot(self.U - u[:, None, None], self.V - v[:, None, None])
        return np.clip(self._radius(world_r, z) - d + 0.5, 0, 1)

    def capsule(self, p0: np.ndarray, p1: np.ndarray, world_r: float) -> np.ndarray:
        u0, v0, z0 = self.cam.project(p0)
        u1, v1, z1 = self.cam.project(p1)
        du, dv = (u1 - u0)[:, None, None], (v1 - v0)[:, None, None]
        pu, pv = self.U - u0[:, None, None], self.V - v0[:, None, None]
        t = np.clip((pu * du + pv * dv) / np.maximum(du * du + dv * dv, 1e-6), 0, 1)
        d = np.hypot(pu - t * du, pv - t * dv)
        return np.clip(self._radius(world_r, (z0 + z1) / 2) - d + 0.5, 0, 1)

    def box(self, p: np.ndarray, world_half: float) -> np.ndarray:
        u, v, z = self.cam.project(p)
        h = self._radius(world_half, z)
        d = np.maximum(np.abs(self.U - u[:, None, None]), np.abs(self.V - v[:, None, None]))
        return np.clip(h - d + 0.5, 0, 1)

    def frames(self) -> np.ndarray:
        return (np.clip(self.img, 0, 1) * 255 + 0.5).astype(np.uint8)


def _col(x) -> np.ndarray:
    return np.asarray(x, np.float32)


def draw_scene(cv: Canvas, scene: W.Scene, objects: dict[str, np.ndarray], table_color: np.ndarray,
               shadow_points: list[tuple[np.ndarray, float]]) -> None:
    """Table, flat objects, shadows, distractors and task objects."""
    T = len(cv.tx)
    cv.paint(cv.table_rect(-0.05, -0.1, 1.05, 1.05), table_color)
    # a faint texture so that the table's motion in the image is visible
    stripes = 0.5 + 0.5 * np.sin(cv.ty * 40.0 + np.sin(cv.tx * 7.0))
    cv.paint(cv.table_rect(-0.05, -0.1, 1.05, 1.05) * stripes * 0.12, table_color * 0.7)
    name = scene.task.name
    if name == "pick_place":
        plate = scene.positions["plate"]
        cv.paint(cv.table_disc(plate, 0.09), scene.colors["plate"])
        cv.paint(cv.table_disc(plate, 0.06), scene.colors["plate"] * 0.9)
    elif name == "push_block":
        tgt = scene.positions["target"]
        cv.paint(cv.table_disc(tgt, 0.075), scene.colors["target"])
        cv.paint(cv.table_disc(tgt, 0.05), table_color)
        cv.paint(cv.table_disc(tgt, 0.025), scene.colors["target"])
    elif name == "open_drawer":
        c, (w, d) = scene.positions["cabinet"], W.CABINET_SIZE
        opening = objects["drawer"]
        cv.paint(cv.table_rect(c[0] - w / 2, c[1] - d / 2, c[0] + w / 2, c[1] + d / 2), scene.colors["cabinet"])
        front = c[1] - d / 2
        tray = cv.table_rect(c[0] - w / 2 + 0.02, front - opening, c[0] + w / 2 - 0.02, front + 0.01)
        cv.paint(tray, scene.colors["cabinet"] * 1.5)
        cv.paint(cv.table_rect(c[0] - w / 2 + 0.04, front - opening + 0.02, c[0] + w / 2 - 0.04, front - 0.01)
                 * (opening > 0.03)[:, None, None], DARK)
    for dist in scene.distractors:
        if dist.kind == "flat":
            cv.paint(cv.table_disc(dist.xy, dist.size * 1.3), dist.color)
    for p, r in shadow_points:
        soft = 0.02 + 0.1 * p[:, 2]
        cv.paint(cv.table_disc(p[:, :2] + np.array([0.02, -0.01], np.float32), r, soft) * 0.35, DARK)
    for dist in scene.distractors:
        p = np.tile(np.r_[dist.xy, dist.size].astype(np.float32), (T, 1))
        if dist.kind == "ball":
            cv.paint(cv.sphere(p, dist.size), dist.color)
        elif dist.kind == "box":
            cv.paint(cv.box(p, dist.size), dist.color)
    if name == "pick_place":
        cup = objects["cup"]
        top = cup + np.array([0, 0, W.CUP_HEIGHT], np.float32)
        cv.paint(cv.capsule(cup + np.array([0, 0, 0.02], np.float32), top, 0.045), scene.colors["cup"])
        cv.paint(cv.sphere(top, 0.03), scene.colors["cup"] * 0.55)
    elif name == "push_block":
        blk = objects["block"] + np.array([0, 0, W.BLOCK_SIZE / 2], np.float32)
        cv.paint(cv.box(blk, W.BLOCK_SIZE / 2), scene.colors["block"])
        cv.paint(cv.box(blk + np.array([0, 0, W.BLOCK_SIZE / 2], np.float32), W.BLOCK_SIZE / 4),
                 scene.colors["block"] * 1.15)
    elif name == "open_drawer":
        hx, hy = W.handle_xy(scene)
        y = hy - objects["drawer"]
        p0 = np.stack([np.full(T, hx - 0.05), y, np.full(T, W.HANDLE_Z)], 1).astype(np.float32)
        p1 = p0 + np.array([0.1, 0, 0], np.float32)
        cv.paint(cv.capsule(p0, p1, 0.015), scene.colors["handle"])


def draw_hand(cv: Canvas, wrist: np.ndarray, aperture: np.ndarray, sleeve: np.ndarray, skin: np.ndarray) -> None:
    """A right hand: forearm in a sleeve, palm, four fingers and a thumb."""
    k = hand_keypoints(wrist, aperture)
    cv.paint(cv.capsule(k["elbow"], wrist, 0.045), sleeve)
    h = HAND_SCALE
    cv.paint(cv.capsule(wrist, k["palm"], 0.035 * h), skin)
    cv.paint(cv.sphere(k["palm"], 0.042 * h), skin)
    cv.paint(cv.capsule(k["thumb_base"], k["thumb_tip"], 0.013 * h), skin * 0.9)
    for i in range(4):
        cv.paint(cv.capsule(k[f"finger{i}_base"], k[f"finger{i}_tip"], 0.011 * h), skin * (0.88 + 0.04 * i))


def draw_robot(cv: Canvas, ee: np.ndarray, aperture: np.ndarray, link_color: np.ndarray,
               arm: Arm = TARGET_ARM) -> None:
    """The arm (base, upper arm, forearm) and a two-finger parallel gripper on a bar."""
    T = len(ee)
    pts = robot_points(robot_ik(ee, arm), arm)
    base = np.tile(np.asarray(arm.base, np.float32), (T, 1))
    cv.paint(cv.capsule(base, pts["shoulder"], 0.06), DARK)
    cv.paint(cv.capsule(pts["shoulder"], pts["elbow"], 0.04), link_color)
    cv.paint(cv.capsule(pts["elbow"], pts["wrist"], 0.035), link_color)
    cv.paint(cv.sphere(pts["elbow"], 0.045), DARK)
    bar_z = ee + np.array([0, 0, GRIPPER_LENGTH * 0.8], np.float32)
    cv.paint(cv.capsule(pts["wrist"], bar_z, 0.025), DARK)
    half = (0.03 + 0.1 * aperture)[:, None] / 2 + 0.01
    side = np.array([1.0, 0, 0], np.float32)
    cv.paint(cv.capsule(bar_z - side * (half + 0.015), bar_z + side * (half + 0.015), 0.015), DARK)
    for sgn in (-1, 1):
        top = bar_z + sgn * side * half
        cv.paint(cv.capsule(top, ee + sgn * side * half, 0.012), STEEL)


def egocentric_camera(wrist: np.ndarray, rng: np.random.Generator, size: int, *,
                      head=(0.5, -0.22, 0.72), look=(0.5, 0.5, 0.0), focal: float = 1.2) -> Camera:
    """A head camera near ``head`` that sways, bobs and follows the hand with its gaze."""
    T = len(wrist)
    t = np.arange(T, dtype=np.float32)

    def smooth_noise(scale: float, width: int = 8) -> np.ndarray:
        n = rng.normal(0, 1, (T + 2 * width, 3)).astype(np.float32)
        k = np.hanning(2 * width + 1).astype(np.float32)
        k /= k.sum()
        out = np.stack([np.convolve(n[:, i], k, mode="same") for i in range(3)], 1)[width:width + T]
        return out * scale / max(float(out.std()), 1e-6)

    head = np.asarray(head, np.float32) + np.array([rng.uniform(-0.06, 0.06), rng.uniform(-0.04, 0.03),
                                                    rng.uniform(-0.05, 0.05)], np.float32)
    sway = np.stack([np.sin(t * 0.21 + rng.uniform(0, 6)), np.zeros(T), np.sin(t * 0.43 + rng.uniform(0, 6))], 1)
    pos = head + 0.015 * sway.astype(np.float32) + smooth_noise(0.012)
    gaze = 0.6 * np.asarray(look, np.float32) + 0.4 * np.c_[wrist[:, :2], np.zeros(T, np.float32)]
    target = gaze + smooth_noise(0.03)
    return Camera(pos.astype(np.float32), target.astype(np.float32), focal=size * focal, size=size)


def fixed_camera(T: int, size: int, pos=(1.3, -0.2, 0.9), target=(0.5, 0.55, 0.05), focal: float = 1.45) -> Camera:
    """A fixed third-person camera (default: the target robot's, front-right of the table)."""
    return Camera(np.tile(np.asarray(pos, np.float32), (T, 1)), np.tile(np.asarray(target, np.float32), (T, 1)),
                  focal=size * focal, size=size)


def front_camera(T: int, size: int) -> Camera:
    """The target robot's fixed camera, front-right of the table."""
    return fixed_camera(T, size)
