"""Train the world's policy on its LeRobot datasets: co-trained (human + robot) and robot-only recipes.

Each recipe writes ``WORLD/checkpoints/<recipe>/step-NNNNNN/`` at every checkpoint
step (step 0 included), each written atomically together with the optimiser state
(``training_state.safetensors``) so that an interrupted run resumes from its last
checkpoint and reaches the same weights. ``training.json`` marks a finished recipe
with the hashes of the world and training configs: a second run with the same
config returns at once.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from probe.atomic import write_json
from probe.errors import CheckpointError, DataError, OutputExistsError
from probe.progress import bar
from probe.world.config import Recipe, TrainConfig
from probe.world.embodiments import SPECS, ee_from_state
from probe.world.generate import read_world_config
from probe.world.tasks import STAGES, resolve_tasks

log = logging.getLogger(__name__)

TRAINING_STATE = "training_state.safetensors"
TRAJECTORY_SCALE = 0.05  # the trajectory head predicts future effector offsets divided by this (table units)


@dataclass(frozen=True, eq=False)
class EmbodimentData:
    """All frames of one embodiment's dataset as arrays (images decoded from the mp4 files)."""

    embodiment: str
    images: np.ndarray  # uint8 (N, H, W, 3)
    state: np.ndarray  # float32 (N, P)
    action: np.ndarray  # float32 (N, A)
    task: np.ndarray  # int64 (N,) index into the world's task list
    stage: np.ndarray  # int64 (N,) index into STAGES
    episode: np.ndarray  # int64 (N,)
    frame: np.ndarray  # int64 (N,)
    ee_future: np.ndarray  # float32 (N, horizon, 3) future effector offsets in the table frame

    def __len__(self) -> int:
        return len(self.state)

    def select(self, rows: np.ndarray) -> EmbodimentData:
        """The same data restricted to ``rows`` (indices or a boolean mask)."""
        arrays = ("images", "state", "action", "task", "stage", "episode", "frame", "ee_future")
        return EmbodimentData(self.embodiment, *(getattr(self, a)[rows] for a in arrays))


def _decode(path: Path) -> np.ndarray:
    from probe.readers.video import decode_all  # the pixels extraction sees

    return decode_all(path)


def load_embodiment(dataset_dir: str | Path, embodiment: str, tasks: list[str], horizon: int) -> EmbodimentData:
    """Read a world dataset (LeRobot v3.0, as written by :mod:`probe.world.lerobot_v3`) into arrays."""
    import pandas as pd

    root = Path(dataset_dir)
    try:
        info = json.loads((root / "meta/info.json").read_text())
        data = pd.read_parquet(root / info["data_path"].format(chunk_index=0, file_index=0))
        eps = pd.read_parquet(root / "meta/episodes/chunk-000/file-000.parquet")
        task_table = pd.read_parquet(root / "meta/tasks.parquet")
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"'{root}' is not a complete world dataset ({exc}); regenerate it with "
                        "'probe world generate --overwrite'") from exc
    key = SPECS[embodiment].video_key
    instructions = {t.instruction: t.name for t in resolve_tasks(tasks)}
    local_to_global = {int(i): tasks.index(instructions[t]) for t, i in task_table["task_index"].items()}
    fps = float(info["fps"])
    images = np.zeros((len(data), *info["features"][key]["shape"]), np.uint8)
    for file_index, group in eps.groupby(f"videos/{key}/file_index"):
        frames = _decode(root / info["video_path"].format(video_key=key, chunk_index=0, file_index=int(file_index)))
        for _, ep in group.iterrows():
            first = int(round(ep[f"videos/{key}/from_timestamp"] * fps))
            images[ep["dataset_from_index"]:ep["dataset_to_index"]] = frames[first:first + int(ep["length"])]
    state = np.stack(data["observation.state"].to_numpy()).astype(np.float32)
    ee = ee_from_state(embodiment, state)
    episode = data["episode_index"].to_numpy(np.int64)
    frame = data["frame_index"].to_numpy(np.int64)
    future = future_offsets(ee, episode, horizon)
    stage_index = {s: i for i, s in enumerate(STAGES)}
    return EmbodimentData(
        embodiment=embodiment, images=images, state=state,
        action=np.stack(data["action"].to_numpy()).astype(np.float32),
        task=data["task_index"].map(local_to_global).to_numpy(np.int64),
        stage=data["stage"].map(stage_index).to_numpy(np.int64), episode=episode, frame=frame,
        ee_future=future.astype(np.float32))


