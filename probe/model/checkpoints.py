"""Loading models to probe: built-in world policies, a user's own model, TorchScript archives.

Safe by default: state dicts are read with ``safetensors`` or ``torch.load(weights_only=True)``;
full unpickling of arbitrary Python objects happens only when the caller trusts the
file (``trust=True``, the CLI's ``--trust-checkpoint``) and is logged as a warning.
A state dict must fit the model exactly: a mismatch is a :class:`CheckpointError`
with a readable diff, never a silent partial load.

Kinds of checkpoint
-------------------
* a registered directory kind (:data:`DIRECTORY_KINDS`): a directory whose ``config.json``
  names a registered ``"type"``, loaded by the kind's loader given as a spec string. The
  built-in world registers ``"probe-world-policy"`` this way (``probe.world.adapter``),
  so this module never imports it; :func:`register_directory_kind` adds your own.
  LeRobot policies (``"type": "act"``, ``"diffusion"``, ``"smolvla"``, ``"pi0"`` ...) are
  registered the same way (:mod:`probe.model.lerobot_policies`); a LeRobot training run's
  directory or one of its ``checkpoints/NNN`` stands for its ``pretrained_model``
  (:func:`resolve_checkpoint_dir`). A Hugging Face ``transformers`` directory (``config.json``
  with ``architectures`` / ``model_type``, no ``"type"``) is the ``"transformers"`` kind.
* ``state_dict``: ``--model package.module:factory`` (a callable returning an
  ``nn.Module``, given ``--model-kwargs``) plus a ``.safetensors`` / ``.pt`` /
  ``.pth`` / ``.bin`` file (or a directory holding one) of its weights.
* ``torchscript``: an archive written by ``torch.jit.save`` (``torch.jit.load``).
* ``pickled_module``: a whole pickled ``nn.Module``, only with ``trust=True``.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import re
import sys
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from probe.errors import CheckpointError, ConfigError
from probe.model.state_dicts import (first_line, is_tensor_dict, read_weights, torch_load, config_step,
                                     fit_state_dict)

log = logging.getLogger(__name__)

WORLD_POLICY_TYPE = "probe-world-policy"


@dataclass(frozen=True)
class DirectoryKind:
    """A kind of checkpoint directory: ``config.json`` with ``"type": config_type`` and ``weights`` beside it,
    loaded by ``loader`` (``'package.module:function'``, called as ``function(path, config, device)`` and
    returning a :class:`LoadedModel`)."""

    config_type: str
    loader: str
    weights: str | tuple[str, ...] = "model.safetensors"

    def weight_file(self, directory: Path) -> Path | None:
        """The first of ``weights`` present in ``directory`` (None: none is)."""
        names = (self.weights,) if isinstance(self.weights, str) else self.weights
        return next((directory / n for n in names if (directory / n).is_file()), None)


#: LeRobot policy types (``config.json`` ``"type"``), loaded with LeRobot's own classes.
LEROBOT_POLICY_TYPES = ("act", "diffusion", "tdmpc", "vqbet", "pi0", "pi05", "pi0_fast", "smolvla", "sac",
                        "reward_classifier", "groot", "xvla", "wall_x")
LEROBOT_LOADER = "probe.model.lerobot_policies:load_lerobot_policy"
TRANSFORMERS_KIND = "transformers"

#: Registered checkpoint directories by their ``config.json`` ``"type"``.
DIRECTORY_KINDS: dict[str, DirectoryKind] = {
    WORLD_POLICY_TYPE: DirectoryKind(WORLD_POLICY_TYPE, "probe.world.adapter:load_world_policy"),
    **{t: DirectoryKind(t, LEROBOT_LOADER) for t in LEROBOT_POLICY_TYPES},
    TRANSFORMERS_KIND: DirectoryKind(TRANSFORMERS_KIND, "probe.model.hf_transformers:load_transformers_model",
                                     ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")),
}


def register_directory_kind(kind: DirectoryKind) -> None:
    """Recognise checkpoint directories whose ``config.json`` has ``"type": kind.config_type``."""
    DIRECTORY_KINDS[kind.config_type] = kind


def directory_kind(config: Mapping[str, Any] | None) -> DirectoryKind | None:
    """The registered kind a directory's ``config.json`` names, if any (``transformers`` for a Hugging Face
    config: ``architectures`` or ``model_type`` and no registered ``"type"``)."""
    if not config:
        return None
    kind = DIRECTORY_KINDS.get(str(config.get("type")))
    if kind is None and (config.get("architectures") or config.get("model_type")):
        kind = DIRECTORY_KINDS.get(TRANSFORMERS_KIND)
    return kind


def resolve_checkpoint_dir(path: Path) -> Path:
    """A LeRobot run directory (``checkpoints/last/pretrained_model``) or one of its ``checkpoints/NNN``
    (``NNN/pretrained_model``) as the directory holding the policy; any other path as it is."""
    if not path.is_dir() or (path / "config.json").is_file():
        return path
    for inner in (path / "pretrained_model", path / "checkpoints" / "last" / "pretrained_model"):
        if (inner / "config.json").is_file():
            return inner
    return path

STATE_DICT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")
TORCHSCRIPT_SUFFIXES = (".ts", ".torchscript", ".jit")


class CheckpointKind(str, Enum):
    """How a checkpoint was loaded (registered directory kinds add their own names)."""

    STATE_DICT = "state_dict"
    TORCHSCRIPT = "torchscript"
    PICKLED_MODULE = "pickled_module"


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A model ready for extraction and where it came from.

    Attributes
    ----------
    model : the ``torch.nn.Module`` (or ``ScriptModule``), in eval mode.
    kind : how it was loaded: a :class:`CheckpointKind` value or a registered directory kind's name.
    path : the checkpoint path as given.
    sha256 : hash of the weight file (of ``model.safetensors`` for a directory).
    step : training step when known (world config, ``step`` keys of a ``.pt`` dict), else None.
    config : the directory kind's config dict (empty for other kinds).
    factory : the ``package.module:factory`` used to build the model, if any.
    default_adapter : the adapter used when none is named (see :data:`probe.model.adapters.ADAPTERS`).
    labels : what the loader knows about the checkpoint for reports, copied into the store's provenance
        (e.g. the world's ``recipe``, which names a report series, and its sweep ``diversity``).
    """

    model: Any
    kind: str
    path: str
    sha256: str
    step: int | None = None
    config: Mapping[str, Any] = field(default_factory=dict)
    factory: str | None = None
    default_adapter: str = "image"
    labels: Mapping[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """A short name for outputs (see :func:`checkpoint_name`)."""
        return checkpoint_name(self.path)

    def provenance(self) -> dict[str, Any]:
        """The ``checkpoint`` entry of a store manifest."""
        out = {"path": str(self.path), "sha256": self.sha256, "step": self.step, "kind": str(self.kind),
               "factory": self.factory, "name": self.name}
        return out | dict(self.labels)


def checkpoint_name(path: str | Path) -> str:
    """A short name for a checkpoint's outputs: the directory's name or the file's stem; a LeRobot
    ``checkpoints/NNN/pretrained_model`` is named ``NNN`` (a run directory: ``last``)."""
    p = Path(path)
    if p.is_dir() and p.name != "pretrained_model":
        resolved = resolve_checkpoint_dir(p)
        p = resolved if resolved != p and resolved.parent.name != "last" else p
    if p.name == "pretrained_model" and p.parent.name:
        return p.parent.name
    return p.name if p.is_dir() else p.stem


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes, read in 4 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def import_object(spec: str, *, what: str, option: str) -> Any:
    """Import ``package.module:attr`` (``attr`` may be dotted); errors say which option was wrong.

    The current working directory is importable, like ``python -m``.
    """
    if not isinstance(spec, str) or ":" not in spec:
        raise ConfigError(f"{option}: expected 'package.module:name' for the {what}, got {spec!r}; "
                          "e.g. 'mypkg.models:build_encoder'")
    module_name, _, attr = spec.partition(":")
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{option}: cannot import module '{module_name}' for the {what} ({exc}); "
                          "check the spelling and that the package is installed or in the working directory") from exc
    for part in attr.split("."):
        if not hasattr(obj, part):
            public = [n for n in dir(obj) if not n.startswith("_")][:10]
            raise ConfigError(f"{option}: module '{module_name}' has no attribute '{attr}' for the {what}; "
                              f"it defines: {', '.join(public)}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"{option}: '{spec}' is a {type(obj).__name__}, expected a callable {what}")
    return obj


def _is_torchscript(path: Path) -> bool:
    if path.suffix in TORCHSCRIPT_SUFFIXES:
        return True
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(re.search(r"(^|/)code/", n) for n in names) and any(n.endswith("constants.pkl") for n in names)


def _weight_file(directory: Path) -> Path:
    for name in ("model.safetensors", "pytorch_model.bin", "model.pt", "model.pth", "checkpoint.pt"):
        if (directory / name).is_file():
            return directory / name
    found = sorted(p for p in directory.iterdir() if p.suffix in STATE_DICT_SUFFIXES)
    if len(found) == 1:
        return found[0]
    raise CheckpointError(
        f"checkpoint directory '{directory}' holds {len(found)} weight files "
        f"({', '.join(p.name for p in found[:5]) or 'none'}), expected one of model.safetensors, "
        "pytorch_model.bin, model.pt; pass the weight file itself as the checkpoint"
    )


def _read_config(directory: Path) -> dict[str, Any] | None:
    file = directory / "config.json"
    if not file.is_file():
        return None
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"'{file}' is not valid JSON ({exc}); the checkpoint is corrupt: re-export it") from exc
    return config if isinstance(config, dict) else None


