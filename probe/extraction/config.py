"""What ``probe extract`` does, as one value: checkpoints, datasets, layers, output and how passes run."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from probe.errors import ConfigError
from probe.model.hooks import Pooling, parse_pooling


class Engine(str, Enum):
    """Where batches run: in this process, or on Ray Data actors."""

    LOCAL = "local"
    RAY = "ray"


class Device(str, Enum):
    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"


class Autocast(str, Enum):
    NONE = "none"
    BF16 = "bf16"
    FP16 = "fp16"


@dataclass(frozen=True)
class DataSpec:
    """A dataset to extract from and the embodiment its samples are labelled with (None: the reader's)."""

    path: str
    embodiment: str | None = None
    dataset: Any = field(default=None, compare=False, repr=False)

    @classmethod
    def parse(cls, text: str) -> DataSpec:
        """``'human=PATH'`` or ``'PATH'``."""
        name, sep, path = str(text).partition("=")
        if sep and name and "/" not in name and not Path(text).exists():
            return cls(path, name)
        return cls(str(text), None)


def _data_spec(item: Any) -> DataSpec:
    from probe.readers.base import Dataset

    if isinstance(item, DataSpec):
        return item
    if isinstance(item, Dataset):  # an opened dataset, e.g. from a custom reader
        return DataSpec(str(item.info.path), None, item)
    return DataSpec.parse(str(item))


def _enum(kind: type[Enum], value: Any, option: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        raise ConfigError(f"{option} must be one of {[k.value for k in kind]}, got {value!r}") from None


@dataclass(frozen=True)
class ExtractConfig:
    """Everything ``probe extract`` does, as one value (the CLI parses its flags into this).

    Attributes
    ----------
    checkpoints : checkpoint paths; several give one store each under ``out``.
    data : datasets: ``'human=PATH'`` / ``'PATH'`` strings, :class:`DataSpec`, or opened
        :class:`~probe.readers.base.Dataset` objects (e.g. from your own reader).
    layers : module names to hook, ``output`` / ``output.KEY``, or names returned by ``embed``.
    out : the store directory (one checkpoint) or a directory of stores (several).
    pool : pooling of token / spatial outputs (``layer_pooling`` overrides per layer).
    stages, stride, fps, max_frames, max_episodes : which frames become samples and their stage labels.
    model, model_kwargs, trust_checkpoint : how to build a user's model (see :mod:`probe.model.checkpoints`).
    adapter, adapter_kwargs : how batches become model inputs (see :mod:`probe.model.adapters`).
    embed : ``package.module:fn`` returning ``{name: tensor}`` for representations hooks cannot reach.
    batch_size, device, autocast : how the forward runs.
    pass_memory : bytes (or ``'4GB'``, ``'512MiB'``) of model parameters and buffers one pass
        may hold. Checkpoints are loaded one by one and share a pass (each batch read and
        decoded once, every model run on it) while their summed size stays within this
        budget. None: a quarter of the available RAM (CPU) or of the free GPU memory (CUDA);
        0: one checkpoint per pass (every checkpoint reads the data again).
    frame_cache : where decoded frames are kept so that the next extraction over the same
        videos does not decode them again: ``'auto'`` (``$PROBE_CACHE_DIR/frames``), a
        directory, or ``'off'`` / None. See :mod:`probe.cache.frames`.
    frame_cache_max : its size limit (bytes or ``'10GB'``); least recently used frames go first.
    model_workers : batches run through the models at once on CPU, each on its share of the
        cores (None: ``min(cores, 4)``; see :func:`probe.extraction.passes.model_workers`). 1 runs one
        batch at a time on every core: for adapters, models or embed functions that keep
        state between calls. CUDA always runs one.
    read_workers : processes that read and decode batches (0: a thread of this process;
        None: :func:`probe.extraction.readpool.default_read_workers`, 0 below 8 CPU cores). Forked on
        Linux; elsewhere spawned, so a script must guard its entry point with
        ``if __name__ == "__main__":``.
    overwrite, resume, skip_bad_episodes : output and failure policy.
    engine, ray_actors, ray_gpus_per_actor : local or Ray Data.
    """

    checkpoints: tuple[str, ...]
    data: tuple[DataSpec, ...]
    layers: tuple[str, ...]
    out: str
    pool: str = Pooling.MEAN.value
    layer_pooling: Mapping[str, str] = field(default_factory=dict)
    stages: str = "auto"
    stride: int = 1
    fps: float | None = None
    max_frames: int | None = None
    max_episodes: int | None = None
    model: str | None = None
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    trust_checkpoint: bool = False
    adapter: str | None = None
    adapter_kwargs: Mapping[str, Any] = field(default_factory=dict)
    embed: str | None = None
    batch_size: int = 64
    device: str = Device.AUTO.value
    autocast: str = Autocast.NONE.value
    overwrite: bool = False
    resume: bool = False
    skip_bad_episodes: bool = False
    engine: str = Engine.LOCAL.value
    ray_actors: int = 1
    ray_gpus_per_actor: float = 0.0
    pass_memory: int | str | None = None
    frame_cache: str | None = "auto"
    frame_cache_max: int | str = "10GB"
    model_workers: int | None = None
    read_workers: int | None = None

    def __post_init__(self) -> None:
        from probe.sizes import parse_bytes

        object.__setattr__(self, "pass_memory", parse_bytes(self.pass_memory))
        object.__setattr__(self, "frame_cache_max", parse_bytes(self.frame_cache_max, "--frame-cache-max"))
        cache = None if self.frame_cache is None else str(self.frame_cache).strip()
        object.__setattr__(self, "frame_cache", None if cache in (None, "", "off", "none") else cache)
        checkpoints = (self.checkpoints,) if isinstance(self.checkpoints, (str, Path)) else self.checkpoints
        object.__setattr__(self, "checkpoints", tuple(str(c) for c in checkpoints))
        data = (self.data,) if isinstance(self.data, (str, Path, DataSpec)) or hasattr(self.data, "episodes") else self.data
        object.__setattr__(self, "data", tuple(_data_spec(d) for d in data))
        layers = (self.layers,) if isinstance(self.layers, str) else self.layers
        object.__setattr__(self, "layers", tuple(dict.fromkeys(str(x) for x in layers)))
        object.__setattr__(self, "out", str(self.out))
        if not self.checkpoints:
            raise ConfigError("no checkpoint given; pass --checkpoint PATH (several for one store each)")
        if not self.data:
            raise ConfigError("no dataset given; pass --data human=PATH --data robot=PATH")
        if not self.layers and not self.embed:
            raise ConfigError("no layer given; pass --layer NAME (run 'probe layers CHECKPOINT' to list them)")
        parse_pooling(self.pool)
        from probe.readers.stages import StageSpec

        StageSpec.parse(self.stages)  # a bad spec fails before any work
        for name, p in self.layer_pooling.items():
            parse_pooling(p)
        if int(self.batch_size) < 1:
            raise ConfigError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.model_workers is not None and int(self.model_workers) < 1:
            raise ConfigError(f"model_workers must be at least 1 (or None for automatic), got {self.model_workers}")
        if self.read_workers is not None and int(self.read_workers) < 0:
            raise ConfigError(f"read_workers must be at least 0 (0: read in this process; None: automatic), "
                              f"got {self.read_workers}")
        if int(self.stride) < 1:
            raise ConfigError(f"stride must be at least 1, got {self.stride}")
        if self.fps is not None and not self.fps > 0:
            raise ConfigError(f"fps must be positive, got {self.fps}")
        for label, v in (("max_frames", self.max_frames), ("max_episodes", self.max_episodes)):
            if v is not None and int(v) < 1:
                raise ConfigError(f"{label} must be at least 1, got {v}")
        if self.resume and self.overwrite:
            raise ConfigError("--resume and --overwrite exclude each other: resume continues a run, "
                              "overwrite starts again")
        dev = str(self.device)
        if dev not in (Device.AUTO.value, Device.CPU.value) and not dev.startswith(Device.CUDA.value):
            raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {dev!r}")
        _enum(Autocast, self.autocast or "none", "autocast")
        _enum(Engine, self.engine, "engine")
        for label, obj in (("model_kwargs", self.model_kwargs), ("adapter_kwargs", self.adapter_kwargs)):
            if not isinstance(obj, Mapping):
                raise ConfigError(f"{label} must be a mapping (JSON object), got {type(obj).__name__}")

    def pooling_of(self, layer: str) -> Pooling:
        return parse_pooling(self.layer_pooling.get(layer, self.pool))


def parse_json_kwargs(text: str | None, option: str) -> dict[str, Any]:
    """A JSON object given on the command line, with the option named in errors."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{option}: expected a JSON object like '{{\"dim\": 16}}', got {text!r} ({exc})") from exc
    if not isinstance(value, dict):
        raise ConfigError(f"{option}: expected a JSON object, got {type(value).__name__}")
    return value


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``; a CUDA device must exist."""
    import torch

    if device == Device.AUTO.value:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' asked for but torch sees no CUDA GPU; use --device cpu or auto")
    return device
