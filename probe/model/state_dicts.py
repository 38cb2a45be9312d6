"""Reading weight files safely and fitting them to a model.

State dicts are read with ``safetensors`` or ``torch.load(weights_only=True)``; full
unpickling only with ``trust`` (logged as a warning). Common wrappers are unwrapped
(``state_dict``, ``model`` ..., ``module.`` and ``_orig_mod.`` prefixes), and a state
dict must fit its model exactly: :func:`fit_state_dict` raises a
:class:`~probe.errors.CheckpointError` with the first missing, unexpected and
mis-shaped keys, never loading partially.
"""

from __future__ import annotations

import logging
import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from probe.errors import CheckpointError

log = logging.getLogger(__name__)

# keys under which training code commonly nests the weights
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "network", "weights")
# prefixes added by DataParallel / DistributedDataParallel and torch.compile
STRIP_PREFIXES = ("module.", "_orig_mod.")
STEP_KEYS = ("step", "global_step", "train_step", "training_step", "iteration")
_DIFF_SHOWN = 3


def config_step(config: Mapping[str, Any]) -> int | None:
    """Training step recorded in a config or checkpoint dict (top level or under ``training``/``train``)."""
    for scope in (config, config.get("training"), config.get("train"), config.get("provenance")):
        if isinstance(scope, Mapping):
            for key in STEP_KEYS:
                value = scope.get(key)
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    return int(value)
    return None



def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def torch_load(weights: Path, trust: bool) -> Any:
    import torch

    if trust:
        log.warning("loading '%s' with full unpickling because you trust it (--trust-checkpoint): "
                    "this runs any code stored in the file", weights)
        try:
            return torch.load(weights, map_location="cpu", weights_only=False)  # trusted by the caller
        except Exception as exc:
            raise CheckpointError(f"checkpoint '{weights}' cannot be read even with trust "
                                  f"({type(exc).__name__}: {first_line(exc)}); the file is corrupt") from exc
    try:
        with warnings.catch_warnings():  # torch's note on a plain pickle's protocol (the refusal below says more)
            warnings.filterwarnings("ignore", message=r"Detected pickle protocol", category=UserWarning)
            return torch.load(weights, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only load failed" in str(exc).lower() or "unsupported global" in str(exc).lower():
            raise CheckpointError(
                f"checkpoint '{weights}' is a pickle holding Python objects beyond tensors (e.g. a whole model "
                "or an optimizer); it was not loaded because unpickling can run code. Save a state dict "
                "(torch.save(model.state_dict(), ...) or safetensors) or, if you trust the file, pass "
                "--trust-checkpoint (trust=True in Python)"
            ) from exc
        raise CheckpointError(f"checkpoint '{weights}' is corrupt ({first_line(exc)}); re-save it") from exc
    except Exception as exc:
        raise CheckpointError(f"checkpoint '{weights}' cannot be read ({type(exc).__name__}: "
                              f"{first_line(exc)}); the file is corrupt or truncated: re-save it") from exc


def load_state_dict(weights: str | Path, *, trust: bool = False) -> dict[str, Any]:
    """Tensors of a weight file, unwrapped from common containers and prefixes.

    ``.safetensors`` is read with safetensors; other files with
    ``torch.load(weights_only=True)`` unless ``trust``.
    """
    return read_weights(Path(weights), trust)[0]


def read_weights(weights: Path, trust: bool) -> tuple[dict[str, Any], int | None]:
    if weights.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            obj: Any = load_file(str(weights), device="cpu")
        except Exception as exc:
            raise CheckpointError(f"safetensors file '{weights}' cannot be read ({type(exc).__name__}: "
                                  f"{first_line(exc)}); the file is corrupt or truncated: re-save it") from exc
    else:
        obj = torch_load(weights, trust)
    step = config_step(obj) if isinstance(obj, Mapping) else None
    return unwrap_state_dict(obj, source=str(weights)), step


def is_tensor_dict(obj: Any) -> bool:
    import torch

    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def unwrap_state_dict(obj: Any, *, source: str = "checkpoint") -> dict[str, Any]:
    """Find the tensor dict inside ``obj`` (``state_dict`` / ``model`` ... wrappers) and strip ``module.``."""
    import torch

    if isinstance(obj, torch.nn.Module):
        return dict(obj.state_dict())
    for _ in range(3):  # nested wrappers, e.g. {"model": {"state_dict": ...}}
        if is_tensor_dict(obj) or not isinstance(obj, Mapping):
            break
        inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), (Mapping, torch.nn.Module))), None)
        if inner is None:
            break
        obj = dict(inner.state_dict()) if isinstance(inner, torch.nn.Module) else inner
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"checkpoint '{source}' holds a {type(obj).__name__}, expected a state dict "
                              "(a mapping of parameter names to tensors)")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(
            f"checkpoint '{source}' holds no tensors at the top level or under {list(WRAPPER_KEYS)}; "
            f"its keys are {list(obj)[:8]}; save model.state_dict() instead"
        )
    for prefix in STRIP_PREFIXES:
        if all(k.startswith(prefix) for k in tensors):
            tensors = {k[len(prefix):]: v for k, v in tensors.items()}
    return tensors


def state_dict_diff(expected: Mapping[str, Any], got: Mapping[str, Any]) -> tuple[list[str], list[str], list[str]]:
    """Missing keys, unexpected keys and ``key: model shape vs checkpoint shape`` lines."""
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    shapes = [f"{k}: model {tuple(expected[k].shape)} vs checkpoint {tuple(got[k].shape)}"
              for k in expected if k in got and tuple(expected[k].shape) != tuple(got[k].shape)]
    return missing, unexpected, shapes


MODEL_FIX = "check that --model and --model-kwargs build the architecture the checkpoint was saved from"


def fit_state_dict(module: Any, state: Mapping[str, Any], *, source: str = "checkpoint", fix: str = MODEL_FIX) -> None:
    """Load ``state`` into ``module`` strictly; any mismatch raises a readable :class:`CheckpointError`
    (one line: counts, the first few keys of each kind, then ``fix``)."""
    expected = module.state_dict()
    missing, unexpected, shapes = state_dict_diff(expected, state)
    if missing or unexpected or shapes:
        parts = []
        for label, items in (("missing in checkpoint", missing), ("unexpected in checkpoint", unexpected),
                             ("shape mismatches", shapes)):
            if items:
                more = f" ... (+{len(items) - _DIFF_SHOWN} more)" if len(items) > _DIFF_SHOWN else ""
                parts.append(f"{len(items)} {label}: {', '.join(items[:_DIFF_SHOWN])}{more}")
        raise CheckpointError(
            f"checkpoint '{source}' does not fit the model ({len(expected)} tensors in the model, "
            f"{len(state)} in the checkpoint); " + "; ".join(parts) + f"; {fix}"
        )
    module.load_state_dict(dict(state), strict=True)
