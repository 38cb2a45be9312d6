"""The toolkit's cache directory: where it is, what each part holds, how big it is, and clearing it.

``$PROBE_CACHE_DIR`` (default ``~/.cache/embodiment-probe``) holds results that are
dear to compute and cheap to keep, each keyed by what it was computed from, so that
stale entries are never served. Anything there may be deleted at any time: it is
computed again when needed. ``probe cache`` shows and clears it.

Each part is bounded: the frame cache by ``--frame-cache-max``, every other part by
``$PROBE_CACHE_MAX`` (default 20 GB each), but for numba's few MB of compiled code
(:func:`use_numba_cache`). :func:`keep_within` removes a part's least
recently used entries (files, or directories such as a FAISS index) once it passes its
limit; readers :func:`touch` what they use, so recency is last use, not creation.

The root carries a ``CACHEDIR.TAG`` (the Cache Directory Tagging spec, https://bford.info/cachedir/:
backup tools skip the directory), written when the toolkit first writes a part there. Clearing
deletes only under a directory that is the toolkit's cache: tagged by it, or (a cache of an older
version, before the tag) holding nothing but the parts and files the toolkit writes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from probe.errors import ConfigError
from probe.sizes import format_bytes

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
    "numba": "numba's compiled code: LISI kernels, UMAP (every command; small, not bounded)",
}


CACHEDIR_TAG = "CACHEDIR.TAG"
TAG_SIGNATURE = "Signature: 8a477f597d28d172789f06886806bc55"  # fixed by the spec
TAG_TEXT = (f"{TAG_SIGNATURE}\n# This file is a cache directory tag created by embodiment-probe ('probe cache').\n"
            "# For information about cache directory tags, see https://bford.info/cachedir/\n")

# what each part holds, for recognising a cache written before the tag (paths relative to the part)
_HEX = "[0-9a-f]"
_ENTRIES: dict[str, str] = {
    "frames": rf"{_HEX}{{2}}/{_HEX}{{64}}\.npy",
    "graphs": rf"{_HEX}{{24}}\.npz",
    "projections": rf"{_HEX}{{32}}\.npz",
    "metrics": rf"{_HEX}{{24}}\.json",
    "dashboard-indexes": rf"{_HEX}{{16}}-[^/]+/(index\.json|index\.faiss|rows\.npy)",
    "dashboard-coverage": rf"{_HEX}{{24}}\.json",
    "numba": r".+\.nb[ci]",  # numba's index and code files, in a folder per source folder
}
_TEMPORARY = re.compile(r"(.*/)?\.[^/]+\.(tmp|old)-[^/]*(/.*)?")  # an atomic write's temporary, or its leftover


def mark_cache_dir(root: str | Path) -> None:
    """Tag ``root`` as this toolkit's cache directory (``CACHEDIR.TAG``) unless it is already."""
    tag = Path(root) / CACHEDIR_TAG
    if tag.is_file():
        return
    from probe.atomic import write_text

    try:
        write_text(tag, TAG_TEXT)
    except OSError as exc:  # a read-only cache is still read
        log.debug("could not tag the cache directory '%s': %s", root, exc)


def _tagged(root: Path) -> bool:
    try:
        with open(root / CACHEDIR_TAG, encoding="utf-8", errors="replace") as fh:
            text = fh.read(4096)
    except OSError:
        return False
    return text.startswith(TAG_SIGNATURE) and "embodiment-probe" in text


def _foreign_entry(root: Path) -> str | None:
    """The first entry under ``root`` that this toolkit's cache would not hold, or None."""
    for entry in sorted(root.iterdir()):
        if entry.name == CACHEDIR_TAG or _TEMPORARY.fullmatch(entry.name):
            continue
        if entry.name not in _ENTRIES or not entry.is_dir() or entry.is_symlink():
            return entry.name
        pattern = re.compile(_ENTRIES[entry.name])
        for dirpath, _, names in os.walk(entry):
            for name in names:
                rel = os.path.relpath(os.path.join(dirpath, name), entry).replace(os.sep, "/")
                if not (pattern.fullmatch(rel) or _TEMPORARY.fullmatch(rel) or name == CACHEDIR_TAG):
                    return f"{entry.name}/{rel}"
    return None


