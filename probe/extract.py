"""Extraction: run a model over datasets and stream pooled layer outputs into latent stores.

``extract(ExtractConfig(...))`` opens the datasets, builds the sample table up
front (episodes, stage labels, sampling), loads each checkpoint, and streams
batches through the adapter and forward hooks into a
:class:`~probe.store.StoreWriter`: memory stays bounded by the batch size, an
interrupted run continues with ``resume=True``, and a store appears whole or not at all.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from probe import columns as C
from probe.errors import ConfigError, DataError, LatentsError, ProbeError
from probe.hooks import OUTPUT, Pooling, is_output_layer, parse_pooling
from probe.store import Store, StoreWriter, open_store
from probe.validate import check_output_path

log = logging.getLogger(__name__)

# internal columns of the sample table (not written to the store)
_DS = "_dataset_index"
_POS = "_row"


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
    model, model_kwargs, trust_checkpoint : how to build a user's model (see :mod:`probe.checkpoints`).
    adapter, adapter_kwargs : how batches become model inputs (see :mod:`probe.adapters`).
    embed : ``package.module:fn`` returning ``{name: tensor}`` for representations hooks cannot reach.
    batch_size, device, autocast : how the forward runs.
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
    batch_size: int = 32
    device: str = Device.AUTO.value
    autocast: str = Autocast.NONE.value
    overwrite: bool = False
    resume: bool = False
    skip_bad_episodes: bool = False
    engine: str = Engine.LOCAL.value
    ray_actors: int = 1
    ray_gpus_per_actor: float = 0.0

    def __post_init__(self) -> None:
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
        from probe.stages import StageSpec

        StageSpec.parse(self.stages)  # a bad spec fails before any work
        for name, p in self.layer_pooling.items():
            parse_pooling(p)
        if int(self.batch_size) < 1:
            raise ConfigError(f"batch_size must be at least 1, got {self.batch_size}")
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


# -- the sample table ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class OpenedData:
    """The opened datasets, their sample table (one row per future latent) and warnings."""

    datasets: tuple[Any, ...]
    embodiments: tuple[str, ...]
    names: tuple[str, ...]
    samples: pd.DataFrame
    warnings: tuple[str, ...]

    @property
    def meta(self) -> pd.DataFrame:
        return self.samples.drop(columns=[_DS, _POS]).reset_index(drop=True)


def open_data(config: ExtractConfig, progress: bool = False) -> OpenedData:
    """Open every dataset and build the sample table (stages labelled, frames sampled)."""
    datasets, embodiments, names, tables, warnings = [], [], [], [], []
    for i, spec in enumerate(config.data):
        if spec.dataset is not None:
            ds = spec.dataset
        else:
            ds = _open(spec, config.skip_bad_episodes)
        emb = spec.embodiment or ds.info.embodiment
        name = ds.info.name
        while name in names:
            name = f"{ds.info.name}-{len(names) + 1}"
        datasets.append(ds)
        embodiments.append(emb)
        names.append(name)
        warnings += [f"{name}: {w}" for w in getattr(ds, "warnings", [])]
        tables.append(_dataset_samples(ds, i, name, emb, config, warnings))
    samples = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    if samples.empty:
        raise DataError("no samples: the datasets have no usable episodes or frames after sampling; "
                        "check --stride / --fps / --max-frames and the dataset paths")
    samples[_POS] = np.arange(len(samples), dtype=np.int64)
    from probe.stages import stages_by_embodiment_report

    coverage = stages_by_embodiment_report(samples)
    for w in coverage:  # the readers log their own warnings
        log.warning(w)
    warnings += coverage
    return OpenedData(tuple(datasets), tuple(embodiments), tuple(names), samples, tuple(warnings))


def _open(spec: DataSpec, skip_bad: bool) -> Any:
    from probe.readers import Format, detect_format, open_dataset

    fmt = detect_format(spec.path)
    options = {"skip_bad_episodes": True} if skip_bad and fmt in (Format.LEROBOT_V2, Format.LEROBOT_V3) else {}
    return open_dataset(spec.path, embodiment=spec.embodiment, format=fmt, **options)


def _dataset_samples(ds: Any, index: int, name: str, embodiment: str, config: ExtractConfig,
                     warnings: list[str]) -> pd.DataFrame:
    from probe.sampling import SamplingConfig, sample_frames
    from probe.stages import stage_labeller

    sampling = SamplingConfig(config.stride, config.fps, config.max_frames)
    labeller = stage_labeller(ds, config.stages)
    episodes = ds.episodes()
    if config.max_episodes is not None:
        episodes = episodes[: config.max_episodes]
    parts = []
    for ep in episodes:
        table = labeller.label(ep)
        rows = table.iloc[sample_frames(len(table), ep.fps or ds.info.fps, sampling)]
        frames = rows[C.FRAME].to_numpy(np.int64)
        out = pd.DataFrame({
            C.SAMPLE_ID: [f"{name}/{ep.index}/{int(f)}" for f in frames],
            C.EMBODIMENT: embodiment,
            C.DATASET: name,
            C.EPISODE: np.full(len(rows), ep.index, dtype=np.int64),
            C.FRAME: frames,
            C.TIMESTAMP: rows[C.TIMESTAMP].to_numpy(np.float64),
            C.TASK: rows[C.TASK].astype(str).to_numpy() if C.TASK in rows else ep.task,
            C.STAGE: rows[C.STAGE].astype(str).to_numpy(),
            C.PROGRESS: rows[C.PROGRESS].to_numpy(np.float64),
            C.STAGE_PROGRESS: rows[C.STAGE_PROGRESS].to_numpy(np.float64),
        })
        if C.VIDEO in rows and C.VIDEO_TIMESTAMP in rows:
            out[C.VIDEO] = rows[C.VIDEO].fillna("").astype(str).to_numpy()
            out[C.VIDEO_TIMESTAMP] = rows[C.VIDEO_TIMESTAMP].astype(np.float64).fillna(0.0).to_numpy()
        elif ds.info.video_keys:
            ref = ep.video.get(ds.info.video_keys[0])
            out[C.VIDEO] = str(ref.path) if ref is not None and ref.path else ""
            out[C.VIDEO_TIMESTAMP] = out[C.TIMESTAMP].to_numpy() + float(ref.from_timestamp if ref else 0.0)
        if C.VIDEO in out:  # absolute, so that clips and thumbnails resolve from any working directory
            out[C.VIDEO] = [os.path.abspath(v) if v else "" for v in out[C.VIDEO]]
        out[_DS] = index
        parts.append(out)
    warnings += [f"{name}: {w}" for w in labeller.warnings]
    if not parts:
        return pd.DataFrame()
    return pd.concat(parts, ignore_index=True)


# -- reading batches ----------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Work:
    """One batch of samples of one dataset, read and ready for the model (or skipped episodes)."""

    dataset: int
    rows: np.ndarray
    meta: pd.DataFrame
    batch: Any
    skipped: tuple[tuple[int, str], ...] = ()
    n_asked: int = 0


def batches_of(samples: pd.DataFrame, todo: np.ndarray, batch_size: int) -> Iterator[pd.DataFrame]:
    """Sample rows still to do, in order, cut into batches that never mix datasets."""
    todo_rows = samples[todo]
    for _, group in todo_rows.groupby(_DS, sort=True):
        for start in range(0, len(group), batch_size):
            yield group.iloc[start : start + batch_size]


def concat_batches(parts: Sequence[Any]) -> Any:
    """One :class:`~probe.readers.base.Batch` from several (same dataset)."""
    from probe.readers.base import Batch

    if len(parts) == 1:
        return parts[0]

    def cat(values: list[Any]) -> Any:
        return None if any(v is None for v in values) else np.concatenate(values)

    keys = list(parts[0].images)
    return Batch(
        frames=np.concatenate([p.frames for p in parts]),
        timestamps=np.concatenate([p.timestamps for p in parts]),
        images={k: np.concatenate([p.images[k] for p in parts]) for k in keys},
        state=cat([p.state for p in parts]),
        action=cat([p.action for p in parts]),
        keypoints=cat([p.keypoints for p in parts]),
        video_paths=dict(parts[0].video_paths),
        video_timestamps={k: np.concatenate([p.video_timestamps[k] for p in parts]) for k in parts[0].video_timestamps
                          if all(k in p.video_timestamps for p in parts)},
    )


def read_work(opened: OpenedData, rows: pd.DataFrame, *, images: bool, size: tuple[int, int] | None,
              skip_bad: bool, bad: set[tuple[int, int]] | None = None) -> Work:
    """Read the frames of ``rows`` (one dataset), episode by episode.

    ``bad`` collects ``(dataset, episode)`` pairs already skipped, so that later
    batches of a bad episode are dropped without trying again.
    """
    d = int(rows[_DS].iloc[0])
    ds = opened.datasets[d]
    bad = set() if bad is None else bad
    parts, keep, skipped = [], [], []
    for episode, group in rows.groupby(C.EPISODE, sort=False):
        frames = group[C.FRAME].to_numpy(np.int64)
        if (d, int(episode)) in bad:
            continue
        try:
            batch = ds.read(int(episode), frames, images=images, size=size)
            if len(batch) != len(frames):
                raise DataError(f"the reader returned {len(batch)} frames for {len(frames)} asked")
        except Exception as exc:
            msg = (f"dataset '{opened.names[d]}' episode {int(episode)}: cannot read frames "
                   f"{int(frames[0])}..{int(frames[-1])} ({type(exc).__name__}: {exc})")
            if not skip_bad:
                raise DataError(f"{msg}; repair or remove the episode, or pass --skip-bad-episodes "
                                "to skip it with a warning") from exc
            log.warning("%s; skipped (--skip-bad-episodes)", msg)
            bad.add((d, int(episode)))
            skipped.append((int(episode), msg))
            continue
        parts.append(batch)
        keep.append(group)
    if not parts:
        return Work(d, np.empty(0, np.int64), rows.iloc[:0], None, tuple(skipped), len(rows))
    meta = pd.concat(keep)
    return Work(d, meta[_POS].to_numpy(np.int64), meta, concat_batches(parts), tuple(skipped), len(rows))


def prefetch(items: Iterator[Any], fn: Callable[[Any], Any], depth: int = 2) -> Iterator[Any]:
    """``fn(item)`` for each item, computed ``depth`` items ahead in a background thread."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="probe-read") as pool:
        pending: deque = deque()
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) > depth:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for fut in pending:
                fut.cancel()


