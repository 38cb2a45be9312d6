"""One episode of the world: a scene, an effector track, object tracks, rendered frames and labels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from probe.world import render as R
from probe.world.bodies import Body, Look, Shot, body
from probe.world.embodiments import Motion, plan_motion, start_position, state_and_action
from probe.world.tasks import Scene, Task, object_tracks, sample_scene, stage_plan


@dataclass(frozen=True, eq=False)
class Episode:
    """A generated episode of one embodiment.

    Attributes
    ----------
    frames : uint8 ``(T, H, W, 3)`` RGB.
    state, action : float32 ``(T, P)`` and ``(T, A)`` (``observation.state`` and ``action``).
    stage : int ``(T,)`` index into ``task.stages``; ``bounds`` the ``[start, end)`` frames of each stage.
    ee : float32 ``(T, 3)`` effector position in the table frame (ground truth, not written).
    """

    task: Task
    embodiment: str
    scene: Scene
    motion: Motion
    frames: np.ndarray
    state: np.ndarray
    action: np.ndarray

    @property
    def length(self) -> int:
        return len(self.frames)

    @property
    def stage(self) -> np.ndarray:
        return self.motion.stage

    @property
    def stage_names(self) -> np.ndarray:
        return np.asarray(self.task.stages, dtype=object)[self.motion.stage]

    @property
    def bounds(self) -> tuple[tuple[int, int], ...]:
        return self.motion.bounds

    @property
    def progress(self) -> np.ndarray:
        return (np.arange(self.length) / max(self.length - 1, 1)).astype(np.float32)

    @property
    def ee(self) -> np.ndarray:
        return self.motion.ee


def _look(b: Body, rng: np.random.Generator, scene: Look | None = None) -> dict[str, np.ndarray]:
    """Scene appearance: a home kitchen for people; each robot's own scene (see :mod:`probe.world.bodies`);
    ``scene`` puts the body in another scene (its table and background), keeping its own colours."""
    if b.human and scene is not None:
        return scene.sample(rng) | {"skin": R.SKIN * rng.uniform(0.7, 1.08),
                                    "sleeve": rng.uniform(0.1, 0.7, 3).astype(np.float32)}
    if b.human:
        wood = np.array([0.58, 0.42, 0.26], np.float32) * rng.uniform(0.8, 1.15)
        return {"table": wood, "background": np.array([0.85, 0.82, 0.74], np.float32) * rng.uniform(0.85, 1.0),
                "skin": R.SKIN * rng.uniform(0.7, 1.08), "sleeve": rng.uniform(0.1, 0.7, 3).astype(np.float32)}
    color = np.asarray(b.color, np.float32) * rng.uniform(0.9, 1.05)
    return (scene or b.look).sample(rng) | {"links": np.clip(color, 0, 1), "skin": np.clip(color * 0.85, 0, 1),
                                 "sleeve": np.clip(color * 0.6, 0, 1)}


def _camera(shot: Shot, ee: np.ndarray, rng: np.random.Generator, size: int) -> R.Camera:
    if shot.head:
        return R.egocentric_camera(ee, rng, size, head=shot.pos, look=shot.target, focal=shot.focal)
    return R.fixed_camera(len(ee), size, shot.pos, shot.target, shot.focal)


def make_episode(task: Task, embodiment: str, rng: np.random.Generator, *, fps: float = 10.0,
                 image_size: int = 64, scene: Scene | None = None, look: Look | None = None,
                 shot: Shot | None = None, moves_as: str | None = None) -> Episode:
    """Sample a scene (unless given), move through the task's stages as ``embodiment`` and render every frame.

    ``look`` and ``shot`` film the body in another scene or from another camera than its own (a
    counterfactual: e.g. a person in the robot's lab, seen by the robot's camera); ``moves_as`` (``"human"`` or
    ``"robot"``) moves it as that kind of body does (speed, path, start and grip), another counterfactual.
    """
    if moves_as not in (None, "human", "robot"):
        raise ValueError(f"moves_as must be 'human', 'robot' or None, got {moves_as!r}")
    b = body(embodiment)
    scene = sample_scene(task, rng) if scene is None else scene
    motion = plan_motion(embodiment, stage_plan(scene), start_position(embodiment, rng, moves_as), fps, rng, moves_as)
    objects = object_tracks(scene, motion.ee, motion.stage)
    colors = _look(b, rng, look)
    cv = R.Canvas(_camera(shot or b.shot, motion.ee, rng, image_size), colors["background"])
    shadows = [(motion.ee, 0.05 if b.human or b.gripper == "hand" else 0.04)]
    if "cup" in objects:
        shadows.append((objects["cup"], 0.04))
    R.draw_scene(cv, scene, objects, colors["table"], shadows)
    if b.human or b.gripper == "hand":
        R.draw_hand(cv, motion.ee, motion.aperture, colors["sleeve"], colors["skin"])
    else:
        R.draw_robot(cv, motion.ee, motion.aperture, colors["links"], b.arm)
    frames = cv.frames()
    state, action = state_and_action(embodiment, motion)
    return Episode(task, embodiment, scene, motion, frames, state, action)
