"""The toolkit's cache directory: where it is, what each part holds, how big it is, and clearing it.

``$PROBE_CACHE_DIR`` (default ``~/.cache/embodiment-probe``) holds results that are
dear to compute and cheap to keep, each keyed by what it was computed from, so that
stale entries are never served. Anything there may be deleted at any time: it is
computed again when needed. ``probe cache`` shows and clears it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from probe.errors import ConfigError

DEFAULT_CACHE_ENV = "PROBE_CACHE_DIR"

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
    """Files and bytes of every part of the cache (known parts first, then any other directory there)."""
    root = Path(root) if root is not None else default_cache_dir()
    others = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name not in KINDS) if root.is_dir() else []
    out = []
    for kind in [*KINDS, *others]:
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
        out.append(CacheUsage(kind, path, files, size, KINDS.get(kind, "(not written by this version)")))
    return out


def clear_cache(kinds: Iterable[str] | None = None, root: str | Path | None = None) -> int:
    """Delete the named parts of the cache (all when ``kinds`` is None); returns the bytes freed."""
    usage = {u.kind: u for u in cache_usage(root)}
    wanted = list(usage) if kinds is None else list(dict.fromkeys(kinds))
    unknown = [k for k in wanted if k not in usage]
    if unknown:
        raise ConfigError(f"unknown cache part(s) {unknown}; the cache holds {sorted(usage)}")
    freed = 0
    for kind in wanted:
        if usage[kind].path.is_dir():
            shutil.rmtree(usage[kind].path, ignore_errors=True)
            freed += usage[kind].bytes
    return freed