# -- the model side ------------------------------------------------------------------------------


class Extractor:
    """A loaded model with its adapter and hooks: turns a read batch into pooled float32 arrays."""

    def __init__(self, loaded: Any, config: ExtractConfig, device: str) -> None:
        import torch

        from probe.adapters import default_adapter, make_adapter
        from probe.checkpoints import import_object
        from probe.hooks import LayerHooks, module_names

        self.loaded = loaded
        self.config = config
        self.device = torch.device(device)
        self.model = loaded.model
        self.adapter = make_adapter(config.adapter, self.model, config.adapter_kwargs,
                                    default=default_adapter(loaded.kind.value))
        self.embed = import_object(config.embed, what="embed function", option="--embed") if config.embed else None
        names = set(module_names(self.model)) if hasattr(self.model, "named_modules") else set()
        requested = list(config.layers)
        if self.embed is not None:  # names that are not modules come from the embed function
            hooked = [x for x in requested if x in names or is_output_layer(x)]
            self.embed_layers = [x for x in requested if x not in hooked]
        else:
            hooked, self.embed_layers = requested, []
        self.hooked = hooked
        self.hooks = LayerHooks(self.model, hooked, {x: config.pooling_of(x) for x in hooked},
                                where=f"checkpoint '{loaded.path}'")
        self.dims: dict[str, int] = {}
        self.autocast = None if config.autocast in (None, "none") else (
            torch.bfloat16 if config.autocast == Autocast.BF16.value else torch.float16)

    @property
    def image_size(self) -> tuple[int, int] | None:
        return getattr(self.adapter, "image_size", None)

    @property
    def needs_images(self) -> bool:
        return bool(getattr(self.adapter, "needs_images", True))

    def pooling(self) -> dict[str, str]:
        return {x: self.config.pooling_of(x).value for x in self.hooked + self.embed_layers}

    def __call__(self, batch: Any, meta: pd.DataFrame, embodiment: str) -> dict[str, np.ndarray]:
        """Pooled ``{layer: (B, d) float32}`` for one batch; NaN / Inf raise naming layer and samples."""
        import contextlib

        import torch

        from probe.hooks import pool

        inputs = self.adapter.prepare(batch, meta, embodiment, self.device)
        cast = (torch.autocast(self.device.type, dtype=self.autocast) if self.autocast is not None
                else contextlib.nullcontext())
        with self.hooks, torch.inference_mode(), cast:
            self.hooks.reset(getattr(inputs, "mask", None))
            if self.embed is not None:
                named = self.embed(self.model, inputs, batch)
                result = named
            else:
                named, result = {}, self.adapter.forward(self.model, inputs)
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


