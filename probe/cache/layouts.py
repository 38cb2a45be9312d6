"""Layouts on disk: the key naming a layout (inputs, parameters, warm start) and reading and writing it
under ``CACHE_DIR/projections`` (atomic writes, least recently used entries pruned, see
:mod:`probe.cache.directory`)."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from probe import columns as C
from probe.atomic import atomic_file
from probe.cache.directory import keep_within, touch
from probe.latents import Latents

log = logging.getLogger(__name__)

CACHE_VERSION = 1
SUBDIR = "projections"


def _hash_array(a: np.ndarray) -> str:
    a = np.ascontiguousarray(a)
    return hashlib.sha256(str(a.dtype).encode() + str(a.shape).encode() + a.tobytes()).hexdigest()


def latents_fingerprint(latents: Latents) -> str:
    """A content hash of a Latents value not read from a store (matrix and sample ids)."""
    digest = hashlib.sha256()
    for start in range(0, len(latents), 1 << 16):
        digest.update(np.ascontiguousarray(latents.X[start : start + (1 << 16)]).tobytes())
    digest.update("\0".join(latents.meta[C.SAMPLE_ID].astype(str)).encode())
    return digest.hexdigest()


def cache_key(fingerprint: str, layer: str, rows: np.ndarray, params: dict[str, Any],
              warm_from: str | None = None) -> str:
    """The hash naming a cached layout: inputs, parameters and the layout it was warm-started from."""
    payload = {
        "v": CACHE_VERSION,
        "fingerprint": fingerprint,
        "layer": layer,
        "rows": _hash_array(np.asarray(rows, dtype=np.int64)),
        "params": params,
        "warm_from": warm_from,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


def layout_file(cache_dir: str | Path, key: str) -> Path:
    return Path(cache_dir) / SUBDIR / f"{key}.npz"


def read_layout(cache_dir: str | Path | None, key: str) -> tuple[np.ndarray, np.ndarray, dict[str, Any]] | None:
    """``(coords float32, rows int64, info)`` of a cached layout, or None if absent or unreadable."""
    if cache_dir is None:
        return None
    file = layout_file(cache_dir, key)
    if not file.exists():
        return None
    try:
        with np.load(file, allow_pickle=False) as z:
            coords, rows = z["coords"], z["rows"]
            info = json.loads(str(z["info"]))
    except Exception as exc:  # a corrupt cache entry is recomputed, not fatal
        log.warning("ignoring unreadable cached layout %s (%s)", file, exc)
        return None
    touch(file)
    return coords.astype(np.float32), rows.astype(np.int64), info


def write_layout(cache_dir: str | Path | None, key: str, coords: np.ndarray, rows: np.ndarray,
                 info: dict[str, Any]) -> None:
    """Keep a layout under ``key`` (nothing when ``cache_dir`` is None)."""
    if cache_dir is None:
        return
    file = layout_file(cache_dir, key)
    with atomic_file(file) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, coords=coords, rows=rows, info=np.array(json.dumps(info)))
    keep_within(file.parent, keep=file)
