"""Raw observations: embed a robot frame from an ``.npz`` file exactly as the store's extraction did.

An observation file holds

* ``image``: uint8 RGB ``(H, W, 3)`` or ``(n, H, W, 3)`` (any size: it is resized as
  the reader resizes video frames for extraction),
* ``state``: ``(P,)`` or ``(n, P)`` proprioceptive state,
* ``task`` (optional): the task name or instruction (the world policy needs it),
* ``embodiment`` (optional, default ``"robot"``).

:class:`ObservationEmbedder` rebuilds the extraction pieces from a store's
provenance (checkpoint, model factory, adapter and its options, the layer's
pooling, the embed function) and runs the same :class:`~probe.extraction.run.Extractor`
on a :class:`~probe.readers.base.Batch` built from the file, so a frame read from a
dataset and embedded this way equals the store's latent for that frame.

>>> emb = ObservationEmbedder.from_store(open_store("stores/step-2000"), "trunk.block2")  # doctest: +SKIP
>>> X = emb(read_observation("obs.npz"))                                                  # doctest: +SKIP
"""

from __future__ import annotations

import inspect
import logging
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from probe import columns as C
from probe.errors import CheckpointError, ConfigError, DataError, ModelCallError, ProbeError
from probe.model.state_dicts import first_line
from probe.store.store import Store

log = logging.getLogger(__name__)

#: Keys an observation file may hold.
OBSERVATION_KEYS: tuple[str, ...] = ("image", "state", "task", "embodiment")
DEFAULT_EMBODIMENT = C.ROBOT


@dataclass(frozen=True, eq=False)
class Observation:
    """One or a few frames of a raw observation.

    Attributes
    ----------
    images : uint8 ``(n, H, W, 3)`` or None when the file has no ``image``.
    state : float32 ``(n, P)`` or None when the file has no ``state``.
    embodiment : the embodiment the frames come from.
    task : task name or instruction, or None.
    source : the file they were read from.
    """

    images: np.ndarray | None
    state: np.ndarray | None
    embodiment: str
    task: str | None
    source: str

    def __len__(self) -> int:
        return int(len(self.images) if self.images is not None else len(self.state))  # type: ignore[arg-type]


def _text(value: np.ndarray, key: str, path: Path) -> str:
    if value.ndim != 0 or value.dtype.kind not in "US":
        raise DataError(f"'{key}' in observation file '{path}' must be one string, got an array of dtype "
                        f"{value.dtype} and shape {value.shape}; save it as np.savez(..., {key}='...')")
    return str(value.item().decode() if value.dtype.kind == "S" else value.item())


def read_observation(path: str | Path) -> Observation:
    """Read and check an observation ``.npz`` (see the module docstring for its keys)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"observation file '{path}' does not exist; save a frame with "
                        "np.savez('obs.npz', image=uint8 (H, W, 3), state=(P,), task='...')")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise DataError(f"observation file '{path}' is not a readable .npz ({type(exc).__name__}: {exc}); "
                        "write it with np.savez('obs.npz', image=..., state=..., task='...')") from exc
    if "image" not in arrays and "state" not in arrays:
        raise DataError(f"observation file '{path}' holds neither 'image' nor 'state' (its keys: "
                        f"{sorted(arrays) or 'none'}); save the frame as np.savez('obs.npz', image=uint8 "
                        "(H, W, 3), state=(P,), task='...')")
    images = state = None
    if "image" in arrays:
        images = arrays["image"]
        if images.ndim == 3:
            images = images[None]
        if images.ndim != 4 or images.shape[-1] != 3:
            raise DataError(f"'image' in '{path}' must be RGB (H, W, 3) or (n, H, W, 3), got shape "
                            f"{arrays['image'].shape}")
        if images.dtype != np.uint8:
            raise DataError(f"'image' in '{path}' must be uint8 (0..255), got {images.dtype}; convert with "
                            "(image * 255).round().astype(np.uint8) if it holds values in [0, 1]")
        if not len(images):
            raise DataError(f"'image' in '{path}' holds no frames (shape {images.shape})")
    if "state" in arrays:
        state = arrays["state"]
        if state.ndim == 1:
            state = state[None]
        if state.ndim != 2 or state.dtype.kind not in "fiu":
            raise DataError(f"'state' in '{path}' must be numbers of shape (P,) or (n, P), got dtype "
                            f"{arrays['state'].dtype} and shape {arrays['state'].shape}")
        state = state.astype(np.float32)
        if not np.isfinite(state).all():
            raise DataError(f"'state' in '{path}' holds NaN or Inf")
    if images is not None and state is not None and len(images) != len(state):
        raise DataError(f"'{path}' holds {len(images)} images but {len(state)} states; give one state per image")
    task = _text(arrays["task"], "task", path) if "task" in arrays else None
    embodiment = _text(arrays["embodiment"], "embodiment", path) if "embodiment" in arrays else DEFAULT_EMBODIMENT
    unknown = sorted(set(arrays) - set(OBSERVATION_KEYS))
    if unknown:
        log.info("observation file %s: ignoring keys %s", path, unknown)
    return Observation(images, state, embodiment, task, str(path))


def _adapter_kwargs(spec: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The recorded adapter options that its factory accepts (``options()`` may report derived values)."""
    from probe.model.adapters import adapter_factory

    factory = adapter_factory(spec)
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return dict(options)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return dict(options)
    kept = {k: v for k, v in options.items() if k in params}
    if set(options) - set(kept):
        log.debug("adapter %s: options %s are derived, not passed back", spec, sorted(set(options) - set(kept)))
    return kept