# -- orchestration -------------------------------------------------------------------------------


def store_paths(config: ExtractConfig, names: Sequence[str]) -> list[Path]:
    """Where each checkpoint's store goes: ``out`` itself for one, ``out/<checkpoint name>`` for several."""
    out = Path(config.out)
    if len(names) == 1:
        return [out]
    paths, seen = [], set()
    for name in names:
        unique, k = name, 2
        while unique in seen:
            unique, k = f"{name}-{k}", k + 1
        seen.add(unique)
        paths.append(out / unique)
    return paths


def _checkpoint_names(checkpoints: Sequence[str]) -> list[str]:
    return [Path(c).name if Path(c).is_dir() else Path(c).stem for c in checkpoints]


def provenance(config: ExtractConfig, opened: OpenedData, extractor: Extractor, engine: str) -> dict[str, Any]:
    """The manifest's ``provenance``: checkpoint, datasets, adapter, layers, sampling, engine."""
    from probe.adapters import adapter_name

    options = extractor.adapter.options() if callable(getattr(extractor.adapter, "options", None)) else {}
    return {
        "tool": "probe extract",
        "checkpoint": extractor.loaded.provenance(),
        "datasets": [{"name": n, "path": str(ds.info.path), "embodiment": e, "format": str(ds.info.format.value),
                      "fingerprint": ds.info.fingerprint, "fps": float(ds.info.fps)}
                     for ds, n, e in zip(opened.datasets, opened.names, opened.embodiments)],
        "adapter": {"name": adapter_name(config.adapter, extractor.adapter), "options": options},
        "embed": config.embed,
        "layers": extractor.pooling(),
        "sampling": {"stride": config.stride, "fps": config.fps, "max_frames": config.max_frames,
                     "max_episodes": config.max_episodes},
        "stages": config.stages,
        "engine": engine,
        "batch_size": config.batch_size,
        "device": str(extractor.device),
        "autocast": config.autocast,
    }