def check_cache_dir(root: str | Path) -> None:
    """Refuse to clear a directory that is not this toolkit's cache (see the module's docstring)."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise ConfigError(f"cache directory '{root}' is a file; pass the cache's directory (default "
                          f"$PROBE_CACHE_DIR or ~/.cache/embodiment-probe)")
    if not root.is_dir() or _tagged(root):
        return
    foreign = _foreign_entry(root)
    if foreign is not None:
        raise ConfigError(f"'{root}' is not a probe cache directory: it has no {CACHEDIR_TAG} written by the "
                          f"toolkit and holds '{foreign}', which the toolkit does not write; nothing was deleted: "
                          "pass the cache's own directory (default $PROBE_CACHE_DIR or ~/.cache/embodiment-probe)")
    mark_cache_dir(root)  # an older version's cache: tagged from now on


NUMBA_CACHE_ENV = "NUMBA_CACHE_DIR"


def use_numba_cache(root: str | Path) -> Path:
    """Send numba's cache of compiled code (``njit(cache=True)``: the LISI kernels of ``metrics/lisi.py``, UMAP)
    to ``root/numba`` instead of beside the installed sources, unless ``$NUMBA_CACHE_DIR`` is set already.

    Sets ``$NUMBA_CACHE_DIR`` (so processes started later inherit it); numba reads it when a cached function
    is defined, so call it before ``metrics`` or ``umap`` is imported. Returns the folder numba uses.
    """
    if os.environ.get(NUMBA_CACHE_ENV):
        return Path(os.environ[NUMBA_CACHE_ENV])
    folder = Path(root) / "numba"
    os.environ[NUMBA_CACHE_ENV] = str(folder)
    return folder


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
    if root.exists() and not root.is_dir():
        raise ConfigError(f"cache directory '{root}' is a file; pass the cache's directory (default "
                          f"$PROBE_CACHE_DIR or ~/.cache/embodiment-probe)")
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
    else under ``root``); returns the bytes really freed.

    Refuses a ``root`` that is not this toolkit's cache (:func:`check_cache_dir`), and fails when
    nothing could be deleted (a read-only cache); entries that could not be deleted are logged.
    """
    root = Path(root) if root is not None else default_cache_dir()
    usage = {u.kind: u for u in cache_usage(root)}
    wanted = list(usage) if kinds is None else list(dict.fromkeys(kinds))
    unknown = [k for k in wanted if k not in usage]
    if unknown:
        raise ConfigError(f"unknown cache part(s) {unknown}; the cache's parts are {sorted(usage)}")
    check_cache_dir(root)
    failures: list[OSError] = []
    for kind in wanted:
        if usage[kind].path.is_dir():
            _remove_tree(usage[kind].path, failures)
    after = {u.kind: u.bytes for u in cache_usage(root)}
    freed = sum(usage[kind].bytes - after[kind] for kind in wanted)
    if failures:
        first = failures[0]
        why = f"{first.strerror or first} ('{first.filename}')"
        if freed <= 0:
            raise ConfigError(f"could not delete anything under '{root}': {why}; check the cache directory's "
                              "permissions (or whether its file system is read-only)")
        log.warning("freed %s, but %d entries under '%s' could not be deleted (first: %s)", format_bytes(freed),
                    len(failures), root, why)
    return freed


def _remove_tree(path: Path, failures: list[OSError]) -> None:
    """Delete ``path`` and everything under it, collecting what could not be deleted."""
    for dirpath, dirnames, filenames in os.walk(path, topdown=False):
        for name in filenames + dirnames:
            entry = os.path.join(dirpath, name)
            try:
                if os.path.isdir(entry) and not os.path.islink(entry):
                    os.rmdir(entry)
                else:
                    os.unlink(entry)
            except OSError as exc:
                failures.append(exc)
    try:
        os.rmdir(path)
    except OSError as exc:
        if not failures:  # else it is not empty because of them: said already
            failures.append(exc)


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
    if part.is_dir():
        mark_cache_dir(part.parent)  # every write into a part ends here: the root is the toolkit's cache
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