def future_offsets(ee: np.ndarray, episode: np.ndarray, horizon: int) -> np.ndarray:
    """``(N, horizon, 3)`` effector offsets 1..horizon frames ahead, held at each episode's last frame."""
    rows = np.arange(len(ee))
    last = np.r_[np.flatnonzero(np.diff(episode)), len(ee) - 1]
    ends = last[np.searchsorted(last, rows)]
    return np.stack([ee[np.minimum(rows + k, ends)] - ee for k in range(1, horizon + 1)], axis=1).astype(np.float32)


def episodes_to_data(episodes: list, tasks: list[str], horizon: int) -> EmbodimentData:
    """Rendered episodes of one embodiment as training arrays, without writing them to disk (the
    sweep's pre-training mixture)."""
    embodiment = episodes[0].embodiment
    stage_index = {s: i for i, s in enumerate(STAGES)}
    lengths = [e.length for e in episodes]
    episode = np.repeat(np.arange(len(episodes)), lengths).astype(np.int64)
    state = np.concatenate([e.state for e in episodes]).astype(np.float32)
    return EmbodimentData(
        embodiment=embodiment, images=np.concatenate([e.frames for e in episodes]), state=state,
        action=np.concatenate([e.action for e in episodes]).astype(np.float32),
        task=np.repeat([tasks.index(e.task.name) for e in episodes], lengths).astype(np.int64),
        stage=np.concatenate([[stage_index[s] for s in e.stage_names] for e in episodes]).astype(np.int64),
        episode=episode, frame=np.concatenate([np.arange(n) for n in lengths]).astype(np.int64),
        ee_future=future_offsets(ee_from_state(embodiment, state), episode, horizon))


def _world(world_dir: Path) -> dict:
    world = read_world_config(world_dir)
    if world is None:
        raise DataError(f"'{world_dir}' is not a generated world (no world.json); create one with "
                        f"'probe world generate --out {world_dir}'")
    return world


def recipe_dir(world_dir: str | Path, recipe: Recipe | str) -> Path:
    return Path(world_dir) / "checkpoints" / Recipe(recipe).value


def step_dir(world_dir: str | Path, recipe: Recipe | str, step: int) -> Path:
    return recipe_dir(world_dir, recipe) / f"step-{int(step):06d}"


def _finished(rdir: Path, key: dict) -> bool:
    marker = rdir / "training.json"
    if not marker.is_file():
        return False
    done = json.loads(marker.read_text())
    return all(done.get(k) == v for k, v in key.items()) and all(
        (rdir / name / "model.safetensors").is_file() for name in done.get("checkpoints", []))


def _existing_steps(rdir: Path, key: dict) -> tuple[list[int], list[int]]:
    """Checkpoint steps already in ``rdir`` that belong to this config, and those that do not."""
    ours, stale = [], []
    for d in sorted(rdir.glob("step-*")):
        try:
            cfg = json.loads((d / "config.json").read_text())
            step = int(cfg["step"])
        except (OSError, ValueError, KeyError):
            stale.append(-1)
            continue
        (ours if all(cfg.get("training", {}).get(k) == v for k, v in key.items()) else stale).append(step)
    return ours, stale


def _batch(data: EmbodimentData, rows: np.ndarray, rng: np.random.Generator, augment: bool):
    import torch

    img = torch.from_numpy(data.images[rows]).permute(0, 3, 1, 2).float() / 255.0
    if augment:  # small random shifts, as robot-learning pipelines do (pad and crop)
        pad = 3
        padded = torch.nn.functional.pad(img, (pad, pad, pad, pad), mode="replicate")
        dx, dy = rng.integers(0, 2 * pad + 1, size=2)
        img = padded[:, :, dy:dy + img.shape[2], dx:dx + img.shape[3]]
    return (img, torch.from_numpy(data.state[rows]), torch.from_numpy(data.task[rows]),
            torch.from_numpy(data.action[rows]), torch.from_numpy(data.ee_future[rows]),
            torch.from_numpy(data.stage[rows]))


def _optimizer_state(opt, policy) -> dict:
    import torch

    names = {id(p): n for n, p in policy.named_parameters()}
    out = {}
    for group in opt.param_groups:
        for p in group["params"]:
            st = opt.state.get(p, {})
            for k in ("exp_avg", "exp_avg_sq"):
                if k in st:
                    out[f"{names[id(p)]}::{k}"] = st[k].detach().clone()
            if "step" in st:
                out[f"{names[id(p)]}::step"] = torch.as_tensor(st["step"], dtype=torch.float32).reshape(1).clone()
    return out


