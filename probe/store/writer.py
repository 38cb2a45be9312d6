"""Writing latent stores: whole stores at once (:func:`write_store`) and row by row (:class:`StoreWriter`).

Stores are written atomically (a temporary sibling directory renamed into place), never over
anything but a store unless asked, and with their disk space reserved before memory-mapped writes
(a full disk is an error, never a SIGBUS). The format is described in :mod:`probe.store.store`.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import shutil
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from probe import columns as C
from probe.atomic import atomic_dir, no_space_is_an_error, replace_dir, reserve_space
from probe.errors import DiskFullError, LatentsError, StoreError
from probe.store.store import (FORMAT, LAYERS_DIR, MANIFEST, META, STORE_KIND, VERSION, Store, layer_filename,
                               open_store)
from probe.validate import check_matrix, check_meta, check_output_path, check_same_options


def _sha256_files(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()


def _release(array: np.memmap) -> None:
    """Drop a flushed memory map's pages from this process's resident set (no-op where unsupported)."""
    mm = getattr(array, "_mmap", None)
    if mm is not None and hasattr(mm, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
        try:
            mm.madvise(mmap.MADV_DONTNEED)
        except (OSError, ValueError):
            pass


def _manifest(n: int, layer_info: dict[str, dict[str, Any]], provenance: Mapping[str, Any] | None,
              warnings: list[str] | None) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "n": n,
        "provenance": dict(provenance or {}),
        "layers": layer_info,
        "warnings": list(warnings or []),
        "fingerprint": "",
    }


def _finish(tmp: Path, manifest: dict[str, Any]) -> None:
    files = [tmp / META] + [tmp / LAYERS_DIR / info["file"] for info in manifest["layers"].values()]
    manifest["fingerprint"] = _sha256_files(files)
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n", encoding="utf-8")


def _write_meta(meta: pd.DataFrame, file: Path) -> None:
    meta.reset_index(drop=True).to_parquet(file, index=False)


def _new_layer_file(file: Path, shape: tuple[int, int]) -> np.memmap:
    """A float32 ``.npy`` memory map with its disk space reserved (a full disk fails here, not as a SIGBUS)."""
    out = np.lib.format.open_memmap(file, mode="w+", dtype=np.float32, shape=shape)
    reserve_space(file, file.stat().st_size)
    return out


def write_store(
    path: str | Path,
    meta: pd.DataFrame,
    layers: Mapping[str, np.ndarray],
    *,
    provenance: Mapping[str, Any] | None = None,
    pooling: Mapping[str, str] | None = None,
    warnings: list[str] | None = None,
    overwrite: bool = False,
) -> Store:
    """Write a complete store atomically and return it opened.

    ``layers`` maps layer names to float32 ``(n, d)`` matrices row-aligned with ``meta``.
    """
    if not layers:
        raise StoreError("a store needs at least one layer; got none")
    n = len(meta)
    check_meta(meta, n)
    for name, X in layers.items():
        check_matrix(X, name=f"layer '{name}'")
        if X.shape[0] != n:
            raise LatentsError(f"layer '{name}' has {X.shape[0]} rows but meta has {n}; they must be row-aligned")
    files = {name: layer_filename(name) for name in layers}
    if len(set(files.values())) != len(files):
        raise StoreError(f"layer names {list(layers)} collide once made file-safe; rename them")
    info = {name: {"dim": int(X.shape[1]), "pooling": (pooling or {}).get(name, "none"), "file": files[name],
                   "dtype": "float32"} for name, X in layers.items()}
    manifest = _manifest(n, info, provenance, warnings)
    needed = sum(int(X.nbytes) for X in layers.values())
    with atomic_dir(path, overwrite=overwrite, kind=STORE_KIND) as tmp, \
            no_space_is_an_error(path, needed, kept="the store was not written"):
        (tmp / LAYERS_DIR).mkdir()
        _write_meta(meta, tmp / META)
        for name, X in layers.items():
            out = _new_layer_file(tmp / LAYERS_DIR / files[name], X.shape)
            for start in range(0, n, 1 << 16):
                out[start : start + (1 << 16)] = X[start : start + (1 << 16)]
            out.flush()
            del out
        _finish(tmp, manifest)
    return open_store(path)


def partial_dir(path: str | Path) -> Path:
    """Where a :class:`StoreWriter` for the store at ``path`` fills its rows (``.<name>.partial`` beside it)."""
    path = Path(path)
    return path.with_name(f".{path.name}.partial")


class StoreWriter:
    """Stream latents into a store with memory bounded independently of its size.

    The sample table is known up front; layer matrices are memory-mapped files in a
    partial directory ``.<name>.partial`` next to the target, filled block by block.
    ``commit()`` fingerprints and renames it into place. With ``resume=True`` an
    earlier partial directory for the same samples is reused and :attr:`done` says
    which rows are already written; one made with another ``resume_key`` (what determines
    the rows: checkpoint hash, layers, options, data; kept in the manifest's provenance) is refused.
    """

    sync_every_s: float = 2.0

    def __init__(self, path: str | Path, meta: pd.DataFrame, *, provenance: Mapping[str, Any] | None = None,
                 overwrite: bool = False, resume: bool = False, resume_key: Mapping[str, Any] | None = None) -> None:
        self.path = check_output_path(path, overwrite, kind=STORE_KIND)
        self.overwrite = overwrite
        self.resume_key = dict(resume_key) if resume_key is not None else None
        check_meta(meta, len(meta))
        self.meta = meta.reset_index(drop=True)
        self.n = len(self.meta)
        self.provenance = dict(provenance or {})
        self.partial = partial_dir(self.path)
        self.warnings: list[str] = []
        self._maps: dict[str, np.memmap] = {}
        self._info: dict[str, dict[str, Any]] = {}
        self._synced = time.monotonic()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        state = self.partial / "state.json"
        if resume and state.exists() and self.resume_key is not None:
            check_same_options(json.loads(state.read_text()).get("resume_key"), self.resume_key,
                               what=f"the staged run in '{self.partial}'",
                               fix="rerun without --resume to start again, or with the staged run's options")
        self.resumed = bool(resume and state.exists() and self._same_samples())
        if self.resumed:
            saved = json.loads(state.read_text())
            self._info = saved["layers"]
            self.warnings = saved.get("warnings", [])
            self.done = np.load(self.partial / "done.npy")
            for name, info in self._info.items():
                self._maps[name] = np.lib.format.open_memmap(self.partial / LAYERS_DIR / info["file"], mode="r+")
        else:
            shutil.rmtree(self.partial, ignore_errors=True)
            try:
                with no_space_is_an_error(self.path.parent, kept="nothing was kept"):
                    (self.partial / LAYERS_DIR).mkdir(parents=True)
                    _write_meta(self.meta, self.partial / META)
                    self.done = np.zeros(self.n, dtype=bool)
                    self._save_state()
            except BaseException:
                shutil.rmtree(self.partial, ignore_errors=True)
                raise

    def _same_samples(self) -> bool:
        try:
            old = pd.read_parquet(self.partial / META, columns=[C.SAMPLE_ID])
        except Exception:
            return False
        return old[C.SAMPLE_ID].astype(str).tolist() == self.meta[C.SAMPLE_ID].astype(str).tolist()

    def _save_state(self) -> None:
        np.save(self.partial / "done.tmp.npy", self.done)
        (self.partial / "done.tmp.npy").replace(self.partial / "done.npy")
        tmp = self.partial / "state.tmp.json"
        tmp.write_text(json.dumps({"layers": self._info, "warnings": self.warnings, "resume_key": self.resume_key},
                                  default=str))
        tmp.replace(self.partial / "state.json")

    def write(self, rows: np.ndarray, values: Mapping[str, np.ndarray], pooling: Mapping[str, str] | None = None) -> None:
        """Write one block: ``values[layer]`` is ``(len(rows), dim)`` for the sample positions ``rows``
        (a full disk: :class:`~probe.errors.DiskFullError`, the partial directory removed)."""
        needed = sum(self.n * int(np.shape(X)[1]) * 4 for name, X in values.items() if name not in self._maps)
        try:
            with no_space_is_an_error(self.path.parent, needed or None, kept="the partial store was removed"):
                self._write(rows, values, pooling)
        except DiskFullError:
            self.abort()
            raise

    def _write(self, rows: np.ndarray, values: Mapping[str, np.ndarray], pooling: Mapping[str, str] | None) -> None:
        rows = np.asarray(rows, dtype=np.int64)
        for name, X in values.items():
            X = np.asarray(X, dtype=np.float32)
            check_matrix(X, name=f"layer '{name}' for samples {int(rows[0]) if len(rows) else 0}..")
            if name not in self._maps:
                if self.done.any():  # its rows written so far would stay zero
                    raise StoreError(f"layer '{name}' first appears after {int(self.done.sum())} rows were written "
                                     f"without it; every block must hold the same layers {sorted(self._maps)}")
                file = layer_filename(name)
                self._info[name] = {"dim": int(X.shape[1]), "pooling": (pooling or {}).get(name, "none"),
                                    "file": file, "dtype": "float32"}
                self._maps[name] = _new_layer_file(self.partial / LAYERS_DIR / file, (self.n, X.shape[1]))
            self._maps[name][rows] = X
        self.done[rows] = True
        if time.monotonic() - self._synced >= self.sync_every_s:
            self.sync()

    def sync(self) -> None:
        """Flush the written blocks and record them as done (what ``resume`` continues from).

        :meth:`write` syncs at most every ``sync_every_s`` seconds (per-batch syncs cost
        more than a small model's forward); rows written since the last sync are simply
        written again by a resumed run. Flushed pages are then released from this
        process (they stay in the OS page cache), so its memory does not grow with the store.
        """
        for m in self._maps.values():
            m.flush()
            _release(m)
        self._save_state()
        self._synced = time.monotonic()

    def commit(self) -> Store:
        """Check every row was written, fingerprint, and move the store into place."""
        if not self.done.all():
            missing = int((~self.done).sum())
            raise StoreError(f"{missing} of {self.n} samples were never written; resume the run to finish the store")
        if not self._maps:
            raise StoreError("no layer was written; nothing to commit")
        for m in self._maps.values():
            m.flush()
        self._maps.clear()
        for extra in ("state.json", "done.npy"):
            (self.partial / extra).unlink(missing_ok=True)
        if self.resume_key is not None:
            self.provenance["resume_key"] = self.resume_key
        manifest = _manifest(self.n, self._info, self.provenance, self.warnings)
        _finish(self.partial, manifest)
        check_output_path(self.path, self.overwrite, kind=STORE_KIND)
        replace_dir(self.partial, self.path)
        return open_store(self.path)

    def abort(self) -> None:
        """Drop the partial directory."""
        self._maps.clear()
        shutil.rmtree(self.partial, ignore_errors=True)
