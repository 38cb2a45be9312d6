"""Adapters: turn a reader's :class:`~probe.readers.base.Batch` into model inputs and call the model.

The adapter protocol
--------------------
An adapter is an object with

* ``prepare(batch, meta, embodiment, device) -> ModelInputs``: build the model's
  inputs for the samples of ``batch`` (``meta`` holds their store rows: task,
  stage, episode, frame ...; ``embodiment`` is the dataset's embodiment name; the
  tensors go on ``device``).
* ``forward(model, inputs) -> Any``: call the model (default:
  ``model(*inputs.args, **inputs.kwargs)``). Hooks capture layers during this
  call; its return value is the ``output`` pseudo-layer.
* ``example(embodiment, device, input_shape=None) -> ModelInputs`` (optional):
  dummy inputs for ``probe layers`` without data.
* attributes ``image_size`` (``(H, W)`` the reader should decode to, or None for
  native size) and ``needs_images`` (False skips video decoding); optionally
  ``needs_state`` and ``needs_task`` (the model takes the state vector / the task),
  ``state_dims`` (``{embodiment: state size}``) and ``tasks`` (the task names it
  knows), which checks of raw observations use.
* optional, for models that need more than a batch (the LeRobot adapter has them):
  ``check_dataset(info, embodiment)`` refuses a dataset before the pass starts;
  ``use_datasets({name: dataset})`` receives the opened datasets (e.g. to read
  observation history); ``batch_first_view(layer)`` returns a function that turns a
  layer's output batch-first (or None); ``suggested_layers(names)`` picks the layers
  ``probe layers`` suggests.

Subclass :class:`Adapter` to get the defaults. ``--adapter package.module:make``
names a callable ``make(model, **adapter_kwargs) -> adapter`` (a subclass of
:class:`Adapter` itself works). Registered names (:data:`ADAPTERS`): ``image``, ``state``,
the built-in world's ``world``, ``lerobot`` (LeRobot policies) and ``transformers`` (Hugging Face image models).
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from probe.model.checkpoints import import_object
from probe.model.state_dicts import first_line
from probe.errors import ConfigError, DataError, ModelCallError, ProbeError
from probe.readers.base import Batch

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class ModelInputs:
    """Positional and keyword arguments of one forward call.

    ``mask`` is an optional ``(B, T)`` tensor of valid tokens: pooling of token
    outputs with ``T`` tokens uses it (mean over valid tokens, last valid token).
    """

    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    mask: torch.Tensor | None = None

    def __len__(self) -> int:
        for value in (*self.args, *self.kwargs.values()):
            if isinstance(value, torch.Tensor) and value.ndim:
                return int(value.shape[0])
        raise ConfigError("model inputs hold no batched tensor; an adapter must pass at least one (B, ...) tensor")


class Adapter(abc.ABC):
    """Base class of adapters (see the module docstring for the protocol)."""

    name: ClassVar[str] = "custom"
    image_size: tuple[int, int] | None = None
    needs_images: bool = True
    needs_state: bool = False
    needs_task: bool = False

    @abc.abstractmethod
    def prepare(self, batch: Batch, meta: pd.DataFrame, embodiment: str, device: torch.device) -> ModelInputs:
        """Model inputs for the samples of ``batch``."""

    def forward(self, model: Any, inputs: ModelInputs) -> Any:
        """Call the model on ``inputs``."""
        return model(*inputs.args, **dict(inputs.kwargs))

    def example(self, embodiment: str, device: torch.device, input_shape: Sequence[int] | None = None) -> ModelInputs:
        """Dummy inputs of batch size 2 for listing layers."""
        raise ConfigError(f"adapter '{self.name}' cannot make example inputs; pass --data PATH (a dataset) "
                          "or --input-shape to 'probe layers'")

    def options(self) -> dict[str, Any]:
        """What the adapter was configured with (written to the store manifest)."""
        return {}

    def input_key(self) -> Hashable | None:
        """A key such that adapters with equal keys make equal inputs from any batch, or None.

        Checkpoints of one pass whose adapters share a key share one ``prepare`` per
        batch. Return a key only when ``prepare`` depends on nothing but the key and
        the models leave their inputs unmodified; the default None never shares.
        """
        return None


def batch_images(batch: Batch, video_key: str | None) -> np.ndarray:
    if not batch.images:
        raise DataError("the batch holds no images (the dataset has no video, or images were not decoded); "
                        "use --adapter state for state vectors, or a dataset with video")
    if video_key is None:
        return next(iter(batch.images.values()))
    if video_key not in batch.images:
        raise DataError(f"video key '{video_key}' not in the dataset; it has {list(batch.images)}")
    return batch.images[video_key]


def images_to_tensor(images: np.ndarray, device: torch.device, size: tuple[int, int] | None = None) -> torch.Tensor:
    """uint8 ``(B, H, W, 3)`` -> float32 ``(B, 3, H, W)`` in [0, 1] on ``device``, resized to ``size``."""
    x = torch.from_numpy(writable(images, np.uint8)).to(device, non_blocking=True)
    x = x.permute(0, 3, 1, 2).float().div_(255.0)
    if size is not None and tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)
    return x


def writable(values: np.ndarray, dtype: type) -> np.ndarray:
    """A C-contiguous writable array of ``dtype`` (torch refuses read-only memory)."""
    out = np.ascontiguousarray(values, dtype=dtype)
    return out if out.flags.writeable else out.copy()


def size_pair(size: int | Sequence[int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, (int, float)):
        return (int(size), int(size))
    h, w = size
    return (int(h), int(w))


class ImageAdapter(Adapter):
    """A generic image encoder: ``model(images)`` with images ``(B, 3, H, W)``.

    Parameters
    ----------
    size : resize to ``size`` (int or ``[H, W]``); None keeps the video's size.
    mean, std : per-channel normalisation after scaling to [0, 1] (e.g. ImageNet's).
    channels : ``"rgb"`` or ``"bgr"`` channel order.
    video_key : which camera of the dataset (default: its first).
    """

    name = "image"

    def __init__(self, model: Any = None, *, size: int | Sequence[int] | None = 224,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 channels: str = "rgb", video_key: str | None = None) -> None:
        if channels not in ("rgb", "bgr"):
            raise ConfigError(f"image adapter: channels must be 'rgb' or 'bgr', got {channels!r}")
        for label, v in (("mean", mean), ("std", std)):
            if v is not None and len(v) != 3:
                raise ConfigError(f"image adapter: {label} needs 3 values (one per channel), got {list(v)}")
        if std is not None and min(std) <= 0:
            raise ConfigError(f"image adapter: std values must be positive, got {list(std)}")
        self.image_size = size_pair(size)
        self.mean, self.std, self.channels, self.video_key = mean, std, channels, video_key

    def _tensor(self, images: np.ndarray, device: torch.device) -> torch.Tensor:
        x = images_to_tensor(images, device, self.image_size)
        if self.channels == "bgr":
            x = x.flip(1)
        if self.mean is not None:
            x = x - torch.tensor(self.mean, device=device).view(1, 3, 1, 1)
        if self.std is not None:
            x = x / torch.tensor(self.std, device=device).view(1, 3, 1, 1)
        return x

    def prepare(self, batch: Batch, meta: pd.DataFrame, embodiment: str, device: torch.device) -> ModelInputs:
        return ModelInputs((self._tensor(batch_images(batch, self.video_key), device),))

    def example(self, embodiment: str, device: torch.device, input_shape: Sequence[int] | None = None) -> ModelInputs:
        if input_shape:  # exactly the shape asked for, e.g. (3, 224, 224)
            return ModelInputs((torch.zeros((2, *map(int, input_shape)), device=device),))
        h, w = self.image_size or (224, 224)
        return ModelInputs((self._tensor(np.zeros((2, h, w, 3), np.uint8), device),))

    def options(self) -> dict[str, Any]:
        return {"size": self.image_size, "mean": self.mean, "std": self.std, "channels": self.channels,
                "video_key": self.video_key}


class StateAdapter(Adapter):
    """State vectors: ``model(state)`` with ``state`` float32 ``(B, P)`` (hand keypoints flattened if no state)."""

    name = "state"
    needs_images = False

    def __init__(self, model: Any = None, *, keypoints: bool = False) -> None:
        self.keypoints = bool(keypoints)

    def prepare(self, batch: Batch, meta: pd.DataFrame, embodiment: str, device: torch.device) -> ModelInputs:
        values = batch.keypoints.reshape(len(batch), -1) if self.keypoints and batch.keypoints is not None else batch.state
        if values is None:
            raise DataError("the dataset has no state vectors (observation.state or keypoints); "
                            "use --adapter image for video")
        return ModelInputs((torch.from_numpy(writable(values, np.float32)).to(device),))

    def example(self, embodiment: str, device: torch.device, input_shape: Sequence[int] | None = None) -> ModelInputs:
        if not input_shape:
            raise ConfigError("the state adapter needs --input-shape P (the state size) or --data PATH")
        return ModelInputs((torch.zeros((2, *map(int, input_shape)), device=device),))

    def options(self) -> dict[str, Any]:
        return {"keypoints": self.keypoints}






#: Adapters by name: a class, or a ``package.module:callable`` spec string imported on first use (plugins such as
#: the built-in world register this way, so this module never imports them). Add your own with
#: :func:`register_adapter`.
ADAPTERS: dict[str, type[Adapter] | str] = {
    "image": ImageAdapter,
    "state": StateAdapter,
    "world": "probe.world.adapter:WorldAdapter",
    "lerobot": "probe.model.lerobot_inputs:LeRobotAdapter",
    "transformers": "probe.model.hf_transformers:TransformersImageAdapter",
}


def register_adapter(name: str, factory: type[Adapter] | str) -> None:
    """Make ``--adapter NAME`` build ``factory`` (a class or ``'package.module:callable'``)."""
    ADAPTERS[str(name)] = factory


def adapter_factory(spec: str) -> Any:
    """The callable a registered name or a ``package.module:callable`` spec names."""
    if spec in ADAPTERS:
        factory = ADAPTERS[spec]
        return import_object(factory, what="adapter", option="--adapter") if isinstance(factory, str) else factory
    if ":" in spec:
        return import_object(spec, what="adapter", option="--adapter")
    raise ConfigError(f"unknown adapter {spec!r}; use one of {sorted(ADAPTERS)} or 'package.module:callable'")


def make_adapter(spec: str | Adapter | None, model: Any, kwargs: Mapping[str, Any] | None = None,
                 *, default: str = "image") -> Adapter:
    """The adapter named by ``spec`` (built-in name or ``package.module:callable``) for ``model``."""
    if isinstance(spec, Adapter):
        return spec
    spec = spec or default
    kwargs = dict(kwargs or {})
    factory = adapter_factory(spec)
    try:
        adapter = factory(model, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"adapter {spec!r} cannot be built with options {kwargs} ({exc}); "
                          "check --adapter-kwargs") from exc
    if not callable(getattr(adapter, "prepare", None)):
        raise ConfigError(f"adapter {spec!r} returned a {type(adapter).__name__} without a prepare() method; "
                          "subclass probe.model.adapters.Adapter")
    for attr, value in (("image_size", None), ("needs_images", True)):
        if not hasattr(adapter, attr):
            setattr(adapter, attr, value)
    if not hasattr(adapter, "forward"):
        adapter.forward = lambda m, inputs: m(*inputs.args, **dict(inputs.kwargs))  # type: ignore[attr-defined]
    return adapter


#: What to try when a model does not take the inputs an adapter made (the built-in adapters' inputs, in short).
CHOOSE_ADAPTER = ("choose the --adapter that makes this model's inputs (image: one (B, 3, H, W) tensor; state: one "
                  "(B, P) tensor; world: the built-in world policy's; or MODULE:CALLABLE) or take the layers out "
                  "with --embed MODULE:FN")


def call_model(call: Callable[[], Any], *, checkpoint: str, adapter: str, inputs: Any,
               data: str | Callable[[], str], fix: str, what: str = "the model's forward") -> Any:
    """``call()``: the toolkit's one call of a user's model (``adapter.forward(model, inputs)`` or an ``--embed``
    function), whose own exceptions become a :class:`~probe.errors.ModelCallError`.

    Its one-line message names ``checkpoint``, ``adapter``, ``data`` (which dataset or example inputs; a function
    giving it is called only on failure) and the
    shapes of ``inputs``, quotes the model's error type and first line and ends with ``fix``; the model's error
    is chained (``--debug`` shows its traceback). The toolkit's own errors (raised by hooks during the forward),
    interrupts and running out of memory pass unchanged.
    """
    try:
        return call()
    except (ProbeError, MemoryError, torch.cuda.OutOfMemoryError):
        raise
    except Exception as exc:
        where = data() if callable(data) else data
        raise ModelCallError(f"checkpoint '{checkpoint}' with adapter '{adapter}' on {where}: {what} raised "
                             f"{error_line(exc)} (the adapter passed {describe_inputs(inputs)}); {fix}; run with "
                             "--debug for the traceback") from exc


def error_line(exc: BaseException) -> str:
    """``Type: first line of the message`` of an exception (:func:`probe.model.state_dicts.first_line`)."""
    return f"{type(exc).__name__}: {first_line(exc)}" if str(exc).strip() else type(exc).__name__


def describe_inputs(inputs: Any) -> str:
    """Model inputs in a few words: ``one tensor (64, 3, 224, 224)``, ``4 inputs: tensor (64, 3, 64, 64), ...``."""
    args, kwargs = getattr(inputs, "args", None), getattr(inputs, "kwargs", None)
    if args is None and kwargs is None:  # an adapter's own inputs type
        return _describe(inputs)
    parts = [_describe(a) for a in (args or ())] + [f"{k}={_describe(v)}" for k, v in dict(kwargs or {}).items()]
    if not parts:
        return "no inputs"
    if len(parts) == 1 and not kwargs:
        return f"one {parts[0]}"
    return f"{len(parts)} inputs: {', '.join(parts[:6])}{', ...' if len(parts) > 6 else ''}"


def _describe(value: Any) -> str:
    if isinstance(value, (torch.Tensor, np.ndarray)):
        kind = "tensor" if isinstance(value, torch.Tensor) else "array"
        dtype = str(value.dtype).removeprefix("torch.")
        return f"{kind} {tuple(int(s) for s in value.shape)}" + ("" if dtype == "float32" else f" {dtype}")
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:40] + "...")
    if isinstance(value, Mapping):
        keys = [str(k) for k in value][:4]
        return f"dict of {len(value)} ({', '.join(keys)}{', ...' if len(value) > 4 else ''})"
    if isinstance(value, (list, tuple)):
        return f"{type(value).__name__} of {len(value)}"
    return "None" if value is None else type(value).__name__


def adapter_name(spec: str | Adapter | None, adapter: Any) -> str:
    """How the manifest names an adapter."""
    if isinstance(spec, str) and spec:
        return spec
    return str(getattr(adapter, "name", type(adapter).__name__))
