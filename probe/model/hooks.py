"""Forward hooks on named layers, pooling of their outputs, and listing a model's layers.

Layer outputs are reduced to one vector per sample as soon as they are produced
(on the model's device), so a forward pass never keeps whole token or feature maps.

Shapes are read as:

* ``(B, D)``: already one vector per sample; every pooling but ``flatten`` keeps it.
* ``(B, T, D)``: tokens (transformers); pooled over ``T``. A ``(B, T)`` mask of valid
  tokens (e.g. an attention mask) makes ``mean``/``max`` use valid tokens only and
  ``last`` take the last valid token.
* ``(B, C, H, W)`` (and more spatial dims): feature maps; read as ``H*W`` tokens of ``C``.
* tuples / lists / dicts (``nn.MultiheadAttention``, Hugging Face outputs): the first
  tensor, or ``last_hidden_state`` when present.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import torch

from probe.errors import ConfigError, LatentsError
from probe.validate import check_layer

log = logging.getLogger(__name__)

LAYERS_HINT = "run 'probe layers CHECKPOINT' to list all"
OUTPUT = "output"  # pseudo-layer: the model's return value ('output.KEY' for a dict's entries)


class Pooling(str, Enum):
    """How a layer's token or spatial output becomes one vector per sample."""

    MEAN = "mean"
    FIRST = "first"
    LAST = "last"
    MAX = "max"
    FLATTEN = "flatten"


def parse_pooling(value: str | Pooling) -> Pooling:
    """A :class:`Pooling` from its name, with the valid names in the error."""
    try:
        return Pooling(value)
    except ValueError:
        raise ConfigError(f"pooling must be one of {[p.value for p in Pooling]}, got {value!r}") from None


