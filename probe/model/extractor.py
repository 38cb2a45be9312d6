"""The model side of extraction: a loaded checkpoint with its adapter and hooks.

An :class:`Extractor` turns one read batch into pooled float32 arrays per layer
(adapter ``prepare`` -> forward with hooks -> pooling -> NaN / Inf check).
:func:`layer_table` lists a checkpoint's modules with their output shapes.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from probe import columns as C
from probe.errors import ConfigError, LatentsError
from probe.model.hooks import is_output_layer

if TYPE_CHECKING:
    from probe.model.config import ModelConfig

log = logging.getLogger(__name__)


class Extractor:
    """A loaded model with its adapter and hooks: turns a read batch into pooled float32 arrays."""

    def __init__(self, loaded: Any, config: ModelConfig, device: str) -> None:
        import torch

        from probe.model.adapters import make_adapter
        from probe.model.checkpoints import import_object
        from probe.model.hooks import LayerHooks, module_names

        self.loaded = loaded
        self.config = config
        self.device = torch.device(device)
        self.model = loaded.model
        self.adapter = make_adapter(config.adapter, self.model, config.adapter_kwargs,
                                    default=loaded.default_adapter)
        self.embed = import_object(config.embed, what="embed function", option="--embed") if config.embed else None
        names = set(module_names(self.model)) if hasattr(self.model, "named_modules") else set()
        requested = list(config.layers)
        if self.embed is not None:  # names that are not modules come from the embed function
            hooked = [x for x in requested if x in names or is_output_layer(x)]
            self.embed_layers = [x for x in requested if x not in hooked]
        else:
            hooked, self.embed_layers = requested, []
        self.hooked = hooked
        view_of = getattr(self.adapter, "batch_first_view", None)  # optional: layers whose outputs are not (B, ...)
        views = {x: v for x in hooked if callable(view_of) and (v := view_of(x)) is not None}
        self.hooks = LayerHooks(self.model, hooked, {x: config.pooling_of(x) for x in hooked},
                                where=f"checkpoint '{loaded.path}'", views=views)
        self.dims: dict[str, int] = {}
        self.autocast = None if config.autocast in (None, "none") else (
            torch.bfloat16 if config.autocast == "bf16" else torch.float16)

    @property
    def model_bytes(self) -> int:
        """Bytes of the model's parameters and buffers (what a pass keeps in memory per checkpoint)."""
        tensors = [*getattr(self.model, "parameters", list)(), *getattr(self.model, "buffers", list)()]
        return int(sum(t.numel() * t.element_size() for t in tensors))

    @property
    def read_key(self) -> tuple[bool, tuple[int, int] | None]:
        """What the reader must decode for this model; checkpoints of one pass share it."""
        size = self.image_size
        return (self.needs_images, tuple(size) if size is not None else None)

    @property
    def image_size(self) -> tuple[int, int] | None:
        return getattr(self.adapter, "image_size", None)

    @property
    def needs_images(self) -> bool:
        return bool(getattr(self.adapter, "needs_images", True))

    def pooling(self) -> dict[str, str]:
        return {x: self.config.pooling_of(x).value for x in self.hooked + self.embed_layers}

    @property
    def input_key(self) -> Hashable | None:
        """Extractors with equal keys get equal model inputs from a batch, so one ``prepare`` serves them all
        (adapters opt in with ``input_key()``; None: never shared)."""
        method = getattr(self.adapter, "input_key", None)
        key = method() if callable(method) else None
        return None if key is None else (key, str(self.device))

    def prepare(self, batch: Any, meta: pd.DataFrame, embodiment: str) -> Any:
        """The adapter's model inputs for one batch."""
        return self.adapter.prepare(batch, meta, embodiment, self.device)

    def __call__(self, batch: Any, meta: pd.DataFrame, embodiment: str) -> dict[str, np.ndarray]:
        """Pooled ``{layer: (B, d) float32}`` for one batch; NaN / Inf raise naming layer and samples."""
        return self.run(self.prepare(batch, meta, embodiment), batch, meta)

    def run(self, inputs: Any, batch: Any, meta: pd.DataFrame) -> dict[str, np.ndarray]:
        """Pooled ``{layer: (B, d) float32}`` from prepared ``inputs`` (see :meth:`__call__`)."""
        import contextlib

        import torch

        from probe.model.hooks import pool

        cast = (torch.autocast(self.device.type, dtype=self.autocast) if self.autocast is not None
                else contextlib.nullcontext())
        with self.hooks, torch.inference_mode(), cast:
            self.hooks.reset(getattr(inputs, "mask", None))
            if self.embed is not None:
                named = self._call(lambda: self.embed(self.model, inputs, batch), inputs, meta, embed=True)
                result = named
            else:
                named, result = {}, self._call(lambda: self.adapter.forward(self.model, inputs), inputs, meta)
            out = self.hooks.collect(result)
            if self.embed is not None:
                if not isinstance(named, Mapping):
                    raise ConfigError(f"--embed {self.config.embed} returned {type(named).__name__}, expected a "
                                      "dict {layer_name: tensor}")
                wanted = self.embed_layers or [k for k in named if k not in out]
                for name in wanted:
                    if name not in named:
                        raise ConfigError(f"layer '{name}' is neither a module of the model nor returned by --embed "
                                          f"{self.config.embed} (it returned {sorted(named)}); "
                                          "run 'probe layers CHECKPOINT' to list modules")
                    out[name] = pool(torch.as_tensor(named[name]), self.config.pooling_of(name),
                                     getattr(inputs, "mask", None))
                self.embed_layers = list(wanted)
        arrays = {}
        order = [x for x in self.hooked + self.embed_layers if x in out]
        for name in order:
            x = out[name]
            x = x.float().cpu().numpy()
            if x.shape[0] != len(meta):
                raise LatentsError(f"layer '{name}' gave {x.shape[0]} vectors for a batch of {len(meta)} samples; "
                                   "its output is not batch-first: choose another layer or pool in --embed")
            bad = ~np.isfinite(x).all(axis=1)
            if bad.any():
                ids = meta[C.SAMPLE_ID].to_numpy()[bad]
                raise LatentsError(
                    f"the model produced NaN or Inf in layer '{name}' for {int(bad.sum())} sample(s) "
                    f"(first: {', '.join(map(str, ids[:5]))}); nothing was written. Check these inputs, try "
                    "without --autocast, or choose another layer"
                )
            arrays[name] = np.ascontiguousarray(x, dtype=np.float32)
            self.dims[name] = int(x.shape[1])
        return arrays

    def _call(self, call: Any, inputs: Any, meta: pd.DataFrame, *, embed: bool = False) -> Any:
        """``call()`` (the forward or the --embed function), the model's own errors made one line that names
        this checkpoint, its adapter, the batch's dataset and what to try (see
        :func:`probe.model.adapters.call_model`)."""
        from probe.model.adapters import call_model

        def data() -> str:  # the batch's dataset, named only when the call failed
            first = meta.iloc[0] if len(meta) else {}
            return f"{first.get(C.EMBODIMENT, '?')} dataset '{first.get(C.DATASET, '?')}'"

        words = self.__dict__.setdefault("_call_words_cache", {})  # built once per extractor, not per batch
        if embed not in words:
            words[embed] = self._call_words(embed)
        what, fix, adapter = words[embed]
        return call_model(call, checkpoint=str(self.loaded.path), adapter=adapter, inputs=inputs, data=data, fix=fix,
                          what=what)

    def _call_words(self, embed: bool) -> tuple[str, str, str]:
        """What is called, what to try when it fails, and the adapter's name, for :meth:`_call`'s error."""
        from probe.model.adapters import CHOOSE_ADAPTER, adapter_name

        if embed:
            what = f"--embed {self.config.embed}"
            fix = ("fix that function (it is called as fn(model, inputs, batch), inputs being the adapter's "
                   "ModelInputs)")
        else:
            default = self.loaded.default_adapter
            what = "the model's forward"
            fix = (f"this checkpoint's default adapter is '{default}': leave --adapter out; else "
                   if isinstance(self.config.adapter, str) and self.config.adapter != default else "") + CHOOSE_ADAPTER
        if self.autocast is not None:
            fix += ", or run without --autocast"
        return what, fix, adapter_name(self.config.adapter, self.adapter)