def load_checkpoint(checkpoint: str | Path, *, model: str | None = None,
                    model_kwargs: Mapping[str, Any] | None = None, trust: bool = False,
                    device: str = "cpu") -> LoadedModel:
    """Load a checkpoint into an eval-mode model on ``device``.

    Parameters
    ----------
    checkpoint : a world policy directory, a weight file (with ``model``), a TorchScript
        archive, or (only with ``trust``) a whole pickled module.
    model : ``package.module:factory`` building the ``nn.Module`` whose weights ``checkpoint`` holds.
    model_kwargs : keyword arguments for the factory.
    trust : allow full unpickling (``torch.load(weights_only=False)``): runs code from the file.
    device : where the model goes (``cpu``, ``cuda``, ``cuda:1`` ...).

    Raises
    ------
    CheckpointError
        Missing, corrupt, unsafe-to-load without trust, or not fitting the model.
    """
    path = resolve_checkpoint_dir(Path(checkpoint))
    if model_kwargs and not model:
        raise ConfigError("--model-kwargs given without --model; they are the factory's keyword arguments")
    weights, config = _locate(path, model)
    kind = directory_kind(config)
    if kind is not None and not model:
        loader = import_object(kind.loader, what=f"loader of '{kind.config_type}' checkpoints", option="checkpoint")
        return loader(path, config, device)
    if model is None and _is_torchscript(weights):
        return _load_torchscript(path, weights, device)
    if model is not None:
        factory = import_object(model, what="model factory", option="--model")
        state, step = read_weights(weights, trust)
        try:
            module = factory(**dict(model_kwargs or {}))
        except TypeError as exc:
            raise ConfigError(f"--model {model}: calling the factory with {dict(model_kwargs or {})} failed "
                              f"({exc}); pass its arguments as --model-kwargs '{{\"name\": value}}'") from exc
        import torch

        if not isinstance(module, torch.nn.Module):
            raise ConfigError(f"--model {model}: the factory returned a {type(module).__name__}, expected a "
                              "torch.nn.Module")
        fit_state_dict(module, state, source=str(weights))
        module.eval().to(device)
        if config:
            step = config_step(config) if config_step(config) is not None else step
        return LoadedModel(module, CheckpointKind.STATE_DICT.value, str(path), file_sha256(weights), step,
                           {}, model)
    return _load_pickled_module(path, weights, trust, device)


