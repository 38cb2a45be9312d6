"""What ``probe extract`` does, as one value composed of the parts each stage owns.

:class:`ExtractConfig` holds the checkpoints, datasets and output, and three parts: the model's
(:class:`~probe.model.config.ModelConfig`), the sampling's (:class:`~probe.extraction.sampling.SamplingConfig`)
and the passes' (:class:`PassConfig`). Each part validates itself; each stage takes only its part.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from probe.errors import ConfigError
from probe.extraction.sampling import SamplingConfig
from probe.model.config import ModelConfig
from probe.sizes import parse_bytes


class Engine(str, Enum):
    """Where batches run: in this process, or on Ray Data actors."""

    LOCAL = "local"
    RAY = "ray"


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
            if not path.strip():
                raise ConfigError(f"--data '{text}': no path after '='; give EMBODIMENT=PATH, e.g. "
                                  f"{name}=world/datasets/{name}")
            return cls(path, name)
        label, colon, rest = str(text).partition(":")
        if not sep and colon and len(label) > 1 and "/" not in label and rest and not Path(text).exists():
            from probe.errors import DataError

            raise DataError(f"dataset path '{text}' does not exist; to label a dataset with its embodiment write "
                            f"EMBODIMENT=PATH (e.g. {label}={rest}), not EMBODIMENT:PATH")
        return cls(str(text), None)


def data_spec(item: Any) -> DataSpec:
    from probe.readers.base import Dataset

    if isinstance(item, DataSpec):
        return item
    if isinstance(item, Dataset):  # an opened dataset, e.g. from a custom reader
        return DataSpec(str(item.info.path), None, item)
    return DataSpec.parse(str(item))




@dataclass(frozen=True)
class PassConfig:
    """How the checkpoints run over the data: batches, passes, caches, workers and engine.

    Attributes
    ----------
    batch_size : samples per forward.
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
    engine, ray_actors, ray_gpus_per_actor : local or Ray Data.
    """

    batch_size: int = 64
    pass_memory: int | str | None = None
    frame_cache: str | None = "auto"
    frame_cache_max: int | str = "10GB"
    model_workers: int | None = None
    read_workers: int | None = None
    engine: str = Engine.LOCAL.value
    ray_actors: int = 1
    ray_gpus_per_actor: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "pass_memory", parse_bytes(self.pass_memory))
        object.__setattr__(self, "frame_cache_max", parse_bytes(self.frame_cache_max, "--frame-cache-max"))
        cache = None if self.frame_cache is None else str(self.frame_cache).strip()
        object.__setattr__(self, "frame_cache", None if cache in (None, "", "off", "none") else cache)
        if int(self.batch_size) < 1:
            raise ConfigError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.model_workers is not None and int(self.model_workers) < 1:
            raise ConfigError(f"model_workers must be at least 1 (or None for automatic), got {self.model_workers}")
        if self.read_workers is not None and int(self.read_workers) < 0:
            raise ConfigError(f"read_workers must be at least 0 (0: read in this process; None: automatic), "
                              f"got {self.read_workers}")
        if self.engine not in [e.value for e in Engine]:
            raise ConfigError(f"engine must be one of {[e.value for e in Engine]}, got {self.engine!r}")


@dataclass(frozen=True)
class ExtractConfig:
    """Everything ``probe extract`` does, as one value (the CLI parses its flags into this).

    Attributes
    ----------
    checkpoints : checkpoint paths; several give one store each under ``out``.
    data : datasets: ``'human=PATH'`` / ``'PATH'`` strings, :class:`DataSpec`, or opened
        :class:`~probe.readers.base.Dataset` objects (e.g. from your own reader).
    out : the store directory (one checkpoint) or a directory of stores (several).
    model : the model side (layers, pooling, model factory, adapter, device).
    sampling : which frames become samples, their stage labels and (``tasks``) task relabels.
    passes : how the checkpoints run over the data.
    overwrite, resume, skip_bad_episodes : output and failure policy.

    >>> ExtractConfig(checkpoints=["ckpts/step-1000"], data=["human=data/ego", "robot=data/arm"],
    ...               out="stores/run", model=ModelConfig(layers=("trunk.block2",)),
    ...               sampling=SamplingConfig(stride=2))                          # doctest: +SKIP
    """

    checkpoints: tuple[str, ...]
    data: tuple[DataSpec, ...]
    out: str
    model: ModelConfig = field(default_factory=ModelConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    passes: PassConfig = field(default_factory=PassConfig)
    overwrite: bool = False
    resume: bool = False
    skip_bad_episodes: bool = False

    def __post_init__(self) -> None:
        checkpoints = (self.checkpoints,) if isinstance(self.checkpoints, (str, Path)) else self.checkpoints
        object.__setattr__(self, "checkpoints", tuple(str(c) for c in checkpoints))
        data = (self.data,) if isinstance(self.data, (str, Path, DataSpec)) or hasattr(self.data, "episodes") else self.data
        object.__setattr__(self, "data", tuple(data_spec(d) for d in data))
        object.__setattr__(self, "out", str(self.out))
        for name, kind in (("model", ModelConfig), ("sampling", SamplingConfig), ("passes", PassConfig)):
            if not isinstance(getattr(self, name), kind):
                raise ConfigError(f"ExtractConfig.{name} must be a {kind.__name__}, got "
                                  f"{type(getattr(self, name)).__name__}")
        if not self.checkpoints:
            raise ConfigError("no checkpoint given; pass --checkpoint PATH (several for one store each)")
        if not self.data:
            raise ConfigError("no dataset given; pass --data human=PATH --data robot=PATH")
        if not self.model.layers and not self.model.embed:
            raise ConfigError("no layer given; pass --layer NAME (run 'probe layers CHECKPOINT' to list them)")
        if self.resume and self.overwrite:
            raise ConfigError("--resume and --overwrite exclude each other: resume continues a run, "
                              "overwrite starts again")

    def resume_key(self, checkpoint_sha256: str, opened: Any) -> dict[str, Any]:
        """Everything that determines a checkpoint's rows: its weights, the model, layers and pooling, the
        adapter, the sampling and the data (``opened``: the :class:`~probe.extraction.samples.OpenedData`).

        The staging writer and the store's provenance record it; ``resume`` refuses a staged run or a
        complete store whose key differs, so a store never mixes rows of two checkpoints or option sets.
        """
        m = self.model
        sampling = dataclasses.asdict(self.sampling)
        for key in ("tasks", "embodiment_stages"):  # unset: as stores made before these options, which resume
            if not sampling[key]:
                del sampling[key]
        return {"checkpoint": {"sha256": checkpoint_sha256, "model": m.model, "model_kwargs": dict(m.model_kwargs)},
                "layers": sorted(m.layers), "pooling": {"pool": m.pool, "layer_pooling": dict(m.layer_pooling)},
                "adapter": {"spec": m.adapter, "kwargs": dict(m.adapter_kwargs)}, "embed": m.embed,
                "autocast": m.autocast, "sampling": sampling,
                "data": [{"name": name, "embodiment": emb, "fingerprint": ds.info.fingerprint,
                          "path": str(Path(ds.info.path).resolve()) if ds.info.path else ""}
                         for ds, name, emb in zip(opened.datasets, opened.names, opened.embodiments)]}


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


def with_rename(adapter_kwargs: dict[str, Any], rename: list[str] | None) -> dict[str, Any]:
    """``adapter_kwargs`` with ``--rename DATASET_KEY=POLICY_KEY`` options added as its ``rename`` entry."""
    if not rename:
        return adapter_kwargs
    from probe.model.lerobot_inputs import parse_rename

    merged = dict(adapter_kwargs.get("rename") or {})
    merged.update(parse_rename(rename))
    return {**adapter_kwargs, "rename": merged}