def extract(config: ExtractConfig, progress: bool = False) -> Store | list[Store]:
    """Extract pooled layer outputs of each checkpoint over the datasets into latent stores.

    Returns the one store, or a list (one per checkpoint, under ``config.out``) when
    several checkpoints are given.
    """
    names = _checkpoint_names(config.checkpoints)
    paths = store_paths(config, names)
    if len(paths) > 1 and Path(config.out).exists() and not Path(config.out).is_dir():
        raise ConfigError(f"--out '{config.out}' is a file; with several checkpoints it must be a directory")
    if not config.resume:
        for path in paths:
            check_output_path(path, config.overwrite, what="store")
    opened = open_data(config, progress=progress)
    stores = [extract_one(config, ckpt, path, opened, progress=progress)
              for ckpt, path in zip(config.checkpoints, paths)]
    return stores[0] if len(stores) == 1 else stores


def _staging(path: Path) -> Path:
    return path.with_name(f".{path.name}.staging")


def extract_one(config: ExtractConfig, checkpoint: str, path: Path, opened: OpenedData,
                progress: bool = False) -> Store:
    """One checkpoint's store at ``path`` (see :func:`extract`)."""
    from probe.checkpoints import load_checkpoint
    from probe.progress import bar

    path = Path(path)
    if config.resume and path.exists() and (path / "manifest.json").exists():
        store = open_store(path)
        if store.meta[C.SAMPLE_ID].tolist() == opened.meta[C.SAMPLE_ID].tolist() and set(config.layers) <= set(store.layers):
            log.info("store '%s' is already complete; nothing to resume", path)
            return store
        raise ConfigError(f"store '{path}' exists and is complete but holds other samples or layers; "
                          "pass --overwrite to replace it or choose another --out")
    device = resolve_device(config.device)
    loaded = load_checkpoint(checkpoint, model=config.model, model_kwargs=config.model_kwargs,
                             trust=config.trust_checkpoint, device=device)
    extractor = Extractor(loaded, config, device)
    engine = Engine(config.engine)
    staging = _staging(path)
    writer = StoreWriter(staging, opened.meta, provenance=provenance(config, opened, extractor, engine.value),
                         overwrite=True, resume=config.resume)
    for w in opened.warnings:
        if w not in writer.warnings:
            writer.warnings.append(w)
    skipped: dict[tuple[int, int], str] = {}
    try:
        if engine is Engine.RAY:
            from probe.ray_engine import run_ray

            run_ray(config, checkpoint, opened, writer, extractor, skipped, progress=progress)
        else:
            run_local(config, opened, writer, extractor, skipped, progress=progress, bar=bar)
        writer.provenance["layers"] = extractor.pooling()  # embed names are known once batches ran
        if not writer.done.any() and skipped:
            raise DataError(f"every episode was skipped as unreadable ({len(skipped)}); nothing to write")
        for msg in skipped.values():
            if msg not in writer.warnings:
                writer.warnings.append(f"{msg}; skipped (--skip-bad-episodes)")
        if skipped:
            _fill_skipped(writer, extractor)
        staged = writer.commit()
    except ProbeError:
        writer.abort()  # a deterministic error: nothing to resume, nothing half-written
        raise
    except BaseException:
        writer.sync()  # interrupted: record what was written, for --resume
        raise
    return _publish(staged, path, opened, skipped, config.overwrite)


