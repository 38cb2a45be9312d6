"""The world's co-trained policy: a small VLA-shaped torch model, and its LeRobot-style checkpoints.

It is built the way VLAs such as pi0 are: a **vision-language prefix** that every
embodiment shares reads the image (``vision``, a small CNN) and the instruction
(``task_embedding``, the language part), fuses them (``fuse``) and refines them
(``trunk.block0`` ... ``trunk.block{n-1}``, residual MLP blocks, then ``norm``); it
predicts the current sub-task (``heads.stage``), as pi0.5's VLM predicts sub-tasks.
Embodiment-specific state enters only after the prefix, in the **action expert**:
proprioception stems (``stems.<embodiment>``, states of different sizes) join the
prefix output (``expert_in``), ``expert.block*`` refine it, and heads predict each
embodiment's own actions (``heads.action.<embodiment>``) and the effector's future
trajectory in the common table frame (``heads.ee``), the objective that human data
(just another embodiment here) shares with every robot. Nothing compares human and
robot latents: any alignment has to emerge from the shared objectives. A
representation analysis looks at the prefix (``trunk.block*``), before state enters.

Checkpoint directory (LeRobot style)::

    config.json        {"type": "probe-world-policy", "model": {...}, "embodiments": {...}, "tasks": [...],
                        "stages": [...], "image_size": [H, W], "step": n, "recipe": ..., "seed": ..., ...}
    model.safetensors  weights and normalisation buffers (safetensors only, never pickle)
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from probe.atomic import atomic_dir
from probe.errors import CheckpointError, ConfigError
from probe.model.state_dicts import fit_state_dict
from probe.validate import OutputKind

POLICY_TYPE = "probe-world-policy"
# what overwrite may replace: a directory holding nothing but a checkpoint's config and weights
CHECKPOINT_KIND = OutputKind("checkpoint directory", "config.json", files=("config.json", "*.safetensors"))
DEFAULT_MODEL = {"width": 128, "stem_dim": 64, "task_dim": 32, "channels": [24, 48, 64], "blocks": 3,
                 "expert_blocks": 1, "horizon": 4}


class Block(nn.Module):
    """A pre-norm residual MLP block; its output is the residual stream (the trunk latent)."""

    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mlp(self.norm(x))


class VisionEncoder(nn.Module):
    """A small CNN over (B, 3, H, W) images in [0, 1]: a patchify stem (4x4 patches, as in ViT-style
    VLAs) then strided convolutions, flattened so that where things are is kept."""

    def __init__(self, channels: list[int], width: int, image_size: int):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for i, c in enumerate(channels):
            layers += [nn.Conv2d(c_in, c, 4, stride=4) if i == 0 else nn.Conv2d(c_in, c, 3, stride=2, padding=1),
                       nn.GroupNorm(4, c), nn.GELU()]
            c_in = c
        self.conv = nn.Sequential(*layers)
        side = image_size // (4 * 2 ** (len(channels) - 1))
        self.proj = nn.Linear(c_in * side * side, width)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.proj(self.conv(image * 2.0 - 1.0).flatten(1))


class WorldPolicy(nn.Module):
    """``policy(image, state, embodiment, task) -> dict`` (see :meth:`forward`); ``policy.config`` is a dict."""

    def __init__(self, config: Mapping[str, Any]):
        super().__init__()
        self.config = _check_config(config)
        m = self.config["model"]
        width, stem_dim, task_dim = m["width"], m["stem_dim"], m["task_dim"]
        embodiments = self.config["embodiments"]
        self.horizon = m["horizon"]
        self.vision = VisionEncoder(list(m["channels"]), width, self.config["image_size"][0])
        self.stems = nn.ModuleDict({
            name: nn.Sequential(nn.Linear(e["state_dim"], stem_dim), nn.GELU(), nn.Linear(stem_dim, stem_dim))
            for name, e in embodiments.items()})
        self.task_embedding = nn.Embedding(len(self.config["tasks"]), task_dim)
        self.fuse = nn.Linear(width + task_dim, width)
        self.trunk = nn.Sequential(OrderedDict((f"block{i}", Block(width)) for i in range(m["blocks"])))
        self.norm = nn.LayerNorm(width)
        self.expert_in = nn.Linear(width + stem_dim, width)
        self.expert = nn.Sequential(OrderedDict((f"block{i}", Block(width)) for i in range(m["expert_blocks"])))
        self.expert_norm = nn.LayerNorm(width)
        self.heads = nn.ModuleDict({
            "action": nn.ModuleDict({name: nn.Linear(width, e["action_dim"]) for name, e in embodiments.items()}),
            "ee": nn.Linear(width, 3 * self.horizon),
            "stage": nn.Linear(width, len(self.config["stages"])),
        })
        for name, e in embodiments.items():
            for kind, dim in (("state", e["state_dim"]), ("action", e["action_dim"])):
                self.register_buffer(f"{kind}_mean_{name}", torch.zeros(dim))
                self.register_buffer(f"{kind}_std_{name}", torch.ones(dim))

    @property
    def embodiments(self) -> tuple[str, ...]:
        return tuple(self.config["embodiments"])

    def set_normalization(self, embodiment: str, kind: str, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Store the dataset statistics used to normalise states (inputs) and actions (outputs)."""
        getattr(self, f"{kind}_mean_{embodiment}").copy_(torch.as_tensor(mean, dtype=torch.float32))
        getattr(self, f"{kind}_std_{embodiment}").copy_(torch.as_tensor(std, dtype=torch.float32).clamp_min(1e-3))

    def _check_inputs(self, image: torch.Tensor, state: torch.Tensor, embodiment: str, task: torch.Tensor) -> None:
        if embodiment not in self.config["embodiments"]:
            raise ConfigError(f"unknown embodiment {embodiment!r}; this policy knows {list(self.embodiments)}")
        sd = self.config["embodiments"][embodiment]["state_dim"]
        h, w = self.config["image_size"]
        if image.ndim != 4 or tuple(image.shape[1:]) != (3, h, w):
            raise ConfigError(f"image: expected a float tensor (B, 3, {h}, {w}) in [0, 1], got shape "
                              f"{tuple(image.shape)}; resize frames to {h}x{w} and put channels first")
        if state.ndim != 2 or state.shape[1] != sd or state.shape[0] != image.shape[0]:
            raise ConfigError(f"state: expected (B={image.shape[0]}, {sd}) for embodiment {embodiment!r}, "
                              f"got {tuple(state.shape)}")
        if task.ndim != 1 or task.shape[0] != image.shape[0]:
            raise ConfigError(f"task: expected a LongTensor (B={image.shape[0]},) of task ids, got {tuple(task.shape)}")

    def forward(self, image: torch.Tensor, state: torch.Tensor, embodiment: str,
                task: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run one batch of one embodiment.

        Parameters
        ----------
        image : float32 ``(B, 3, H, W)`` in [0, 1].
        state : float32 ``(B, state_dim)`` of that embodiment (raw ``observation.state``).
        embodiment : ``"human"`` or ``"robot"`` (see ``policy.config["embodiments"]``).
        task : int64 ``(B,)`` indices into ``policy.config["tasks"]``.

        Returns
        -------
        ``action`` ``(B, action_dim)`` in the embodiment's units, ``action_normalized`` (the same,
        standardised), ``ee_trajectory`` ``(B, horizon, 3)`` future effector offsets in the table
        frame, ``stage_logits`` ``(B, n_stages)`` and ``embedding`` ``(B, width)`` (the prefix's
        output after its norm: image and instruction, before any state).
        """
        self._check_inputs(image, state, embodiment, task)
        s = (state - getattr(self, f"state_mean_{embodiment}")) / getattr(self, f"state_std_{embodiment}")
        prefix = self.norm(self.trunk(self.fuse(torch.cat([self.vision(image), self.task_embedding(task)], dim=1))))
        h = self.expert_norm(self.expert(self.expert_in(torch.cat([prefix, self.stems[embodiment](s)], dim=1))))
        a = self.heads["action"][embodiment](h)
        action = a * getattr(self, f"action_std_{embodiment}") + getattr(self, f"action_mean_{embodiment}")
        return {"action": action, "action_normalized": a,
                "ee_trajectory": self.heads["ee"](h).view(-1, self.horizon, 3),
                "stage_logits": self.heads["stage"](prefix), "embedding": prefix}


def _check_config(config: Mapping[str, Any]) -> dict:
    config = json.loads(json.dumps(dict(config)))  # a plain, JSON-safe copy
    missing = [k for k in ("embodiments", "tasks", "stages", "image_size") if k not in config]
    if missing:
        raise CheckpointError(f"policy config lacks {missing}; it needs embodiments, tasks, stages and image_size")
    config["model"] = DEFAULT_MODEL | dict(config.get("model") or {})
    config["type"] = POLICY_TYPE
    size = config["image_size"]
    config["image_size"] = [int(size), int(size)] if isinstance(size, int) else [int(s) for s in size]
    return config


def make_policy(embodiments: Mapping[str, Mapping[str, int]], tasks: list[str], stages: list[str],
                image_size: int = 64, model: Mapping[str, Any] | None = None, **extra: Any) -> WorldPolicy:
    """A freshly initialised policy (seed torch first for reproducible weights)."""
    return WorldPolicy({"embodiments": {k: dict(v) for k, v in embodiments.items()}, "tasks": list(tasks),
                        "stages": list(stages), "image_size": image_size, "model": dict(model or {}), **extra})


def save_policy(policy: WorldPolicy, directory: str | Path, step: int, recipe: str, *, seed: int | None = None,
                overwrite: bool = False, extra: Mapping[str, Any] | None = None,
                extra_files: Mapping[str, Mapping[str, torch.Tensor]] | None = None) -> Path:
    """Write ``config.json`` and ``model.safetensors`` atomically into ``directory``.

    ``extra`` adds keys to ``config.json``; ``extra_files`` adds more safetensors files
    (e.g. the optimiser state used to resume training).
    """
    from safetensors.torch import save_file

    config = dict(policy.config) | {"step": int(step), "recipe": str(recipe), "seed": seed} | dict(extra or {})
    with atomic_dir(directory, overwrite=overwrite, kind=CHECKPOINT_KIND) as tmp:
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        state = {k: v.detach().contiguous().clone() for k, v in policy.state_dict().items()}
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt", "type": POLICY_TYPE})
        for name, tensors in (extra_files or {}).items():
            save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp / name))
    return Path(directory)


def read_policy_config(directory: str | Path) -> dict:
    """The ``config.json`` of a world-policy checkpoint, checked."""
    directory = Path(directory)
    path = directory / "config.json"
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint directory '{directory}' not found; train one with 'probe world train'")
    if not path.is_file():
        raise CheckpointError(f"'{directory}' has no config.json; a world-policy checkpoint holds config.json "
                              "and model.safetensors (see 'probe world train')")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"'{path}' is not valid JSON ({exc}); the checkpoint is corrupt, train it again") from exc
    if config.get("type") != POLICY_TYPE:
        raise CheckpointError(f"'{path}' has type {config.get('type')!r}, expected {POLICY_TYPE!r}")
    return config


def load_policy(directory: str | Path) -> WorldPolicy:
    """Load a checkpoint written by :func:`save_policy` (weights from safetensors only), in eval mode."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    config = read_policy_config(directory)
    weights = Path(directory) / "model.safetensors"
    if not weights.is_file():
        raise CheckpointError(f"'{directory}' has no model.safetensors; only safetensors weights are loaded")
    policy = WorldPolicy(config)
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"cannot read '{weights}' ({exc}); the checkpoint is corrupt, train it again") from exc
    fit_state_dict(policy, state, source=str(weights),
                   fix="its config.json does not describe these weights: restore the config.json saved with them")
    return policy.eval()