def first_tensor(output: Any) -> torch.Tensor | None:
    """The tensor a module output stands for (see the module docstring), or None."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping):
        if isinstance(output.get("last_hidden_state"), torch.Tensor):
            return output["last_hidden_state"]
        values = list(output.values())
    elif isinstance(output, (tuple, list)):
        values = list(output)
    else:
        values = [getattr(output, "last_hidden_state", None)]
    for v in values:
        t = first_tensor(v) if v is not None else None
        if t is not None:
            return t
    return None


def as_tokens(x: torch.Tensor) -> torch.Tensor:
    """``(B, T, D)`` view of a layer output: tokens as they are, feature maps as ``H*W`` tokens."""
    if x.ndim == 3:
        return x
    if x.ndim >= 4:
        return x.flatten(2).transpose(1, 2)
    raise LatentsError(f"cannot read a {x.ndim}-D output of shape {tuple(x.shape)} as tokens")


def pool(x: torch.Tensor, pooling: Pooling | str, mask: torch.Tensor | None = None) -> torch.Tensor:
    """One float32 vector per sample from a layer output ``x`` (batch first).

    Parameters
    ----------
    x : ``(B,)``, ``(B, D)``, ``(B, T, D)`` or ``(B, C, *spatial)``.
    pooling : see :class:`Pooling`.
    mask : optional ``(B, T)`` bool/0-1 tensor of valid tokens, used when ``T`` matches.

    Returns
    -------
    ``(B, d)`` float32 tensor on ``x``'s device.
    """
    pooling = parse_pooling(pooling)
    x = x.detach()
    if x.ndim == 0:
        raise LatentsError(f"layer output is a scalar (shape {tuple(x.shape)}); choose a layer with a batch dimension")
    if x.ndim == 1:
        return x.float()[:, None]
    if pooling is Pooling.FLATTEN or x.ndim == 2:
        return x.float().reshape(x.shape[0], -1)
    tokens = as_tokens(x).float()
    valid = None
    if mask is not None and mask.ndim == 2 and mask.shape[0] == tokens.shape[0] and mask.shape[1] == tokens.shape[1]:
        valid = mask.to(device=tokens.device).bool()
    if pooling is Pooling.FIRST:
        return tokens[:, 0]
    if pooling is Pooling.LAST:
        if valid is None:
            return tokens[:, -1]
        last = (valid.long() * torch.arange(1, valid.shape[1] + 1, device=valid.device)).argmax(dim=1)
        return tokens[torch.arange(tokens.shape[0], device=tokens.device), last]
    if pooling is Pooling.MEAN:
        if valid is None:
            return tokens.mean(dim=1)
        w = valid.float()[..., None]
        return (tokens * w).sum(dim=1) / w.sum(dim=1).clamp_min(1.0)
    if valid is None:  # MAX
        return tokens.amax(dim=1)
    return tokens.masked_fill(~valid[..., None], float("-inf")).amax(dim=1)


def module_names(model: torch.nn.Module) -> list[str]:
    """Names of all submodules (not the root), in registration order."""
    return [name for name, _ in model.named_modules() if name]


def is_output_layer(name: str) -> bool:
    """Whether ``name`` is the ``output`` pseudo-layer (or ``output.KEY``) rather than a module."""
    return name == OUTPUT or name.startswith(OUTPUT + ".")


def is_scripted(model: Any) -> bool:
    """Whether ``model`` is TorchScript (its submodules cannot take Python hooks)."""
    return isinstance(model, torch.jit.ScriptModule)


def check_layers(model: torch.nn.Module, layers: Sequence[str], *, where: str = "model") -> None:
    """Raise :class:`~probe.errors.LayerNotFoundError` (with close matches) for unknown layer names.

    ``output`` (the model's return value) and ``output.KEY`` (an entry of a returned
    dict, checked after the forward pass) are always accepted.
    """
    names = module_names(model)
    for layer in layers:
        if is_output_layer(layer):
            continue
        if is_scripted(model) and layer in names:
            raise ConfigError(
                f"layer '{layer}' is inside a TorchScript archive, whose submodules cannot be hooked; "
                "use --layer output (the model's return value), make the scripted forward return a dict of "
                "named tensors (--layer output.NAME), or load the Python model with --model and its weights"
            )
        check_layer(layer, names + [OUTPUT], where=where, hint=LAYERS_HINT)


class LayerHooks:
    """Forward hooks capturing pooled outputs of named layers.

    Use as a context manager around forward passes; after each pass,
    :meth:`collect` returns ``{layer: (B, d) float32 tensor}`` and checks every
    hooked layer fired. A layer called several times in one pass keeps its last output.

    Several threads may run forward passes of the same model at once: the hooks are
    registered while any thread is inside the context, and each thread collects the
    outputs of its own pass.
    """

    def __init__(self, model: torch.nn.Module, layers: Sequence[str], pooling: Mapping[str, Pooling] | Pooling | str = Pooling.MEAN,
                 *, where: str = "model", views: Mapping[str, Callable[[torch.Tensor], torch.Tensor]] | None = None) -> None:
        check_layers(model, layers, where=where)
        self.model = model
        self.layers = list(dict.fromkeys(layers))
        # per layer, a function turning its output batch-first (e.g. (T, B, D) -> (B, T, D)), from the adapter
        self.views = dict(views or {})
        self.module_layers = [name for name in self.layers if not is_output_layer(name)]
        if isinstance(pooling, Mapping):
            self.pooling = {name: parse_pooling(pooling.get(name, Pooling.MEAN)) for name in self.layers}
        else:
            self.pooling = {name: parse_pooling(pooling) for name in self.layers}
        self._local = threading.local()  # this thread's pass: outputs and token mask
        self._handles: list[Any] = []
        self._users = 0
        self._lock = threading.Lock()

    @property
    def mask(self) -> torch.Tensor | None:
        return getattr(self._local, "mask", None)

    @property
    def _out(self) -> dict[str, torch.Tensor]:
        out = getattr(self._local, "out", None)
        if out is None:
            out = self._local.out = {}
        return out

    def _hook(self, name: str) -> Callable[..., None]:
        def hook(module: torch.nn.Module, args: Any, output: Any) -> None:
            x = first_tensor(output)
            if x is None:
                raise ConfigError(f"layer '{name}' ({type(module).__name__}) returned {type(output).__name__} "
                                 "holding no tensor; choose another layer")
            if name in self.views:
                x = self.views[name](x)
            self._out[name] = pool(x, self.pooling[name], self.mask)
        return hook

    def __enter__(self) -> LayerHooks:
        with self._lock:
            if self._users == 0:
                modules = dict(self.model.named_modules())
                self._handles = [modules[name].register_forward_hook(self._hook(name))
                                 for name in self.module_layers]
            self._users += 1
        return self

    def __exit__(self, *exc: Any) -> None:
        with self._lock:
            self._users -= 1
            if self._users == 0:
                for h in self._handles:
                    h.remove()
                self._handles = []

    def reset(self, mask: torch.Tensor | None = None) -> None:
        """Forget this thread's last pass's outputs; ``mask`` is its next pass's token mask."""
        self._local.out = {}
        self._local.mask = mask

    def collect(self, result: Any = None) -> dict[str, torch.Tensor]:
        """The pooled outputs of the last pass (``result``: the forward's return value, for ``output``).

        A hooked layer that never fired, or an ``output.KEY`` missing from the result, is an error.
        """
        for name in self.layers:
            if not is_output_layer(name):
                continue
            value = result
            if name != OUTPUT:
                key = name[len(OUTPUT) + 1:]
                if not isinstance(result, Mapping) or key not in result:
                    keys = list(result) if isinstance(result, Mapping) else []
                    raise ConfigError(f"layer '{name}': the model returned {type(result).__name__}"
                                      f"{' with keys ' + ', '.join(map(str, keys)) if keys else ''}, without "
                                      f"'{key}'; use one of "
                                      f"{', '.join([OUTPUT + '.' + str(k) for k in keys] or [OUTPUT])}")
                value = result[key]
            x = first_tensor(value)
            if x is None:
                raise ConfigError(f"layer '{name}': the model returned {type(value).__name__} holding no tensor")
            self._out[name] = pool(x, self.pooling[name], self.mask)
        silent = [name for name in self.layers if name not in self._out]
        if silent:
            raise ConfigError(
                f"hooked layer(s) {silent} never ran during the forward pass (the model's forward does not call "
                "them for these inputs, e.g. a module of another embodiment or an unused head); "
                f"choose layers on the forward path ({LAYERS_HINT})"
            )
        out, self._local.out = self._out, {}
        return out