def run_local(config: ExtractConfig, opened: OpenedData, writer: StoreWriter, extractor: Extractor,
              skipped: dict[tuple[int, int], str], *, progress: bool, bar: Callable[..., Any]) -> None:
    """The local engine: read ahead in a thread, run the model here, stream into ``writer``."""
    todo = ~writer.done
    total = int(todo.sum())
    pooling = extractor.pooling()
    with bar(total, desc=f"extract {extractor.loaded.name}", enabled=progress, unit="frame") as pbar:
        bad: set[tuple[int, int]] = set()
        read = lambda rows: read_work(opened, rows, images=extractor.needs_images,  # noqa: E731
                                      size=extractor.image_size, skip_bad=config.skip_bad_episodes, bad=bad)
        for work in prefetch(batches_of(opened.samples, todo, config.batch_size), read):
            for episode, msg in work.skipped:
                skipped[(work.dataset, episode)] = msg
            if len(work.rows):
                values = extractor(work.batch, work.meta, opened.embodiments[work.dataset])
                writer.write(work.rows, values, pooling=pooling)
            pbar.update(work.n_asked)


def _fill_skipped(writer: StoreWriter, extractor: Extractor) -> None:
    """Zero rows for skipped samples so the staging store can commit; :func:`_publish` drops them."""
    rows = np.flatnonzero(~writer.done)
    if not len(rows):
        return
    dims = extractor.dims
    for start in range(0, len(rows), 4096):
        chunk = rows[start : start + 4096]
        writer.write(chunk, {name: np.zeros((len(chunk), d), np.float32) for name, d in dims.items()})


