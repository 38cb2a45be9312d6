"""Generate the world's datasets: one LeRobot v3.0 dataset per embodiment, seeded and deterministic."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from probe.atomic import atomic_dir, write_json
from probe.errors import DataError
from probe.progress import track
from probe.world.config import WorldConfig
from probe.world.embodiments import SPECS
from probe.world.episodes import Episode, make_episode
from probe.world.lerobot_v3 import write_dataset
from probe.world.tasks import resolve_tasks, sample_scene
from probe.validate import OutputKind

log = logging.getLogger(__name__)

WORLD_FORMAT = "probe-world"
WORLD_KIND = OutputKind("world directory", "world.json", WORLD_FORMAT)  # what --overwrite may replace
EMBODIMENTS: tuple[str, ...] = ("human", "robot")


def make_episodes(config: WorldConfig, embodiment: str, *, progress: bool = False, region: str | None = None,
                  episodes_per_task: int | None = None, stream: int | None = None) -> list[Episode]:
    """Episodes of one embodiment: ``episodes_per_task`` of every task, tasks interleaved.

    ``region`` is where task objects stand (default: anywhere for people, ``config.robot_region``
    for robots); ``stream`` picks an independent random stream (default: the embodiment's own).
    """
    from probe.world.bodies import BODIES, body

    tasks = resolve_tasks(config.tasks)
    if region is None:
        region = "any" if body(embodiment).human else config.robot_region
    stream = list(BODIES).index(embodiment) if stream is None else stream
    seed_seq = np.random.SeedSequence([config.seed, stream])
    n = (episodes_per_task or config.episodes_per_task) * len(tasks)
    rngs = [np.random.default_rng(s) for s in seed_seq.spawn(n)]
    order = [tasks[i % len(tasks)] for i in range(n)]
    return [make_episode(task, embodiment, rng, fps=config.fps, image_size=config.image_size,
                         scene=sample_scene(task, rng, region=region))
            for task, rng in track(zip(order, rngs), total=n, desc=f"rendering {embodiment}", enabled=progress)]


HELDOUT_STREAM = 1000  # the random stream of the held-out robot episodes (apart from every body's own)


def read_world_config(world_dir: str | Path) -> dict | None:
    """The ``world.json`` of a generated world, or None when there is none."""
    path = Path(world_dir) / "world.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"'{path}' is not valid JSON ({exc}); delete the world directory and generate it again") from exc


def generate_world(out: str | Path, size: str = "default", seed: int = 0, *,
                   tasks: Sequence[str] | None = None, episodes_per_task: int | None = None,
                   overwrite: bool = False, progress: bool = False, config: WorldConfig | None = None) -> Path:
    """Render both embodiments' episodes and write them as LeRobot v3.0 datasets under ``out/datasets``.

    Parameters
    ----------
    out : world directory to create; refused when it exists unless ``overwrite``.
    size : ``"tiny"``, ``"small"`` or ``"default"`` (see :class:`WorldConfig.preset`).
    seed : generation seed; the same seed and size give the same datasets.
    tasks : task names or instructions to include (default: all, see ``probe.world.tasks.TASKS``).
    episodes_per_task : episodes of each task per embodiment (default: the size's preset).
    config : a full :class:`WorldConfig` instead of ``size`` and ``seed``.

    Returns
    -------
    The world directory, holding ``world.json`` and ``datasets/{human,robot}``.
    """
    if config is None:
        overrides = {k: v for k, v in (("tasks", tasks), ("episodes_per_task", episodes_per_task)) if v is not None}
        config = WorldConfig.preset(size, seed=seed, **overrides)
    out = Path(out)
    with atomic_dir(out, overwrite=overwrite, kind=WORLD_KIND) as tmp:
        datasets = {}
        for emb in EMBODIMENTS:
            episodes = make_episodes(config, emb, progress=progress)
            root = tmp / "datasets" / emb
            write_dataset(root, episodes, fps=config.fps, image_size=config.image_size,
                          episodes_per_video_file=config.episodes_per_video_file, progress=progress)
            datasets[emb] = {"path": f"datasets/{emb}", "episodes": len(episodes),
                             "frames": int(sum(e.length for e in episodes)),
                             "video_key": SPECS[emb].video_key, "state_dim": SPECS[emb].state_dim,
                             "action_dim": SPECS[emb].action_dim}
        # the human-only setting, seen by no robot in training: target-robot episodes to measure transfer on
        heldout = make_episodes(config, "robot", progress=progress, region=config.heldout_region,
                                episodes_per_task=config.heldout_episodes_per_task, stream=HELDOUT_STREAM)
        write_dataset(tmp / "evaluation" / "robot", heldout, fps=config.fps, image_size=config.image_size,
                      episodes_per_video_file=config.episodes_per_video_file, progress=progress)
        evaluation = {"robot": {"path": "evaluation/robot", "episodes": len(heldout), "region": config.heldout_region,
                                "frames": int(sum(e.length for e in heldout))}}
        write_json(tmp / "world.json", {"format": WORLD_FORMAT, "version": 2, "config": asdict(config),
                                        "config_hash": config.hash, "datasets": datasets,
                                        "evaluation": evaluation})
    log.info("wrote world %s (%s)", out, config.hash)
    return out