@dataclass(frozen=True)
class LayerInfo:
    """One module of a model with the output shape seen in a dummy forward (None: not called)."""

    name: str
    type: str
    shape: tuple[int, ...] | None
    parameters: int


def list_layers(model: torch.nn.Module, forward: Callable[[], Any]) -> list[LayerInfo]:
    """Every submodule with its output shape from one call of ``forward`` (run under inference mode)."""
    shapes: dict[str, tuple[int, ...]] = {}
    handles = []

    def make(name: str) -> Callable[..., None]:
        def hook(module: torch.nn.Module, args: Any, output: Any) -> None:
            x = first_tensor(output)
            if x is not None:
                shapes[name] = tuple(int(s) for s in x.shape)
        return hook

    named = [(n, m) for n, m in model.named_modules() if n]
    if not is_scripted(model):
        for name, module in named:
            handles.append(module.register_forward_hook(make(name)))
    try:
        with torch.inference_mode():
            result = forward()
    finally:
        for h in handles:
            h.remove()
    infos = [LayerInfo(name, type(module).__name__, shapes.get(name),
                       sum(p.numel() for p in module.parameters(recurse=True)))
             for name, module in named]
    total = sum(p.numel() for p in model.parameters())
    if isinstance(result, Mapping):
        for key, value in result.items():
            x = first_tensor(value)
            infos.append(LayerInfo(f"{OUTPUT}.{key}", "output", tuple(x.shape) if x is not None else None, 0))
    else:
        x = first_tensor(result)
        infos.append(LayerInfo(OUTPUT, type(model).__name__, tuple(x.shape) if x is not None else None, total))
    return infos
