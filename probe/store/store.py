"""The latent store: a directory that is the contract between every part of the toolkit.

Layout (format ``probe-latent-store``, version 1)::

    STORE/
      manifest.json        format, version, n, provenance, layers {name: {dim, pooling, file}}, fingerprint
      meta.parquet         one row per sample (columns in probe.columns)
      layers/<layer>.npy   float32 (n, dim), row-aligned with meta.parquet, opened memory-mapped

Stores are written by :mod:`probe.store.writer`, atomically (a temporary sibling directory renamed into place)
and never overwritten unless asked.
"""

from __future__ import annotations

import json
import shlex
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from probe.dataset_folders import dataset_kind
from probe.errors import LatentsError, StoreError, StoreNotFoundError
from probe.latents import Latents
from probe.validate import OutputKind, check_layer, check_meta

FORMAT = "probe-latent-store"
VERSION = 1
MANIFEST = "manifest.json"
META = "meta.parquet"
LAYERS_DIR = "layers"
STORE_KIND = OutputKind("store", MANIFEST, FORMAT)  # what --overwrite may replace: a store, nothing else


def layer_filename(layer: str) -> str:
    """File name of a layer inside ``layers/``: the name with unsafe characters replaced."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", layer) + ".npy"


def layer_file(store: Path, layer: str, info: Any) -> Path:
    """A layer's file, which must lie in the store's ``layers/`` folder (a manifest cannot point elsewhere)."""
    name = info.get("file") if isinstance(info, dict) else None
    if not isinstance(name, str) or name in ("", ".", "..") or Path(name).name != name or "\\" in name:
        raise StoreError(f"store '{store}': the manifest's file {name!r} of layer '{layer}' is not a file in "
                         f"{LAYERS_DIR}/; the manifest is corrupt or tampered with: re-create the store")
    return store / LAYERS_DIR / name


@dataclass(frozen=True, eq=False)
class Store:
    """An opened latent store: its manifest, its metadata and memory-mapped layers."""

    path: Path
    manifest: dict[str, Any]
    meta: pd.DataFrame = field(repr=False)

    @property
    def layers(self) -> list[str]:
        return list(self.manifest["layers"])

    @property
    def n(self) -> int:
        return int(self.manifest["n"])

    @property
    def fingerprint(self) -> str:
        """Content hash of ``meta.parquet`` and every layer file, fixed at write time."""
        return str(self.manifest["fingerprint"])

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def provenance(self) -> dict[str, Any]:
        return dict(self.manifest.get("provenance", {}))

    def layer_info(self, layer: str) -> dict[str, Any]:
        self._check_layer(layer)
        return dict(self.manifest["layers"][layer])

    def _check_layer(self, layer: str) -> None:
        check_layer(layer, self.layers, where=f"store '{self.path}'",
                    hint=f"run 'probe info {self.path}' to list all")

    def matrix(self, layer: str) -> np.ndarray:
        """The layer's ``(n, dim)`` float32 matrix, memory-mapped read-only."""
        self._check_layer(layer)
        file = layer_file(self.path, layer, self.manifest["layers"][layer])
        try:
            X = np.load(file, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise StoreError(f"layer file '{file}' cannot be read ({exc}); re-create the store") from exc
        _check_layer_shape(file, X, self.n, int(self.manifest["layers"][layer]["dim"]))
        return X

    def latents(self, layer: str) -> Latents:
        """The layer as a validated :class:`Latents` (matrix memory-mapped)."""
        X = self.matrix(layer)
        try:
            return Latents(X, self.meta, layer)
        except LatentsError as exc:
            file = layer_file(self.path, layer, self.manifest["layers"][layer])
            raise StoreError(f"store '{self.path}', file '{file}': {exc}") from exc


def _check_layer_shape(file: Path, X: np.ndarray, n: int, dim: int) -> None:
    if X.dtype != np.float32 or X.ndim != 2:
        raise StoreError(
            f"layer file '{file}' holds {X.dtype} of shape {X.shape}, expected float32 (n, dim); "
            "re-create the store with write_store or 'probe import'"
        )
    if X.shape[0] != n:
        raise StoreError(
            f"layer file '{file}' has {X.shape[0]} rows but meta.parquet has {n}; "
            "the store is inconsistent: re-create it"
        )
    if X.shape[1] != dim:
        raise StoreError(f"layer file '{file}' has dim {X.shape[1]} but the manifest says {dim}")
    if dim == 0:
        raise StoreError(f"layer file '{file}' holds latents of width 0: nothing to measure; "
                         "re-create the store from non-empty latents")


def stores_inside(path: str | Path) -> list[Path]:
    """The stores directly inside ``path`` (a folder of stores, e.g. one per checkpoint), in name order."""
    try:
        return sorted(p for p in Path(path).iterdir() if (p / MANIFEST).is_file())
    except OSError:
        return []


def names_of(paths: list[Path], most: int = 8) -> str:
    """Their names, comma-separated (the first ``most``, then how many more)."""
    names = ", ".join(p.name for p in paths[:most])
    return names + (f" and {len(paths) - most} more" if len(paths) > most else "")


def open_store(path: str | Path) -> Store:
    """Open and check a store directory (manifest, metadata, layer headers)."""
    path = Path(path)
    if not path.exists():
        raise StoreNotFoundError(
            f"store '{path}' does not exist; create one with 'probe extract' or 'probe import'"
        )
    if not path.is_dir():
        raise StoreError(f"store '{path}' is a file, expected a store directory holding {MANIFEST}")
    manifest_file = path / MANIFEST
    if not manifest_file.exists():
        inside = stores_inside(path)
        if inside:
            raise StoreError(f"'{path}' is a folder of {len(inside)} stores, not a store: {names_of(inside)}; "
                             f"give one of them (e.g. '{inside[-1]}') or several")
        kind = dataset_kind(path)
        if kind is not None:  # a dataset: the input of extraction, not its output
            raise StoreError(f"'{path}' is a {kind}, not a latent store; extract one from it first: "
                             f"probe extract --checkpoint CKPT --data {shlex.quote(str(path))} --out STORE")
        raise StoreError(
            f"'{path}' is not a latent store: {MANIFEST} is missing "
            "(an empty or partly copied directory?); re-create it with 'probe extract' or 'probe import'"
        )
    try:
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StoreError(f"'{manifest_file}' is not valid JSON ({exc}); the store is corrupt: re-create it") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise StoreError(f"'{manifest_file}' is not a {FORMAT} manifest (format={manifest.get('format') if isinstance(manifest, dict) else None!r})")
    if manifest.get("version") != VERSION:
        raise StoreError(
            f"store '{path}' has format version {manifest.get('version')!r}, this toolkit reads version "
            f"{VERSION}; re-create the store with this version or install the matching toolkit"
        )
    for key in ("n", "layers", "fingerprint"):
        if key not in manifest:
            raise StoreError(f"'{manifest_file}' lacks '{key}'; the store is corrupt: re-create it")
    meta_file = path / META
    if not meta_file.exists():
        raise StoreError(f"store '{path}' lacks {META}; the store is corrupt: re-create it")
    try:
        meta = pd.read_parquet(meta_file)
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise StoreError(f"'{meta_file}' cannot be read ({type(exc).__name__}: {exc}); re-create the store") from exc
    try:
        check_meta(meta, int(manifest["n"]), name=str(meta_file))
    except LatentsError as exc:
        raise StoreError(f"{exc}; the store is inconsistent: re-create it") from exc
    store = Store(path, manifest, meta)
    for layer, info in manifest["layers"].items():
        file = layer_file(path, layer, info)
        if not file.exists():
            raise StoreError(f"store '{path}' lists layer '{layer}' but '{file}' is missing; re-create the store")
        try:
            X = np.load(file, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise StoreError(f"layer file '{file}' is corrupt ({exc}); re-create the store") from exc
        _check_layer_shape(file, X, store.n, int(info["dim"]))
    return store