class ObservationEmbedder:
    """The store's model, adapter and layer, rebuilt from its provenance, for raw observations.

    Use :meth:`from_store`; calling the embedder on an :class:`Observation` returns
    float32 ``(n, dim)`` latents of ``layer``.
    """

    def __init__(self, extractor: Any, layer: str, dim: int, store_path: str) -> None:
        self.extractor = extractor
        self.layer = layer
        self.dim = dim
        self.store_path = store_path

    @property
    def checkpoint(self) -> str:
        return str(self.extractor.loaded.path)

    @classmethod
    def from_store(cls, store: Store, layer: str, *, checkpoint: str | Path | None = None, device: str = "auto",
                   trust: bool = False) -> ObservationEmbedder:
        """Rebuild the extraction of ``layer`` of ``store`` (``checkpoint`` overrides the recorded path)."""
        from probe.model.adapters import ADAPTERS
        from probe.model.checkpoints import load_checkpoint
        from probe.model.config import ModelConfig, resolve_device
        from probe.model.extractor import Extractor
        from probe.validate import check_layer

        check_layer(layer, store.layers, where=f"store '{store.path}'", hint=f"run 'probe info {store.path}'")
        prov = store.provenance or {}
        ckpt = prov.get("checkpoint") or {}
        path = str(checkpoint) if checkpoint is not None else ckpt.get("path")
        if not path:
            raise ConfigError(f"store '{store.path}' records no checkpoint (it was not made by 'probe extract'); "
                              "pass --checkpoint PATH: the checkpoint whose latents it holds")
        if checkpoint is None and not Path(path).exists():
            raise CheckpointError(f"the store's checkpoint '{path}' (recorded in '{store.path}/manifest.json') "
                                  "does not exist here; pass --checkpoint PATH to the same checkpoint")
        pooling = (prov.get("layers") or {}).get(layer) or store.layer_info(layer).get("pooling") or "mean"
        adapter = prov.get("adapter") or {}
        model_kwargs = ckpt.get("model_kwargs") or prov.get("model_kwargs") or {}
        device = resolve_device(device)
        autocast = prov.get("autocast") or "none"
        if not device.startswith("cuda"):
            autocast = "none"
        loaded = load_checkpoint(path, model=ckpt.get("factory"), model_kwargs=model_kwargs, trust=trust,
                                 device=device)
        spec = adapter.get("name")
        if spec and spec not in ADAPTERS and ":" not in spec:
            raise ConfigError(f"store '{store.path}' was extracted with adapter {spec!r}, which cannot be rebuilt "
                              "here; it must be a built-in or 'package.module:callable'")
        kwargs = _adapter_kwargs(spec, adapter.get("options") or {}) if spec else {}
        config = ModelConfig(layers=(layer,), pool=pooling, model=ckpt.get("factory"), model_kwargs=model_kwargs,
                             trust_checkpoint=trust, adapter=spec, adapter_kwargs=kwargs, embed=prov.get("embed"),
                             device=device, autocast=autocast)
        extractor = Extractor(loaded, config, device)
        return cls(extractor, layer, int(store.matrix(layer).shape[1]), str(store.path))

    def batch(self, obs: Observation) -> tuple[Any, pd.DataFrame]:
        """The :class:`~probe.readers.base.Batch` and sample rows the extractor takes for ``obs``."""
        from probe.readers.base import Batch
        from probe.readers.video import resize

        adapter = self.extractor.adapter
        n = len(obs)
        if self.extractor.needs_images and obs.images is None:
            raise DataError(f"the store's model ({self.checkpoint}) takes images but '{obs.source}' has no 'image'; "
                            "add image=uint8 (H, W, 3) to the file")
        state_dims = getattr(adapter, "state_dims", None)
        if getattr(adapter, "needs_state", False):
            if obs.state is None:
                raise DataError(f"the store's model ({self.checkpoint}) takes a state but '{obs.source}' has no "
                                "'state'; add state=(P,) to the file")
            if state_dims and obs.embodiment not in state_dims:
                raise DataError(f"embodiment '{obs.embodiment}' of '{obs.source}' is not one the model knows "
                                f"({sorted(state_dims)}); set embodiment='...' in the file")
            want = state_dims.get(obs.embodiment) if state_dims else None
            if want is not None and obs.state.shape[1] != want:
                raise DataError(f"'state' in '{obs.source}' has {obs.state.shape[1]} values per frame, the model "
                                f"expects {want} for embodiment '{obs.embodiment}'; save the {obs.embodiment}'s "
                                f"full state vector ({want} values) or set embodiment='...' in the file")
        needs_task = bool(getattr(adapter, "needs_task", False))
        if needs_task and obs.task is None:
            tasks = getattr(adapter, "tasks", None)
            raise DataError(f"the store's model ({self.checkpoint}) is conditioned on the task but '{obs.source}' "
                            f"has no 'task'; add task='...' to the file"
                            + (f" (one of {list(tasks)})" if tasks else ""))
        images = {}
        if obs.images is not None and self.extractor.needs_images:
            key = getattr(adapter, "video_key", None) or "observation.image"
            images[key] = resize(obs.images, self.extractor.image_size)  # as the reader decodes for extraction
        batch = Batch(frames=np.arange(n, dtype=np.int64), timestamps=np.zeros(n, np.float64), images=images,
                      state=obs.state)
        name = Path(obs.source).name
        meta = pd.DataFrame({
            C.SAMPLE_ID: [f"{name}#{i}" for i in range(n)], C.EMBODIMENT: obs.embodiment, C.DATASET: name,
            C.EPISODE: np.full(n, -1, np.int64), C.FRAME: np.arange(n, dtype=np.int64),
            C.TIMESTAMP: np.zeros(n, np.float64), C.TASK: obs.task or "", C.STAGE: "",
            C.PROGRESS: np.full(n, np.nan), C.STAGE_PROGRESS: np.full(n, np.nan),
        })
        return batch, meta

    def __call__(self, obs: Observation) -> np.ndarray:
        """float32 ``(n, dim)`` latents of the embedder's layer for the frames of ``obs``."""
        batch, meta = self.batch(obs)
        shapes = (f"image {tuple(obs.images.shape)}" if obs.images is not None else "no image") + ", " + (
            f"state {tuple(obs.state.shape)}" if obs.state is not None else "no state")
        try:
            out = self.extractor(batch, meta, obs.embodiment)
        except ModelCallError as exc:  # the model's own error, said for a query rather than for an extraction
            raise self._refused(obs, shapes, exc.__cause__ or exc) from exc.__cause__
        except ProbeError as exc:
            raise type(exc)(f"observation '{obs.source}' ({shapes}): {exc}") from exc
        except (RuntimeError, ValueError, IndexError, TypeError, KeyError) as exc:
            raise self._refused(obs, shapes, exc) from exc
        X = out[self.layer]
        if X.shape[1] != self.dim:
            raise DataError(f"checkpoint '{self.checkpoint}' gives {X.shape[1]}-dim latents for layer "
                            f"'{self.layer}', but store '{self.store_path}' holds {self.dim}-dim ones; pass the "
                            "checkpoint the store was extracted from (--checkpoint)")
        return X

    def _refused(self, obs: Observation, shapes: str, exc: BaseException) -> DataError:
        """The error of a model that does not take ``obs`` (``exc``: what it raised)."""
        first = first_line(exc)
        return DataError(f"the store's model ({self.checkpoint}) cannot take observation '{obs.source}' "
                         f"({shapes}): {first}; save the frame with the image and state layout of the "
                         "store's datasets")


def embed_observation(store: Store, layer: str, path: str | Path, *, checkpoint: str | Path | None = None,
                      device: str = "auto", trust: bool = False) -> tuple[np.ndarray, dict[str, Any]]:
    """Latents ``(n, dim)`` of the frames in an observation file, and a description of the query.

    The description holds ``source``, ``embodiment``, ``task``, ``checkpoint``,
    ``frames`` and ``images`` (uint8 ``(n, H, W, 3)`` or None, for contact sheets).
    """
    obs = read_observation(path)  # bad files fail before a model loads
    embedder = ObservationEmbedder.from_store(store, layer, checkpoint=checkpoint, device=device, trust=trust)
    X = embedder(obs)
    info = {"source": obs.source, "embodiment": obs.embodiment, "task": obs.task, "checkpoint": embedder.checkpoint,
            "frames": len(obs), "images": obs.images}
    return X, info
