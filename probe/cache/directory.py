"""The toolkit's cache directory: where it is, what each part holds, how big it is, and clearing it.

``$PROBE_CACHE_DIR`` (default ``~/.cache/embodiment-probe``) holds results that are
dear to compute and cheap to keep, each keyed by what it was computed from, so that
stale entries are never served. Anything there may be deleted at any time: it is
computed again when needed. ``probe cache`` shows and clears it.

Each part is bounded: the frame cache by ``--frame-cache-max``, every other part by
``$PROBE_CACHE_MAX`` (default 20 GB each). :func:`keep_within` removes a part's least
recently used entries (files, or directories such as a FAISS index) once it passes its
limit; readers :func:`touch` what they use, so recency is last use, not creation.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from probe.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_CACHE_ENV = "PROBE_CACHE_DIR"
CACHE_MAX_ENV = "PROBE_CACHE_MAX"
DEFAULT_PART_MAX = 20 * 10**9  # bytes per part (graphs, projections, ...); frames have --frame-cache-max
PRUNE_TO = 0.8  # once past its limit, a part is pruned down to this fraction of it

# subdirectory -> what it holds (who writes it)
KINDS: dict[str, str] = {
    "frames": "decoded video frames (probe extract; bounded by --frame-cache-max)",
    "graphs": "kNN graphs shared by metrics, layouts and the dashboard",
    "projections": "2-D layouts (probe report, serve, export)",
    "metrics": "metric results per store and layer (probe report, serve)",
    "dashboard-indexes": "FAISS indexes for the dashboard's neighbour search",
    "dashboard-coverage": "coverage summaries shown by the dashboard",
}


def default_cache_dir() -> Path:
    """``$PROBE_CACHE_DIR`` or ``~/.cache/embodiment-probe`` (read when called, not at import)."""
    env = os.environ.get(DEFAULT_CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "embodiment-probe"


@dataclass(frozen=True)
class CacheUsage:
    """One part of the cache directory and the disk space its files take."""

    kind: str
    path: Path
    files: int
    bytes: int
    what: str


def cache_usage(root: str | Path | None = None) -> list[CacheUsage]:
    """Files and bytes of every part of the cache this toolkit writes (:data:`KINDS`).

    Other directories under ``root`` are not the toolkit's (a mistyped ``--cache-dir``
    may point at a home directory): they are neither listed nor ever cleared.
    """
    root = Path(root) if root is not None else default_cache_dir()
    out = []
    for kind in KINDS:
        path = root / kind
        files = size = 0
        if path.is_dir():
            for dirpath, _, names in os.walk(path):
                for name in names:
                    try:
                        size += os.stat(os.path.join(dirpath, name)).st_size
                        files += 1
                    except OSError:  # removed meanwhile
                        pass
        out.append(CacheUsage(kind, path, files, size, KINDS[kind]))
    return out


def clear_cache(kinds: Iterable[str] | None = None, root: str | Path | None = None) -> int:
    """Delete the named parts of the cache (every part of :data:`KINDS` when ``kinds`` is None, nothing
    else under ``root``); returns the bytes freed."""
    usage = {u.kind: u for u in cache_usage(root)}
    wanted = list(usage) if kinds is None else list(dict.fromkeys(kinds))
    unknown = [k for k in wanted if k not in usage]
    if unknown:
        raise ConfigError(f"unknown cache part(s) {unknown}; the cache's parts are {sorted(usage)}")
    freed = 0
    for kind in wanted:
        if usage[kind].path.is_dir():
            shutil.rmtree(usage[kind].path, ignore_errors=True)
            freed += usage[kind].bytes
    return freed


def part_limit() -> int:
    """The byte limit of each cache part but frames: ``$PROBE_CACHE_MAX`` (e.g. ``5GB``) or 20 GB."""
    from probe.sizes import parse_bytes

    raw = os.environ.get(CACHE_MAX_ENV, "").strip()
    limit = parse_bytes(raw, f"${CACHE_MAX_ENV}") if raw else None
    return DEFAULT_PART_MAX if limit is None else int(limit)  # unset or 'auto': the default


def touch(path: str | Path) -> None:
    """Mark a cache entry as just used (its mtime), so that :func:`keep_within` removes it last."""
    with contextlib.suppress(OSError):
        os.utime(path)


def _size(path: Path) -> int:
    if not path.is_dir():
        return path.stat().st_size
    total = 0
    for dirpath, _, names in os.walk(path):
        for name in names:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(dirpath, name)).st_size
    return total


def keep_within(part: str | Path, max_bytes: int | None = None, *, keep: str | Path | None = None) -> int:
    """Remove the least recently used entries of one cache part while it holds more than ``max_bytes``
    (default :func:`part_limit`), down to ``PRUNE_TO`` of it; ``keep`` (the entry just written) stays.
    Returns the bytes freed."""
    part = Path(part)
    limit = part_limit() if max_bytes is None else int(max_bytes)
    entries = []
    with contextlib.suppress(OSError):
        for entry in part.iterdir():
            if entry.name.startswith("."):  # a write in progress, or one a killed process left
                remove_if_stale(entry)
                continue
            with contextlib.suppress(OSError):  # removed meanwhile by another process
                entries.append((entry.stat().st_mtime, _size(entry), entry))
    total = sum(size for _, size, _ in entries)
    if total <= limit:
        return 0
    freed = remove_least_recent(entries, int(PRUNE_TO * limit), keep=keep)
    if freed:
        log.info("cache '%s': removed %.1f MB of least recently used entries (limit %.1f MB)", part, freed / 1e6,
                 limit / 1e6)
    return freed


STALE_S = 24 * 3600  # a temporary entry this old belongs to a write that was killed


def remove_if_stale(entry: Path) -> None:
    """Remove a temporary cache entry (file or directory) older than :data:`STALE_S`: a killed write's."""
    with contextlib.suppress(OSError):
        if time.time() - entry.stat().st_mtime > STALE_S:
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink()
            log.info("cache: removed '%s', left by an interrupted write", entry)


def remove_least_recent(entries: Iterable[tuple[float, int, Path]], target: int, *,
                        keep: str | Path | None = None) -> int:
    """Remove ``(mtime, bytes, path)`` entries, oldest first, until at most ``target`` bytes remain;
    ``keep`` stays whatever its age. Returns the bytes removed (entries another process removed first
    count as removed)."""
    entries = sorted(entries, key=lambda e: e[0])
    total = sum(size for _, size, _ in entries)
    keep = Path(keep).resolve() if keep is not None else None
    freed = 0
    for _, size, entry in entries:
        if total - freed <= target:
            break
        if keep is not None and entry.resolve() == keep:
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                entry.unlink()
        freed += size
    return freed
