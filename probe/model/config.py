"""What the model side of an extraction needs: how a checkpoint becomes a model, which layers are read, where it runs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from probe.errors import ConfigError
from probe.model.hooks import Pooling, parse_pooling


class Device(str, Enum):
    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"


class Autocast(str, Enum):
    NONE = "none"
    BF16 = "bf16"
    FP16 = "fp16"


@dataclass(frozen=True)
class ModelConfig:
    """The model, the layers read from it and how it runs.

    Attributes
    ----------
    layers : module names to hook, ``output`` / ``output.KEY``, or names returned by ``embed``.
    pool : pooling of token / spatial outputs (``layer_pooling`` overrides it per layer).
    model, model_kwargs, trust_checkpoint : how to build a user's model (see :mod:`probe.model.checkpoints`).
    adapter, adapter_kwargs : how batches become model inputs (see :mod:`probe.model.adapters`).
    embed : ``package.module:fn`` returning ``{name: tensor}`` for representations hooks cannot reach.
    device, autocast : where and in which precision the forward runs.
    """

    layers: tuple[str, ...] = ()
    pool: str = Pooling.MEAN.value
    layer_pooling: Mapping[str, str] = field(default_factory=dict)
    model: str | None = None
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    trust_checkpoint: bool = False
    adapter: str | None = None
    adapter_kwargs: Mapping[str, Any] = field(default_factory=dict)
    embed: str | None = None
    device: str = Device.AUTO.value
    autocast: str = Autocast.NONE.value

    def __post_init__(self) -> None:
        layers = (self.layers,) if isinstance(self.layers, str) else self.layers
        object.__setattr__(self, "layers", tuple(dict.fromkeys(str(x) for x in layers)))
        parse_pooling(self.pool)
        for p in self.layer_pooling.values():
            parse_pooling(p)
        dev = str(self.device)
        if dev not in (Device.AUTO.value, Device.CPU.value) and not dev.startswith(Device.CUDA.value):
            raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {dev!r}")
        if (self.autocast or "none") not in [a.value for a in Autocast]:
            raise ConfigError(f"autocast must be one of {[a.value for a in Autocast]}, got {self.autocast!r}")
        for label, obj in (("model_kwargs", self.model_kwargs), ("adapter_kwargs", self.adapter_kwargs)):
            if not isinstance(obj, Mapping):
                raise ConfigError(f"{label} must be a mapping (JSON object), got {type(obj).__name__}")

    def pooling_of(self, layer: str) -> Pooling:
        return parse_pooling(self.layer_pooling.get(layer, self.pool))


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``; a CUDA device must exist."""
    import torch

    if device == Device.AUTO.value:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' asked for but torch sees no CUDA GPU; use --device cpu or auto")
    return device