def _locate(path: Path, model: str | None) -> tuple[Path, dict[str, Any] | None]:
    """The weight file of a checkpoint path and its directory's ``config.json`` (None for a file)."""
    if not path.exists():
        raise CheckpointError(
            f"checkpoint '{path}' does not exist; pass a world policy directory (config.json + "
            "model.safetensors), a TorchScript archive, or a weight file together with --model package.module:factory"
        )
    if not path.is_dir():
        return path, None
    config = _read_config(path)
    kind = directory_kind(config)
    if kind is not None and not model:
        weights = kind.weight_file(path)
        if weights is None:
            raise CheckpointError(f"'{path}' is a {kind.config_type} checkpoint but lacks {kind.weights}; "
                                  "re-export the checkpoint")
        return weights, config
    if not model:
        raise CheckpointError(
            f"checkpoint directory '{path}' is not a world policy or a LeRobot policy (config.json with "
            f"\"type\" one of {WORLD_POLICY_TYPE}, {', '.join(LEROBOT_POLICY_TYPES[:4])} ... missing); for your own model pass --model "
            "package.module:factory and the weights (a directory holding model.safetensors, or the file)"
        )
    return _weight_file(path), config


def check_checkpoint(checkpoint: str | Path, *, model: str | None = None) -> None:
    """Fail early, without loading it, on a checkpoint that cannot load: missing, not a known layout, or a
    weight file whose header or archive index is unreadable (truncated, still being written, corrupt).

    Runs over every checkpoint of ``probe extract`` before the first pass, so that a broken one
    among many does not stop the run hours in. Key mismatches are found when the model loads.
    """
    weights, _ = _locate(resolve_checkpoint_dir(Path(checkpoint)), model)
    if weights.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(weights), framework="pt") as f:
                f.keys()
        except Exception as exc:  # safetensors raises its own error types for a bad header
            raise CheckpointError(f"'{weights}' is not a readable safetensors file ({type(exc).__name__}: "
                                  f"{first_line(exc)}); it may be truncated (still being written?) or corrupt: "
                                  "re-export it") from exc
    elif weights.suffix in (*STATE_DICT_SUFFIXES, *TORCHSCRIPT_SUFFIXES) and weights.suffix != ".bin":
        if not zipfile.is_zipfile(weights):
            with open(weights, "rb") as f:
                head = f.read(2)
            if head[:1] != b"\x80":  # neither a torch.save zip archive nor a legacy pickle
                raise CheckpointError(f"'{weights}' is neither a torch.save archive nor a pickle; it may be "
                                      "truncated (still being written?) or corrupt: re-save it")