def _restore_optimizer(opt, policy, tensors: dict) -> None:
    import torch

    for name, p in policy.named_parameters():
        if f"{name}::exp_avg" in tensors:
            opt.state[p] = {"step": torch.tensor(float(tensors[f"{name}::step"][0])),
                            "exp_avg": tensors[f"{name}::exp_avg"].clone(),
                            "exp_avg_sq": tensors[f"{name}::exp_avg_sq"].clone()}


def step_loss(policy, data: EmbodimentData, rows: np.ndarray, rng: np.random.Generator):
    """The training loss of one batch of one embodiment: its own actions, the shared effector
    trajectory (table frame) and the shared stage; nothing compares embodiments."""
    import torch

    emb = data.embodiment
    img, state, task, action, ee_future, stage = _batch(data, rows, rng, augment=True)
    out = policy(img, state, emb, task)
    a_std = getattr(policy, f"action_std_{emb}")
    a_mean = getattr(policy, f"action_mean_{emb}")
    loss_action = torch.nn.functional.mse_loss(out["action_normalized"], (action - a_mean) / a_std)
    loss_ee = torch.nn.functional.mse_loss(out["ee_trajectory"], ee_future / TRAJECTORY_SCALE)
    loss_stage = torch.nn.functional.cross_entropy(out["stage_logits"], stage)
    return loss_action + loss_ee + loss_stage


