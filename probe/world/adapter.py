"""The built-in world as a plugin: its checkpoint loader and its adapter, registered by spec string.

The core names them only as strings (``probe.model.checkpoints.DIRECTORY_KINDS`` and
``probe.model.adapters.ADAPTERS``), exactly as a user registers their own model.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from probe import columns as C
from probe.errors import CheckpointError, ConfigError, DataError
from probe.model.adapters import Adapter, ModelInputs, batch_images, images_to_tensor, size_pair, writable
from probe.model.checkpoints import LoadedModel, file_sha256
from probe.model.state_dicts import config_step
from probe.readers.base import Batch
from probe.world.policy import load_policy
from probe.world.tasks import TASKS

WORLD_KIND = "world"
# config.json keys a report reads from a store's provenance: the series, the training seed, and what the
# diversity sweep recorded
LABELS = ("recipe", "seed", "diversity", "behaviour", "transfer_gain")


def load_world_policy(path: Path, config: Mapping[str, Any], device: str) -> LoadedModel:
    """A world policy directory (``config.json`` + ``model.safetensors``) as an eval-mode model on ``device``."""
    weights = path / "model.safetensors"
    try:
        policy = load_policy(path)
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(f"world policy '{path}' cannot be loaded ({type(exc).__name__}: {exc}); "
                              "the checkpoint is corrupt or from another version: re-create it") from exc
    policy.eval().to(device)
    cfg = dict(getattr(policy, "config", None) or config)
    return LoadedModel(policy, WORLD_KIND, str(path), file_sha256(weights), config_step(cfg), cfg,
                       default_adapter="world", labels={k: cfg[k] for k in LABELS if cfg.get(k) is not None})

def world_embodiments(config: Mapping[str, Any]) -> dict[str, int]:
    raw = config.get("embodiments") or config.get("state_dims") or {}
    if isinstance(raw, Mapping):
        out = {}
        for name, value in raw.items():
            out[str(name)] = int(value["state_dim"] if isinstance(value, Mapping) else value)
        return out
    if isinstance(raw, Sequence):  # [{"name": ..., "state_dim": ...}]
        return {str(e["name"]): int(e["state_dim"]) for e in raw if isinstance(e, Mapping)}
    return {}


class WorldAdapter(Adapter):
    """The built-in world policy: ``policy(image, state, embodiment, task)``.

    Images are scaled to [0, 1] at the policy's image size, the state must have the
    embodiment's size, and task names map to the policy's task ids.
    """

    name = "world"
    needs_state = True
    needs_task = True

    def __init__(self, model: Any, *, video_key: str | None = None) -> None:
        config = getattr(model, "config", None)
        if not isinstance(config, Mapping):
            raise ConfigError("the world adapter needs a built-in world policy (a model with a .config dict); "
                              "for other models use --adapter image, state or your own")
        self.config = config
        self.image_size = size_pair(config.get("image_size", 64))
        self.state_dims = world_embodiments(config)
        self.tasks = [str(t) for t in config.get("tasks", config.get("task_names", []))]
        self.video_key = video_key

    def _embodiment(self, embodiment: str) -> str:
        if self.state_dims and embodiment not in self.state_dims:
            raise DataError(f"embodiment '{embodiment}' is not one the policy knows ({sorted(self.state_dims)}); "
                            "name the dataset with a matching embodiment, e.g. --data human=PATH")
        return embodiment

    def _task_ids(self, tasks: Sequence[str], device: torch.device) -> torch.Tensor:
        index = {t: i for i, t in enumerate(self.tasks)}
        # datasets carry instructions, the policy short names
        index |= {t.instruction: index[t.name] for t in TASKS if t.name in index}
        unknown = sorted({t for t in tasks if t not in index})
        if unknown:
            raise DataError(f"task(s) {unknown} are not among the policy's tasks {self.tasks}; "
                            "extract a dataset of the world the policy was trained on (a --task relabel must name "
                            "one of its tasks or their instructions)")
        return torch.tensor([index[t] for t in tasks], dtype=torch.long, device=device)

    def prepare(self, batch: Batch, meta: pd.DataFrame, embodiment: str, device: torch.device) -> ModelInputs:
        embodiment = self._embodiment(embodiment)
        image = images_to_tensor(batch_images(batch, self.video_key), device, self.image_size)
        if batch.state is None:
            raise DataError(f"the {embodiment} dataset has no observation.state; the world policy needs it")
        state = torch.from_numpy(writable(batch.state, np.float32)).to(device)
        want = self.state_dims.get(embodiment)
        if want is not None and state.shape[1] != want:
            raise DataError(f"{embodiment} state has {state.shape[1]} values, the policy expects {want}; "
                            "is the dataset of the right embodiment?")
        task = self._task_ids(meta[C.TASK].astype(str).tolist(), device)
        return ModelInputs((image, state, embodiment, task))

    def example(self, embodiment: str, device: torch.device, input_shape: Sequence[int] | None = None) -> ModelInputs:
        embodiment = embodiment if embodiment in self.state_dims else next(iter(self.state_dims), embodiment)
        h, w = self.image_size or (64, 64)
        image = torch.zeros((2, 3, h, w), device=device)
        state = torch.zeros((2, self.state_dims.get(embodiment, 1)), device=device)
        return ModelInputs((image, state, embodiment, torch.zeros(2, dtype=torch.long, device=device)))

    def suggested_layers(self, names: Sequence[str]) -> list[str]:
        """What ``probe layers`` suggests: the image encoder, the prefix's first block, the action expert's first
        block (state has entered) and, last, the prefix's last block, the layer a VLA analysis looks at (the shared
        prefix's output before any state); last, so that commands falling back to a store's last layer use it."""
        blocks = [n for n in names if n.startswith("trunk.block") and n[len("trunk.block"):].isdigit()]
        blocks.sort(key=lambda n: int(n[len("trunk.block"):]))
        return [n for n in ("vision", *blocks[:-1][:1], "expert.block0") if n in names] + blocks[-1:]

    def options(self) -> dict[str, Any]:
        return {"image_size": self.image_size, "video_key": self.video_key}

    def input_key(self) -> Hashable | None:
        # the world policy computes out of place; its inputs depend on these alone
        return ("world", self.image_size, self.video_key, tuple(self.tasks), tuple(sorted(self.state_dims.items())))
