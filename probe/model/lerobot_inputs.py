"""Inputs of LeRobot policies from our readers' frames, and each policy type's embedding path.

:class:`LeRobotAdapter` (registered as ``--adapter lerobot``, the default for LeRobot checkpoints) builds
the observation LeRobot's own dataset would give the policy, from the frames our readers decode (LeRobot
v2.1 and v3 datasets, read in place): every camera of the policy's ``input_features`` as float images in
[0, 1] at the policy's size, ``observation.state``, and the dataset's task string. It then runs the
checkpoint's own preprocessor pipeline (renaming, batching, device, normalisation, tokenising).

The forward uses each policy's observation-encoding path, never ``select_action`` (which keeps queues
between calls): ACT one pass of ``predict_action_chunk`` (its VAE encoder is unused at inference);
Diffusion its global conditioning (``output.global_cond``), without denoising; SmolVLA / pi0 one
denoising step from fixed noise (see :data:`probe.model.lerobot_policies.DENOISING_RULE`).

Observation history (``n_obs_steps > 1``): the previous frames of the episode at the dataset's frame rate, as
LeRobot's dataset gives them (:mod:`probe.model.lerobot_history`), when the extraction hands the adapter its
datasets (``use_datasets``); otherwise (e.g. ``probe layers --data``) the current frame stands for every step,
as LeRobot's ``select_action`` fills its queues on an episode's first step. The rule is written to the store's
provenance (``adapter.options.history``).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from probe import columns as C
from probe.errors import ConfigError, DataError
from probe.model.adapters import Adapter, ModelInputs, images_to_tensor, writable
from probe.model.lerobot_history import HISTORY_RULE, REPEAT_RULE, history_batch
from probe.model.lerobot_policies import DENOISING_RULE, FLOW_TYPES
from probe.readers.base import Batch

STATE = "observation.state"

#: Suggested layers per policy type: ``(what, pattern)``; a pattern is matched against module names at run
#: time (names shift between LeRobot versions), ``{mid}`` standing for the middle one of numbered layers.
SUGGESTED_LAYERS: dict[str, tuple[tuple[str, str], ...]] = {
    "act": (("image backbone", r"model\.backbone\.layer4"), ("transformer encoder", r"model\.encoder"),
            ("transformer decoder", r"model\.decoder")),
    "diffusion": (("global conditioning", r"output\.global_cond"),
                  ("RGB encoder", r"diffusion\.rgb_encoder(\.0)?")),
    "smolvla": (("vision tower", r".*\.vision_model"), ("connector", r".*\.connector"),
                ("mid language layer", r".*text_model\.layers\.{mid}\.mlp")),
    "pi0": (("vision tower", r".*\.vision_tower"), ("connector", r".*\.multi_modal_projector"),
            ("mid language layer", r".*language_model(\.model)?\.layers\.{mid}\.mlp")),
}
SUGGESTED_LAYERS["pi05"] = SUGGESTED_LAYERS["pi0_fast"] = SUGGESTED_LAYERS["pi0"]


def suggested_layers(policy_type: str, names: Sequence[str]) -> list[str]:
    """The suggested layers of ``policy_type`` that exist among ``names`` (module names and ``output.KEY``)."""
    out = []
    for _what, pattern in SUGGESTED_LAYERS.get(policy_type, ()):
        if "{mid}" in pattern:
            numbered = re.compile(pattern.replace("{mid}", r"(?P<n>\d+)") + "$")
            found = sorted({int(m.group("n")) for n in names if (m := numbered.match(n))})
            if not found:
                continue
            pattern = pattern.replace("{mid}", str(found[len(found) // 2]))
        match = next((n for n in names if re.fullmatch(pattern, n)), None)
        if match is not None:
            out.append(match)
    return out


def steps_as_tokens(x: torch.Tensor, k: int) -> torch.Tensor:
    """``(B*k, D)`` -> ``(B, k, D)``; ``(B*k, T, D)`` or feature maps ``(B*k, C, H, W)`` -> ``(B, k*T, D)``."""
    if k <= 1 or x.ndim < 2:
        return x
    tokens = x[:, None] if x.ndim == 2 else (x if x.ndim == 3 else x.flatten(2).transpose(1, 2))
    return tokens.reshape(x.shape[0] // k, k * tokens.shape[1], tokens.shape[2])


def parse_rename(rename: Mapping[str, str] | Sequence[str] | None) -> dict[str, str]:
    """``{dataset_key: policy_key}`` from a mapping or ``["dataset_key=policy_key", ...]``."""
    if not rename:
        return {}
    if isinstance(rename, Mapping):
        return {str(k): str(v) for k, v in rename.items()}
    out = {}
    for item in rename:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError(f"--rename: expected DATASET_KEY=POLICY_KEY, got {item!r}; e.g. "
                              "--rename observation.images.egocentric=observation.images.front")
        out[key.strip()] = value.strip()
    return out


class LeRobotAdapter(Adapter):
    """A LeRobot policy loaded by :func:`probe.model.lerobot_policies.load_lerobot_policy`.

    Parameters
    ----------
    rename : ``{dataset_key: policy_key}`` (or ``["a=b", ...]``) for cameras or state named differently in
        the dataset (``--rename``).
    fill_state : feed zeros where the dataset has no state of the policy's size (e.g. human videos).
    noise_seed : seed of the fixed noise of flow / diffusion VLAs.
    """

    name = "lerobot"

    def __init__(self, model: Any, *, rename: Mapping[str, str] | Sequence[str] | None = None,
                 fill_state: bool = False, noise_seed: int = 0) -> None:
        runtime = getattr(model, "probe_runtime", None)
        if runtime is None:
            raise ConfigError("the lerobot adapter needs a LeRobot policy checkpoint (a directory whose config.json "
                              "has a LeRobot policy \"type\"); for other models use --adapter image, state or your own")
        self.policy_type = runtime.policy_type
        self.preprocessor = runtime.preprocessor
        self.runtime = runtime
        cfg = model.config
        self.n_obs_steps = int(getattr(cfg, "n_obs_steps", 1) or 1)
        self.rename = parse_rename(rename)
        self.fill_state, self.noise_seed = bool(fill_state), int(noise_seed)
        self.cameras: dict[str, tuple[int, ...]] = {}
        self.state_dim: int | None = None
        self.other: list[str] = []
        renamed = {v: k for k, v in self.preprocessor_renames().items()}  # policy feature -> preprocessor input
        for key, feature in dict(cfg.input_features).items():
            kind, shape = str(getattr(feature.type, "name", feature.type)), tuple(int(s) for s in feature.shape)
            key = renamed.get(key, key)
            if kind == "VISUAL":
                self.cameras[key] = shape
            elif key == STATE:
                self.state_dim = shape[0]
            else:
                self.other.append(key)
        sizes = {s[-2:] for s in self.cameras.values()}
        self.image_size = next(iter(sizes)) if len(sizes) == 1 else None
        self.needs_images = bool(self.cameras)
        self.needs_state = self.state_dim is not None
        self.needs_task = self.policy_type in FLOW_TYPES
        self.chunk = (int(getattr(cfg, "chunk_size", 1) or 1), int(getattr(cfg, "max_action_dim", 0) or 0))
        # batches run through the model from several threads; the preprocessor is not made for that (a fast
        # tokenizer raises "Already borrowed" when two threads set its padding at once), and it is cheap
        self.lock = threading.Lock()
        self.datasets: dict[str, Any] = {}

    def use_datasets(self, datasets: Mapping[str, Any]) -> None:
        """The extraction's opened datasets by name (the samples' ``dataset`` column): history is read from them."""
        self.datasets = dict(datasets)

    def preprocess(self, obs: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            return self.preprocessor(obs)

    def preprocessor_renames(self) -> dict[str, str]:
        for step in getattr(self.preprocessor, "steps", []):
            if isinstance(getattr(step, "rename_map", None), Mapping):
                return dict(step.rename_map)
        return {}

    # -- inputs ---------------------------------------------------------------------------------------

    def check_features(self, cameras: Sequence[str], has_state: bool, state_dim: int | None, embodiment: str) -> None:
        """Raise :class:`DataError` naming exactly what the dataset lacks of the policy's inputs."""
        have = [self.rename.get(k, k) for k in cameras]
        missing = [k for k in self.cameras if k not in have]
        problems = []
        if missing:
            unused = [k for k in cameras if self.rename.get(k, k) not in self.cameras]
            example = f" (e.g. --rename {unused[0]}={missing[0]})" if unused else ""
            problems.append(f"camera(s) {missing} (the dataset has {list(cameras) or 'no video'}; name the camera that "
                            f"stands for each with --rename DATASET_KEY=POLICY_KEY{example})")
        if self.state_dim is not None and not self.fill_state and (not has_state or state_dim != self.state_dim):
            got = f"{state_dim} values" if has_state else "none"
            problems.append(f"{STATE} of {self.state_dim} values (the dataset's has {got}; pass --adapter-kwargs "
                            "'{\"fill_state\": true}' to feed zeros, e.g. for human videos)")
        if self.other:
            problems.append(f"{self.other} (our readers give cameras, {STATE} and the task only)")
        if problems:
            raise DataError(f"the {embodiment} dataset lacks inputs of the LeRobot '{self.policy_type}' policy: "
                            + "; ".join(problems))

    def check_dataset(self, info: Any, embodiment: str) -> None:
        """:meth:`check_features` from a dataset's :class:`~probe.readers.base.DatasetInfo`, before any frame is read."""
        shape = dict(info.features).get(STATE)
        if shape is None and not str(getattr(info.format, "value", info.format)).startswith("lerobot"):
            # e.g. HDF5: the state is made from low-dimensional keys when read; checked on the first batch
            self.check_features(list(info.video_keys), self.state_dim is not None, self.state_dim, embodiment)
            return
        self.check_features(list(info.video_keys), shape is not None, int(np.prod(shape)) if shape else None,
                            embodiment)

    def observation(self, images: Mapping[str, np.ndarray], state: np.ndarray | None, tasks: Sequence[str],
                    n: int, device: torch.device, steps: int = 1) -> dict[str, Any]:
        """The raw observation LeRobot's dataset would give, before the preprocessor. ``images`` and ``state``
        hold ``n * steps`` rows (sample-major, see :func:`~probe.model.lerobot_history.history_batch`); with one
        step and ``n_obs_steps > 1`` it is repeated."""
        obs: dict[str, Any] = {}
        by_policy_key = {self.rename.get(k, k): v for k, v in images.items()}
        for key, shape in self.cameras.items():
            obs[key] = self.steps(images_to_tensor(by_policy_key[key], device, tuple(shape[-2:])), n, steps)
        if self.state_dim is not None:
            if state is None or state.shape[1] != self.state_dim:
                x = torch.zeros((n * steps, self.state_dim), device=device)
            else:
                x = torch.from_numpy(writable(state, np.float32)).to(device)
            obs[STATE] = self.steps(x, n, steps)
        obs["task"] = [str(t) for t in tasks]
        return obs

    def steps(self, x: torch.Tensor, n: int, steps: int) -> torch.Tensor:
        if self.n_obs_steps <= 1:
            return x
        if steps > 1:
            return x.reshape(n, steps, *x.shape[1:])
        return x.unsqueeze(1).expand(n, self.n_obs_steps, *x.shape[1:]).contiguous()

    def prepare(self, batch: Batch, meta: pd.DataFrame, embodiment: str, device: torch.device) -> ModelInputs:
        state = batch.state
        self.check_features(list(batch.images), state is not None, None if state is None else int(state.shape[1]),
                            embodiment)
        images, steps = batch.images, 1
        dataset = self.datasets.get(str(meta[C.DATASET].iloc[0])) if self.n_obs_steps > 1 and len(meta) else None
        if dataset is not None:
            images, state = history_batch(batch, meta, dataset, self.n_obs_steps, self.image_size)
            steps = self.n_obs_steps
        obs = self.observation(images, state, meta[C.TASK].astype(str).tolist(), len(batch), device, steps)
        return ModelInputs(kwargs=self.preprocess(obs))

    def example(self, embodiment: str, device: torch.device, input_shape: Sequence[int] | None = None) -> ModelInputs:
        images = {k: np.zeros((2, s[-2], s[-1], 3), np.uint8) for k, s in self.cameras.items()}
        state = np.zeros((2, self.state_dim), np.float32) if self.state_dim is not None else None
        self.check_features(list(images), state is not None, self.state_dim, embodiment)
        return ModelInputs(kwargs=self.preprocess(self.observation(images, state, ["probe layers"] * 2, 2, device)))

    # -- forward --------------------------------------------------------------------------------------

    def forward(self, model: Any, inputs: ModelInputs) -> Any:
        batch = dict(inputs.kwargs)
        if self.policy_type == "diffusion":
            from lerobot.utils.constants import OBS_IMAGES

            if self.cameras:
                batch[OBS_IMAGES] = torch.stack([batch[k] for k in model.config.image_features], dim=-4)
            return {"global_cond": model.diffusion._prepare_global_conditioning(batch)}
        if self.policy_type in FLOW_TYPES:
            n = len(inputs)
            generator = torch.Generator().manual_seed(self.noise_seed)
            noise = torch.randn((1, *self.chunk), generator=generator).expand(n, *self.chunk)
            device = next(model.parameters()).device
            return model.predict_action_chunk(batch, noise=noise.to(device).contiguous())
        return model.predict_action_chunk(batch)

    def batch_first_view(self, layer: str) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """How a layer's output becomes batch-first, for layers whose output is not ``(B, ...)``: ACT's
        transformer is sequence-first (``(T, B, D)`` -> ``(B, T, D)``); Diffusion's RGB encoder sees every
        observation step (and camera) as its own image (``(B*k, ...)`` -> ``(B, k*T, D)``: k times as many tokens)."""
        if self.policy_type == "act" and re.match(r"model\.(vae_encoder|encoder|decoder)(\.|$)", layer):
            return lambda x: x.transpose(0, 1) if x.ndim >= 2 else x
        if self.policy_type == "diffusion" and re.match(r"diffusion\.rgb_encoder(\.|$)", layer):
            separate = re.match(r"diffusion\.rgb_encoder\.\d+(\.|$)", layer) is not None
            k = self.n_obs_steps * (1 if separate else max(1, len(self.cameras)))
            return lambda x: steps_as_tokens(x, k)
        return None

    # -- what the store records -----------------------------------------------------------------------

    @property
    def suggested(self) -> tuple[tuple[str, str], ...]:
        return SUGGESTED_LAYERS.get(self.policy_type, ())

    def suggested_layers(self, names: Sequence[str]) -> list[str]:
        return suggested_layers(self.policy_type, names)

    def options(self) -> dict[str, Any]:
        out: dict[str, Any] = {"policy_type": self.policy_type, "rename": self.rename, "fill_state": self.fill_state,
                               "n_obs_steps": self.n_obs_steps, "preprocessor": self.runtime.processors,
                               "lerobot": self.runtime.lerobot_version,
                               "embedding": {"act": "one pass of predict_action_chunk",
                                             "diffusion": "global conditioning, no denoising"}.get(
                                   self.policy_type, "predict_action_chunk")}
        if self.n_obs_steps > 1:
            out["history"] = HISTORY_RULE.format(n=self.n_obs_steps) if self.datasets else REPEAT_RULE
        if self.policy_type in FLOW_TYPES:
            out["denoising"] = DENOISING_RULE.format(seed=self.noise_seed)
            out["language"] = "tasks padded to the tokenizer's max_length (latents independent of the batch)"
        return out