def checkpoint_sha256(checkpoint: str | Path, *, model: str | None = None) -> str:
    """The ``sha256`` its :class:`LoadedModel` reports (of the weight file), without loading the checkpoint."""
    return file_sha256(_locate(resolve_checkpoint_dir(Path(checkpoint)), model)[0])




def _load_torchscript(path: Path, weights: Path, device: str) -> LoadedModel:
    import torch

    try:
        module = torch.jit.load(str(weights), map_location=device)
    except Exception as exc:
        raise CheckpointError(f"TorchScript archive '{weights}' cannot be loaded ({type(exc).__name__}: "
                              f"{first_line(exc)}); the file is corrupt or truncated: re-save it with "
                              "torch.jit.save") from exc
    module.eval()
    return LoadedModel(module, CheckpointKind.TORCHSCRIPT.value, str(path), file_sha256(weights))


def _load_pickled_module(path: Path, weights: Path, trust: bool, device: str) -> LoadedModel:
    import torch

    if not trust:
        try:
            obj = torch_load(weights, trust=False)
        except CheckpointError:
            raise
        if is_tensor_dict(obj) or isinstance(obj, Mapping):
            raise CheckpointError(
                f"checkpoint '{path}' holds a state dict (weights only); pass --model package.module:factory "
                "that builds the matching nn.Module (and --model-kwargs for its arguments)"
            )
    else:
        obj = torch_load(weights, trust=True)
    if not isinstance(obj, torch.nn.Module):
        raise CheckpointError(
            f"checkpoint '{path}' holds a {type(obj).__name__}, not a model; pass --model "
            "package.module:factory to build the model its weights belong to"
        )
    obj.eval().to(device)
    return LoadedModel(obj, CheckpointKind.PICKLED_MODULE.value, str(path), file_sha256(weights))