def fit(policy, opt, data: dict[str, EmbodimentData], steps: range, config: TrainConfig, *, desc: str,
        progress: bool = False, on_step=None, checkpoint=None, done: int = 0) -> list[float]:
    """Optimise ``policy`` for ``steps``; one batch is one embodiment, embodiments take turns.

    ``checkpoint(step)`` runs at ``config.checkpoint_steps``; ``on_step(step)`` after every step.
    Returns the losses.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, config.threads))
    embs = list(data)
    losses: list[float] = []
    policy.train()
    pbar = bar(done + len(steps), desc=desc, enabled=progress, unit="step")
    pbar.update(done)
    try:
        for step in steps:
            emb = embs[step % len(embs)]
            rng = np.random.default_rng([config.seed, step, len(embs)])
            rows = rng.integers(0, len(data[emb]), size=config.batch_size)
            loss = step_loss(policy, data[emb], rows, rng)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            pbar.update(1)
            if checkpoint is not None and step in config.checkpoint_steps:
                checkpoint(step)
            if on_step is not None:
                on_step(step)
    finally:
        pbar.close()
        torch.set_num_threads(threads)
    policy.eval()
    return losses


def train_recipe(world_dir: str | Path, recipe: Recipe | str, config: TrainConfig, *,
                 data: dict[str, EmbodimentData] | None = None, overwrite: bool = False,
                 progress: bool = False, on_step=None) -> list[Path]:
    """Train one recipe and write its checkpoints; returns their directories (step order).

    ``on_step(step)`` is called after every optimisation step (tests use it to interrupt).
    """
    import torch
    from safetensors.torch import load_file

    from probe.world.policy import load_policy, make_policy, save_policy

    world_dir, recipe = Path(world_dir), Recipe(recipe)
    world = _world(world_dir)
    key = {"world_hash": world["config_hash"], "train_hash": config.hash, "recipe": recipe.value}
    rdir = recipe_dir(world_dir, recipe)
    names = [f"step-{s:06d}" for s in config.checkpoint_steps]
    if _finished(rdir, key):
        log.info("recipe %s already trained with this config; reusing %s", recipe.value, rdir)
        return [rdir / n for n in names]
    if rdir.exists():
        ours, stale = _existing_steps(rdir, key)
        if stale or (rdir / "training.json").exists():
            if not overwrite:
                raise OutputExistsError(
                    f"'{rdir}' holds checkpoints of another world or training config; pass --overwrite "
                    "(overwrite=True in Python) to replace them, or train into another world directory")
            shutil.rmtree(rdir)
        else:
            for tmp in rdir.glob(".step-*"):  # leftovers of a killed process
                shutil.rmtree(tmp, ignore_errors=True)
    rdir.mkdir(parents=True, exist_ok=True)

    tasks = list(world["config"]["tasks"])
    if data is None:
        data = {e: load_embodiment(world_dir / world["datasets"][e]["path"], e, tasks, config.horizon)
                for e in recipe.embodiments}
    embodiments = {e: {"state_dim": SPECS[e].state_dim, "action_dim": SPECS[e].action_dim,
                       "video_key": SPECS[e].video_key} for e in ("human", "robot")}
    model_cfg = dict(config.model) | {"horizon": config.horizon}
    torch.manual_seed(config.seed)
    policy = make_policy(embodiments, tasks, list(STAGES), world["config"]["image_size"], model_cfg)
    for e, d in data.items():
        policy.set_normalization(e, "state", d.state.mean(0), d.state.std(0))
        policy.set_normalization(e, "action", d.action.mean(0), d.action.std(0))
    opt = torch.optim.AdamW(policy.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    start = 0
    ours, _ = _existing_steps(rdir, key)
    resumable = [s for s in ours if (step_dir(world_dir, recipe, s) / TRAINING_STATE).is_file()]
    if resumable:
        start = max(resumable)
        src = step_dir(world_dir, recipe, start)
        policy = load_policy(src).train()
        opt = torch.optim.AdamW(policy.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        _restore_optimizer(opt, policy, load_file(str(src / TRAINING_STATE)))
        log.info("resuming recipe %s from step %d", recipe.value, start)

    extra = {"training": key | {"config": asdict(config) | {"recipes": [r.value for r in config.recipes]},
                                "embodiments_trained": list(recipe.embodiments), "world": str(world_dir)}}

    def checkpoint(step: int) -> None:
        save_policy(policy, step_dir(world_dir, recipe, step), step, recipe.value, seed=config.seed,
                    overwrite=True, extra=extra, extra_files={TRAINING_STATE: _optimizer_state(opt, policy)})

    if start == 0 and 0 in config.checkpoint_steps:
        checkpoint(0)
    losses = fit(policy, opt, data, range(start + 1, config.steps + 1), config, desc=f"training {recipe.value}",
                 progress=progress, on_step=on_step, checkpoint=checkpoint, done=start)
    write_json(rdir / "training.json", key | {"checkpoints": names, "steps": config.steps,
                                               "final_loss": float(np.mean(losses[-20:])) if losses else None})
    return [rdir / n for n in names]


def train_world(world_dir: str | Path, size: str = "default", *, config: TrainConfig | None = None,
                recipes: list[str] | None = None, seed: int = 0, overwrite: bool = False,
                progress: bool = False) -> dict[str, list[Path]]:
    """Train every recipe on a generated world; returns ``{recipe: [checkpoint dirs]}``.

    Parameters
    ----------
    world_dir : a directory made by :func:`probe.world.generate.generate_world`.
    size : training preset (``tiny``, ``small``, ``default``) when ``config`` is not given.
    recipes : subset of ``["cotrained", "robot-only"]`` (default: both).
    overwrite : replace checkpoints made with another config (the same config is reused or resumed).
    """
    world_dir = Path(world_dir)
    world = _world(world_dir)
    if config is None:
        overrides = {"seed": seed} | ({"recipes": tuple(recipes)} if recipes else {})
        config = TrainConfig.preset(size, **overrides)
    tasks = list(world["config"]["tasks"])
    cache: dict[str, EmbodimentData] = {}
    out = {}
    for recipe in config.recipes:
        key = {"world_hash": world["config_hash"], "train_hash": config.hash, "recipe": recipe.value}
        if not _finished(recipe_dir(world_dir, recipe), key):
            for e in recipe.embodiments:
                if e not in cache:
                    cache[e] = load_embodiment(world_dir / world["datasets"][e]["path"], e, tasks, config.horizon)
        out[recipe.value] = train_recipe(world_dir, recipe, config, overwrite=overwrite, progress=progress,
                                         data={e: cache[e] for e in recipe.embodiments if e in cache} or None)
    return out


def checkpoint_steps(world_dir: str | Path, recipe: str) -> list[int]:
    """Steps of the finished checkpoints of ``recipe`` in a world."""
    rdir = recipe_dir(world_dir, recipe)
    if not rdir.is_dir():
        raise CheckpointError(f"no checkpoints for recipe {recipe!r} in '{world_dir}'; run 'probe world train'")
    return sorted(int(d.name.split("-")[1]) for d in rdir.glob("step-*") if (d / "model.safetensors").is_file())
