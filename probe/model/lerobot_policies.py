"""LeRobot policy checkpoints, opened as they are with LeRobot's own classes and processors.

A LeRobot policy directory (``pretrained_model``) holds ``config.json`` with the policy's ``"type"``
(``act``, ``diffusion``, ``smolvla``, ``pi0`` ...) and ``model.safetensors``; since LeRobot 0.4 also
``policy_preprocessor.json`` with its normalisation statistics. :mod:`probe.model.checkpoints` recognises
these directories without importing LeRobot (see ``LEROBOT_POLICY_TYPES``) and names this module's
:func:`load_lerobot_policy` as their loader, so LeRobot is imported only when such a checkpoint is opened.

Loading: ``PreTrainedConfig.from_pretrained`` on the directory, offline (``HF_HUB_OFFLINE=1`` unless set),
the device set to the one in use (a checkpoint trained on ``cuda`` loads on the CPU), pretrained
backbone downloads turned off (the checkpoint holds the weights), then the policy class's
``from_pretrained``. The preprocessor is the checkpoint's own pipeline (its device step overridden the
same way); a checkpoint older than 0.4 carries normalisation buffers in its weights instead, and the
pipeline is built from them with LeRobot's migration helpers.

Diffusion- and flow-based policies that denoise (``smolvla``, ``pi0``, ``pi05``) run one denoising step
from fixed noise during extraction (``num_steps`` set to 1), so hooks on the action expert fire once
per frame; :data:`DENOISING_RULE` is written to the store's provenance. Diffusion's embedding is its
global conditioning, computed without denoising.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from probe.errors import CheckpointError, MissingDependencyError
from probe.model.checkpoints import LoadedModel, file_sha256
from probe.model.state_dicts import first_line

log = logging.getLogger(__name__)

LEROBOT_EXTRA = "pip install 'embodiment-probe[lerobot]' (or pip install lerobot into this environment)"
#: policy types that denoise an action chunk with a VLM prefix (one step from fixed noise during extraction)
FLOW_TYPES = ("smolvla", "pi0", "pi05", "pi0_fast")
DENOISING_RULE = "one denoising step (num_steps=1) from fixed noise (seed {seed}, the same for every frame)"
PREPROCESSOR_FILE = "policy_preprocessor.json"


@dataclass(frozen=True, eq=False)
class PolicyRuntime:
    """What extraction needs besides the policy module: its type, preprocessor and where it came from.

    Attached to the loaded policy as ``policy.probe_runtime`` (the adapter reads it).
    """

    policy_type: str
    preprocessor: Any
    processors: str  # "policy_preprocessor.json" or "migrated normalisation buffers"
    lerobot_version: str
    device: str


def import_lerobot(what: str) -> Any:
    """``lerobot``, or a :class:`MissingDependencyError` naming the extra to install."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is fetched from the hub at run time
    try:
        import lerobot
        from lerobot.policies.factory import get_policy_class  # noqa: F401  (imports torch, torchvision ...)
    except ImportError as exc:
        raise MissingDependencyError(f"{what} needs LeRobot, which is not installed or does not import "
                                     f"({first_line(exc)}); install the extra: {LEROBOT_EXTRA}") from exc
    except Exception as exc:  # e.g. a torchvision that does not match torch
        raise MissingDependencyError(f"{what} needs LeRobot, which fails to import ({type(exc).__name__}: "
                                     f"{first_line(exc)}); reinstall it with a matching torch and torchvision: "
                                     f"{LEROBOT_EXTRA}") from exc
    return lerobot