def _publish(staged: Store, path: Path, opened: OpenedData, skipped: Mapping[tuple[int, int], str],
             overwrite: bool) -> Store:
    """Move the staging store into place, dropping the samples of skipped episodes."""
    from probe.atomic import _replace_dir

    if not skipped:
        check_output_path(path, overwrite, what="store")
        _replace_dir(staged.path, path)
        return open_store(path)
    samples = opened.samples
    drop = np.zeros(len(samples), dtype=bool)
    for (d, episode) in skipped:
        drop |= ((samples[_DS] == d) & (samples[C.EPISODE] == episode)).to_numpy()
    keep = np.flatnonzero(~drop)
    writer = StoreWriter(path, staged.meta.iloc[keep].reset_index(drop=True), provenance=staged.provenance,
                         overwrite=overwrite)
    writer.warnings.extend(staged.manifest.get("warnings", []))
    pooling = {name: info["pooling"] for name, info in staged.manifest["layers"].items()}
    try:
        for start in range(0, len(keep), 8192):
            chunk = keep[start : start + 8192]
            writer.write(np.arange(start, start + len(chunk)),
                         {name: np.asarray(staged.matrix(name)[chunk]) for name in staged.layers}, pooling=pooling)
        store = writer.commit()
    except BaseException:
        writer.abort()
        raise
    shutil.rmtree(staged.path, ignore_errors=True)
    return store


def layer_table(checkpoint: str, *, model: str | None = None, model_kwargs: Mapping[str, Any] | None = None,
                trust: bool = False, adapter: str | None = None, adapter_kwargs: Mapping[str, Any] | None = None,
                data: str | None = None, input_shape: Sequence[int] | None = None, embodiment: str | None = None,
                device: str = "cpu") -> tuple[list[Any], dict[str, Any]]:
    """Every module of a checkpoint's model with its output shape from one forward of two samples.

    The inputs come from two frames of ``data`` when given, else from the adapter's
    example batch (``input_shape`` without the batch dimension).

    Returns
    -------
    ``(list of LayerInfo, checkpoint provenance)``.
    """
    import torch

    from probe.adapters import default_adapter, make_adapter
    from probe.checkpoints import load_checkpoint
    from probe.hooks import list_layers

    loaded = load_checkpoint(checkpoint, model=model, model_kwargs=model_kwargs, trust=trust, device=device)
    ad = make_adapter(adapter, loaded.model, adapter_kwargs, default=default_adapter(loaded.kind.value))
    dev = torch.device(device)
    if data:
        config = ExtractConfig(checkpoints=(checkpoint,), data=(data,), layers=(OUTPUT,), out="-",
                               max_episodes=1, max_frames=2)
        opened = open_data(config)
        rows = opened.samples.iloc[:2]
        work = read_work(opened, rows, images=bool(getattr(ad, "needs_images", True)),
                         size=getattr(ad, "image_size", None), skip_bad=False)
        inputs = ad.prepare(work.batch, work.meta, opened.embodiments[0], dev)
    else:
        example = getattr(ad, "example", None)
        if example is None:
            raise ConfigError("the adapter has no example(); pass --data PATH to list layers")
        inputs = example(embodiment or "robot", dev, input_shape)
    infos = list_layers(loaded.model, lambda: ad.forward(loaded.model, inputs))
    return infos, loaded.provenance()
