"""Decoded video frames kept on disk, so that the next extraction over the same data does not decode again.

Comparing checkpoints means extracting the same frames many times: every new
checkpoint of a training run, another choice of layers, a resumed run. Decoding
is the dearest part of reading (a 64x64 H.264 frame costs about 95 us of reading
thread, about what the world policy's forward costs on one core, and 24 us from
this cache: ``benchmarks/RESULTS.md``), so :func:`probe.readers.video.decode_at` looks its
result up here first while a :class:`FrameCache` is active (:func:`use_frame_cache`).

An entry is the uint8 RGB array one ``decode_at`` call returns, stored as ``.npy``
and keyed by the video file (absolute path, size, modification time), the wanted
times, the output size, the tolerance and :data:`FORMAT_VERSION` (bumped whenever
decoding or colour conversion changes), so an edited video or a changed decoder
never serves stale frames. Entries are written atomically (temporary file, then
rename); an unreadable entry is removed and decoded again. Past ``max_bytes`` the
least recently used entries go.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from probe.atomic import atomic_file
from probe.cache.directory import mark_cache_dir, remove_if_stale, touch

log = logging.getLogger(__name__)

FORMAT_VERSION = 2  # bump when decode_at's output for the same inputs changes
DEFAULT_MAX_BYTES = 10 * 10**9

_ACTIVE: contextvars.ContextVar[FrameCache | None] = contextvars.ContextVar("probe_frame_cache", default=None)


class FrameCache:
    """A directory of decoded frame arrays with a size limit (least recently used entries evicted).

    Safe to share between threads and processes: entries are immutable once renamed
    into place, and two writers of one entry write the same bytes.
    """

    def __init__(self, root: str | Path, max_bytes: int = DEFAULT_MAX_BYTES, *, tag: str | Path | None = None) -> None:
        self.root = Path(root).expanduser()
        self.max_bytes = int(max_bytes)
        self.tag = Path(tag) if tag is not None else None  # the cache root, tagged as such on the first write
        self._tagged = tag is None
        self.hits = 0
        self.misses = 0
        self._bytes: int | None = None  # running total, scanned on first write
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"FrameCache({str(self.root)!r}, max_bytes={self.max_bytes})"

    # -- keys and entries -------------------------------------------------------------------------

    @staticmethod
    def key(path: str | Path, timestamps: np.ndarray, size: tuple[int, int] | None,
            tolerance_s: float | None) -> str | None:
        """The entry name of one ``decode_at`` call, or None when the video cannot be stat'ed."""
        try:
            st = os.stat(path)
        except OSError:
            return None
        ts = np.ascontiguousarray(timestamps, dtype=np.float64)
        ident = json.dumps([FORMAT_VERSION, os.path.abspath(path), st.st_size, st.st_mtime_ns,
                            None if size is None else [int(s) for s in size],
                            None if tolerance_s is None else float(tolerance_s),
                            hashlib.sha256(ts.tobytes()).hexdigest(), len(ts)])
        return hashlib.sha256(ident.encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npy"

    def get(self, key: str) -> np.ndarray | None:
        """The cached frames (an in-memory copy), or None; a damaged entry is removed."""
        path = self._path(key)
        try:
            frames = _read_uint8_npy(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except (OSError, ValueError, EOFError) as exc:
            log.warning("frame cache entry '%s' is unreadable (%s); decoding again", path, exc)
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        touch(path)  # recently used
        return frames

    def put(self, key: str, frames: np.ndarray) -> None:
        """Store ``frames`` under ``key`` (atomically), then evict past the size limit.

        A cache that cannot be written (disk full, read-only) logs a warning and is
        otherwise ignored: extraction does not depend on it.
        """
        path = self._path(key)
        try:
            with atomic_file(path) as tmp, open(tmp, "wb") as f:
                np.save(f, np.ascontiguousarray(frames), allow_pickle=False)
        except OSError as exc:
            log.warning("could not write to the frame cache '%s' (%s); frames will be decoded again next time",
                        self.root, exc)
            return
        if not self._tagged:
            mark_cache_dir(self.tag)
            self._tagged = True
        with self._lock:
            if self._bytes is None:
                self._bytes = self.size_bytes()
            else:
                with contextlib.suppress(OSError):  # evicted meanwhile by another process
                    self._bytes += path.stat().st_size
            over = self._bytes > self.max_bytes
        if over:
            self.evict()

    def fetch(self, path: str | Path, timestamps: np.ndarray, size: tuple[int, int] | None,
              tolerance_s: float | None, decode: Callable[[], np.ndarray]) -> np.ndarray:
        """The frames of one ``decode_at`` call: from the cache, else ``decode()`` and keep them."""
        key = self.key(path, timestamps, size, tolerance_s)
        if key is not None:
            frames = self.get(key)
            if frames is not None:
                self.hits += 1
                return frames
        frames = decode()
        self.misses += 1
        if key is not None:
            self.put(key, frames)
        return frames

    # -- size and eviction ------------------------------------------------------------------------

    def _entries(self) -> list[tuple[Path, os.stat_result]]:
        out: list[tuple[Path, os.stat_result]] = []
        if not self.root.is_dir():
            return out
        for shard in self.root.iterdir():
            if not shard.is_dir():
                continue
            for entry in shard.iterdir():
                if entry.name.startswith("."):  # a write in progress, or a killed one's leftover
                    remove_if_stale(entry)
                elif entry.suffix == ".npy":
                    with contextlib.suppress(OSError):
                        out.append((entry, entry.stat()))
        return out

    def size_bytes(self) -> int:
        """Bytes the cache's entries take on disk now."""
        return int(sum(st.st_size for _, st in self._entries()))

    def evict(self, target: int | None = None) -> int:
        """Remove least recently used entries until at most ``target`` bytes remain
        (default :data:`probe.cache.directory.PRUNE_TO` of ``max_bytes``); returns the bytes removed."""
        from probe.cache.directory import PRUNE_TO, remove_least_recent

        target = int(PRUNE_TO * self.max_bytes) if target is None else int(target)
        entries = [(st.st_mtime_ns, st.st_size, entry) for entry, st in self._entries()]
        removed = remove_least_recent(entries, target)
        with self._lock:
            self._bytes = sum(size for _, size, _ in entries) - removed
        if removed:
            log.info("frame cache '%s': evicted %.1f MB of least recently used frames", self.root, removed / 1e6)
        return removed

    def clear(self) -> None:
        """Remove every entry."""
        self.evict(target=0)


_HEADER = re.compile(rb"\{'descr': '\|u1', 'fortran_order': False, 'shape': \(([0-9, ]*)\), \}")


def _read_uint8_npy(path: Path) -> np.ndarray:
    """A C-ordered uint8 ``.npy`` file as :func:`numpy.load` reads it, without parsing its header as
    Python (the common case: the header np.save writes for such arrays); anything else goes to np.load."""
    with open(path, "rb") as f:
        head = f.read(128)
        if head[:8] == b"\x93NUMPY\x01\x00" and len(head) >= 10:
            end = 10 + int.from_bytes(head[8:10], "little")
            match = _HEADER.match(head[10:end]) if end <= len(head) else None
            if match is not None:
                shape = tuple(int(x) for x in match.group(1).split(b",") if x.strip())
                count = int(np.prod(shape)) if shape else 1
                f.seek(end)
                data = np.fromfile(f, dtype=np.uint8, count=count)
                if data.size != count:
                    raise ValueError(f"truncated: {data.size} of {count} bytes")
                return data.reshape(shape)
    return np.load(path, allow_pickle=False)


def default_frame_cache(max_bytes: int = DEFAULT_MAX_BYTES) -> FrameCache:
    """The frame cache under the toolkit's cache directory (``$PROBE_CACHE_DIR/frames``)."""
    from probe.cache.directory import default_cache_dir

    return FrameCache(default_cache_dir() / "frames", max_bytes, tag=default_cache_dir())


def active_frame_cache() -> FrameCache | None:
    """The cache ``decode_at`` consults in this context (None: decode every time)."""
    return _ACTIVE.get()


@contextlib.contextmanager
def use_frame_cache(cache: FrameCache | None) -> Iterator[FrameCache | None]:
    """Make ``decode_at`` consult ``cache`` inside the block (None: no cache).

    The setting is a context variable: threads started inside the block see it only
    when they run in a copy of this context (as :func:`probe.extraction.batches.prefetch` does).
    """
    token = _ACTIVE.set(cache)
    try:
        yield cache
    finally:
        _ACTIVE.reset(token)


def frame_cache_for(setting: str | None, max_bytes: int) -> FrameCache | None:
    """The frame cache a setting asks for: None or ``'off'`` (none), ``'auto'`` (the default one under the
    toolkit's cache directory), or a directory."""
    if setting is None or str(setting).strip().lower() in ("", "off", "none"):
        return None
    if setting == "auto":
        return default_frame_cache(int(max_bytes))
    return FrameCache(setting, int(max_bytes))


def activate_frame_cache(cache: FrameCache | None) -> None:
    """Make ``cache`` the active frame cache of this context for good (a reader process's, at its start);
    :func:`use_frame_cache` is the scoped form."""
    _ACTIVE.set(cache)
