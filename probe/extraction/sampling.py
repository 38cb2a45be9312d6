"""Which frames become samples: stride, target frame rate, caps per episode and dataset, stage and task labels."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from probe.errors import ConfigError
from probe.readers.stages import StageSpec


@dataclass(frozen=True)
class SamplingConfig:
    """How frames are picked from each episode.

    Attributes
    ----------
    stride : keep every ``stride``-th frame (>= 1).
    fps : target frame rate; frames are taken every ``episode_fps / fps`` frames
        (combined with ``stride`` by taking the larger step). None keeps all.
    max_frames : at most this many frames per episode, evenly spaced over the
        frames kept by ``stride``/``fps``. None means no cap.
    max_episodes : at most this many episodes of each dataset (the first ones). None means all.
    stages : how samples get their stage labels (``auto``, ``column:NAME``, ``subtasks``,
        ``file:PATH``, ``progress:N``; see :mod:`probe.readers.stages`).
    embodiment_stages : ``{embodiment: spec}``: the stage labels of the datasets labelled with that embodiment,
        instead of ``stages`` (e.g. a stage file for the robot, ``progress:5`` for people). CLI:
        ``--stages EMBODIMENT=SPEC`` (see :func:`parse_stages`).
    tasks : ``{embodiment: task}``: every sample of the datasets labelled with that embodiment gets that
        task instead of the dataset's own (its stored ``task`` and the prompt a policy reads), so that human
        and robot data recorded under different task names are matched by the metrics. Empty: the datasets'
        tasks. CLI: ``--task EMBODIMENT=TEXT`` (see :func:`parse_tasks`).
    """

    stride: int = 1
    fps: float | None = None
    max_frames: int | None = None
    max_episodes: int | None = None
    stages: str = "auto"
    tasks: Mapping[str, str] = field(default_factory=dict, hash=False)
    embodiment_stages: Mapping[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if isinstance(self.stride, bool) or not isinstance(self.stride, (int, np.integer)) or self.stride < 1:
            raise ConfigError(f"sampling stride must be an integer >= 1, got {self.stride!r}")
        if self.fps is not None and (not isinstance(self.fps, (int, float)) or not math.isfinite(self.fps)
                                     or self.fps <= 0):
            raise ConfigError(f"sampling fps must be a positive number or None, got {self.fps!r}")
        if self.max_frames is not None and (isinstance(self.max_frames, bool)
                                            or not isinstance(self.max_frames, (int, np.integer))
                                            or self.max_frames < 1):
            raise ConfigError(f"sampling max_frames must be an integer >= 1 or None, got {self.max_frames!r}")
        if self.max_episodes is not None and (isinstance(self.max_episodes, bool)
                                              or not isinstance(self.max_episodes, (int, np.integer))
                                              or self.max_episodes < 1):
            raise ConfigError(f"sampling max_episodes must be an integer >= 1 or None, got {self.max_episodes!r}")
        StageSpec.parse(self.stages)  # a bad spec fails before any work
        if not isinstance(self.embodiment_stages, Mapping):
            raise ConfigError("sampling embodiment_stages must be a mapping {embodiment: spec}, got "
                              f"{type(self.embodiment_stages).__name__}")
        for embodiment, spec in self.embodiment_stages.items():
            if not isinstance(embodiment, str) or not embodiment.strip():
                raise ConfigError(f"sampling embodiment_stages: an embodiment must be a non-empty string, got "
                                  f"{embodiment!r}")
            StageSpec.parse(spec)
        object.__setattr__(self, "embodiment_stages", dict(self.embodiment_stages))
        if not isinstance(self.tasks, Mapping):
            raise ConfigError(f"sampling tasks must be a mapping {{embodiment: task}}, got {type(self.tasks).__name__}")
        for embodiment, task in self.tasks.items():
            if not isinstance(embodiment, str) or not embodiment.strip():
                raise ConfigError(f"sampling tasks: an embodiment must be a non-empty string, got {embodiment!r}")
            if not isinstance(task, str) or not task.strip():
                raise ConfigError(f"sampling tasks: the task of '{embodiment}' must be a non-empty string, got "
                                  f"{task!r}; give --task {embodiment}=TEXT")
        object.__setattr__(self, "tasks", dict(self.tasks))

    def stages_of(self, embodiment: str) -> str:
        """The stage spec of the datasets labelled ``embodiment``."""
        return self.embodiment_stages.get(embodiment, self.stages)


def parse_tasks(items: Iterable[str] | None) -> dict[str, str]:
    """``--task EMBODIMENT=TEXT`` options as ``{embodiment: text}`` (split on the first ``=``: TEXT may hold one);
    an option without ``=`` or an embodiment given twice is refused."""
    tasks: dict[str, str] = {}
    for item in items or ():
        embodiment, sep, text = str(item).partition("=")
        embodiment = embodiment.strip()
        if not sep or not embodiment:
            raise ConfigError(f"--task {item!r}: expected EMBODIMENT=TEXT naming the embodiment whose samples get "
                              f"the task, e.g. --task human='pick up the can'")
        if not text.strip():
            raise ConfigError(f"--task {item!r}: no task after '='; give --task {embodiment}=TEXT")
        if embodiment in tasks:
            raise ConfigError(f"--task {embodiment}= given twice ({tasks[embodiment]!r} and {text!r}); give each "
                              "embodiment one --task")
        tasks[embodiment] = text
    return tasks


_EMBODIMENT = re.compile(r"[A-Za-z0-9_.-]+")


def parse_stages(items: str | Iterable[str] | None) -> tuple[str, dict[str, str]]:
    """``--stages`` options as ``(default spec, {embodiment: spec})``: ``SPEC`` for every dataset (once at most;
    default ``auto``), ``EMBODIMENT=SPEC`` for that embodiment's (a name of letters, digits, ``_.-`` before the
    first ``=``, so ``file:a=b.csv`` stays a spec)."""
    items = [items] if isinstance(items, str) else list(items or ())
    default: str | None = None
    by: dict[str, str] = {}
    for item in items:
        name, sep, spec = str(item).partition("=")
        if sep and _EMBODIMENT.fullmatch(name.strip()):
            name = name.strip()
            if name in by:
                raise ConfigError(f"--stages {name}= given twice ({by[name]!r} and {spec!r}); give each embodiment "
                                  "one --stages")
            by[name] = spec.strip()
        elif default is not None:
            raise ConfigError(f"--stages given twice for every dataset ({default!r} and {item!r}); give one, and "
                              "EMBODIMENT=SPEC for an embodiment's own (e.g. --stages robot=file:g1.csv "
                              "--stages human=progress:5)")
        else:
            default = str(item)
    return (default if default is not None else "auto"), by


def sample_frames(length: int, episode_fps: float, config: SamplingConfig = SamplingConfig()) -> np.ndarray:
    """Sorted, unique int64 frame indices of an episode of ``length`` frames.

    Deterministic: frames ``0, step, 2*step, ...`` where ``step`` is the larger of
    ``stride`` and ``episode_fps / fps`` (fractional steps are rounded per frame,
    so 30 -> 20 fps keeps 2 of every 3 frames), then, if more than
    ``max_frames`` remain, ``max_frames`` of them evenly spaced, first and last included.
    """
    if length < 0:
        raise ConfigError(f"episode length must be >= 0, got {length}")
    if length == 0:
        return np.zeros(0, dtype=np.int64)
    step = float(config.stride)
    if config.fps is not None:
        if episode_fps <= 0:
            raise ConfigError(f"episode fps must be positive to sample at {config.fps} fps, got {episode_fps}")
        step = max(step, float(episode_fps) / float(config.fps))
    if step == int(step):
        frames = np.arange(0, length, int(step), dtype=np.int64)
    else:
        n = int(math.floor((length - 1) / step)) + 1
        frames = np.unique(np.floor(np.arange(n) * step + 0.5).astype(np.int64))  # half up
        frames = frames[frames < length]
    if config.max_frames is not None and len(frames) > config.max_frames:
        if config.max_frames == 1:
            pick = np.array([0])
        else:
            pick = np.unique(np.floor(np.linspace(0, len(frames) - 1, config.max_frames) + 0.5).astype(np.int64))
        frames = frames[pick]
    return frames