def checkpoint_step(path: Path, config: Mapping[str, Any]) -> int | None:
    """The training step of ``checkpoints/NNN/pretrained_model`` (``training_step.json`` or ``NNN``)."""
    state = path.parent / "training_state" / "training_step.json"
    try:
        return int(json.loads(state.read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return int(path.parent.name) if path.name == "pretrained_model" and path.parent.name.isdigit() else None


def read_policy_config(path: Path, device: str) -> Any:
    """The policy's ``PreTrainedConfig`` with the device set to ``device`` and no backbone download."""
    from lerobot.configs.policies import PreTrainedConfig

    try:
        with contextlib.redirect_stdout(io.StringIO()):
            cfg = PreTrainedConfig.from_pretrained(str(path), local_files_only=True)
    except Exception as exc:
        import lerobot

        raise CheckpointError(
            f"LeRobot {getattr(lerobot, '__version__', '?')} cannot read the policy config '{path / 'config.json'}' "
            f"({type(exc).__name__}: {first_line(exc)}); a checkpoint written by a newer LeRobot has fields an older "
            "one does not know: upgrade LeRobot, or re-save the checkpoint") from exc
    cfg.device = device
    for name in ("pretrained_backbone_weights",):  # torchvision would download them; the checkpoint has the weights
        if getattr(cfg, name, None) is not None:
            setattr(cfg, name, None)
    if hasattr(cfg, "use_amp"):
        cfg.use_amp = False
    return cfg


def preprocessor_overrides(path: Path, device: str) -> dict[str, dict[str, Any]]:
    """The device in use; language padded to the tokenizer's ``max_length`` rather than the batch's longest task,
    so that a frame's latents do not depend on the other frames of its batch (padding is masked in attention,
    but pooling over tokens would see it)."""
    try:
        steps = json.loads((path / PREPROCESSOR_FILE).read_text(encoding="utf-8")).get("steps", [])
    except (OSError, ValueError, AttributeError):
        steps = []
    names = {str(s.get("registry_name")) for s in steps if isinstance(s, dict)}
    overrides: dict[str, dict[str, Any]] = {"device_processor": {"device": device}}
    if "tokenizer_processor" in names:
        overrides["tokenizer_processor"] = {"padding": "max_length"}
    return overrides


def build_preprocessor(path: Path, cfg: Any, device: str) -> tuple[Any, str]:
    """The checkpoint's own preprocessor pipeline (0.4+), or one made from the normalisation buffers of an
    older checkpoint (LeRobot's migration); its device step set to ``device``."""
    from lerobot.policies.factory import make_pre_post_processors

    if (path / PREPROCESSOR_FILE).is_file():
        from lerobot.processor import PolicyProcessorPipeline
        from lerobot.processor.converters import batch_to_transition, transition_to_batch

        try:  # the preprocessor alone (as LeRobot's factory loads it): the postprocessor turns actions back
            pre = PolicyProcessorPipeline.from_pretrained(
                str(path), config_filename=PREPROCESSOR_FILE, overrides=preprocessor_overrides(path, device),
                to_transition=batch_to_transition, to_output=transition_to_batch, local_files_only=True)
        except Exception as exc:
            raise CheckpointError(f"the preprocessor of '{path}' ({PREPROCESSOR_FILE}) cannot be loaded "
                                  f"({type(exc).__name__}: {first_line(exc)}); a file beside it may be missing or "
                                  "from another LeRobot version: re-save the checkpoint") from exc
        return pre, PREPROCESSOR_FILE
    from lerobot.processor.migrate_policy_normalization import extract_normalization_stats
    from safetensors.torch import load_file

    stats = extract_normalization_stats(load_file(str(path / "model.safetensors")))
    if not stats:
        log.warning("'%s' has neither %s nor normalisation buffers: inputs are not normalised", path,
                    PREPROCESSOR_FILE)
    pre, _ = make_pre_post_processors(cfg, dataset_stats=stats or None)
    for step in getattr(pre, "steps", []):
        if hasattr(step, "device") and type(step).__name__ == "DeviceProcessorStep":
            step.device = device
    return pre, "migrated normalisation buffers"


def load_lerobot_policy(path: Path, config: Mapping[str, Any], device: str) -> LoadedModel:
    """A LeRobot policy directory as an eval-mode policy on ``device`` with its preprocessor attached."""
    policy_type = str(config.get("type"))
    lerobot = import_lerobot(f"'{path}' is a LeRobot '{policy_type}' policy; opening it")
    from lerobot.policies.factory import get_policy_class

    cfg = read_policy_config(path, device)
    if policy_type in FLOW_TYPES and hasattr(cfg, "num_steps"):
        cfg.num_steps = 1  # see DENOISING_RULE
    try:
        policy_cls = get_policy_class(policy_type)
        with contextlib.redirect_stdout(io.StringIO()):  # from_pretrained prints what it loads
            policy = policy_cls.from_pretrained(str(path), config=cfg, local_files_only=True)
    except Exception as exc:
        hub = any(word in str(exc) for word in ("offline", "HF_HUB_OFFLINE", "huggingface.co", "LocalEntryNotFound"))
        fix = (f"it needs files from the Hugging Face hub that are not in the local cache (e.g. its VLM "
               f"'{getattr(cfg, 'vlm_model_name', '?')}'): download them once, or point the config at a local copy"
               if hub else "the checkpoint may be corrupt or from another LeRobot version: re-save it")
        raise CheckpointError(f"LeRobot cannot load the '{policy_type}' policy '{path}' ({type(exc).__name__}: "
                              f"{first_line(exc)}); {fix}") from exc
    policy.eval().to(device)
    pre, processors = build_preprocessor(path, cfg, device)
    runtime = PolicyRuntime(policy_type, pre, processors, str(getattr(lerobot, "__version__", "?")), device)
    object.__setattr__(policy, "probe_runtime", runtime)  # a plain attribute, not a submodule
    raw = dict(config)
    return LoadedModel(policy, f"lerobot-{policy_type}", str(path), file_sha256(path / "model.safetensors"),
                       checkpoint_step(path, raw), raw, default_adapter="lerobot")
