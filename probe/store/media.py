"""Where a store's videos are: the one resolver, confined to the store's dataset roots.

``probe extract`` records each dataset's root in the store's provenance
(``provenance["datasets"][i]["root"]``: absolute, symlinks resolved) and keeps each row's
``video`` relative to the root of the row's ``dataset``. :class:`VideoPaths` turns a row's
``video`` back into a file, for the dashboard, the report and clip export alike:

- a relative value joins its dataset's root, or the root given with ``--data-root NAME=PATH``
  when the dataset has moved;
- an absolute value (stores made before roots were recorded) is taken as it is, or moves
  along with its dataset's root under ``--data-root``;
- the file must resolve (symlinks followed) inside its dataset's root, or inside a folder the
  store recorded as holding that dataset's videos (``media_roots``, e.g. a Hugging Face cache's
  ``blobs/``), and carry a video suffix. Anything else is refused with its reason and never
  opened: a store cannot make the toolkit read, embed or serve ``/etc/passwd``.

Stores made before roots were recorded name a dataset's ``path`` as given on the command
line; it is taken relative to the current directory (a warning says when it is missing).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from probe import columns as C
from probe.errors import ConfigError, DataError
from probe.store.store import Store

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mkv", ".webm", ".avi", ".mov")
FIX = "re-point a moved dataset with --data-root NAME=PATH"


def dataset_root(path: str | Path | None) -> Path | None:
    """The folder a dataset's files lie in (absolute, resolved): the dataset directory, or a dataset file's folder."""
    if path is None or str(path) == "":
        return None
    p = Path(path)
    return (p.parent if _names_a_file(p) else p).resolve()


def _names_a_file(path: Path) -> bool:
    return path.is_file() or (not path.exists() and bool(path.suffix))


def store_video(value: str, roots: Sequence[Path]) -> str:
    """How a store records a video file: relative to the first of ``roots`` holding it, else absolute."""
    if not value:
        return ""
    path = Path(os.path.abspath(value))
    for root in roots:
        if path.is_relative_to(root):
            return path.relative_to(root).as_posix()
    return str(path)


def media_roots(root: Path, values: Iterable[str]) -> list[str]:
    """Folders outside ``root`` holding the dataset's videos once symlinks are followed (recorded to stay readable)."""
    out = set()
    for value in set(values):
        if value:
            real = (Path(value) if os.path.isabs(value) else root / value).resolve()
            if not real.is_relative_to(root):
                out.add(str(real.parent))
    return sorted(out)


def video_roots(meta: pd.DataFrame) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Roots for a table whose ``video`` column names files (``probe import``): per dataset, the folder
    holding all its existing videos (resolved), and the column made relative to it.

    Relative values are taken from the current directory. A dataset whose videos share no
    folder but the file system's root gets no root (its videos are then not shown unless
    ``--data-root`` names one).
    """
    if C.VIDEO not in meta.columns:
        return meta, []
    meta = meta.copy()
    values = meta[C.VIDEO].astype("string").fillna("")
    entries = []
    for name in meta[C.DATASET].astype(str).unique():
        rows = (meta[C.DATASET].astype(str) == name).to_numpy()
        files = [Path(os.path.abspath(v)) for v in values[rows].unique() if v and os.path.isfile(v)]
        if not files:
            continue
        root = Path(os.path.commonpath([str(f.resolve().parent) for f in files]))
        given = Path(os.path.commonpath([str(f.parent) for f in files]))
        if root == Path(root.anchor):
            continue
        entries.append({"name": name, "root": str(root)})
        named = rows & (values != "").to_numpy()
        meta.loc[named, C.VIDEO] = [store_video(v, [given, root]) for v in values[named]]
    return meta, entries


def parse_data_roots(items: Sequence[str] | None) -> dict[str, Path]:
    """``NAME=PATH`` strings (``--data-root``) as dataset name -> existing directory."""
    out: dict[str, Path] = {}
    for item in items or ():
        name, sep, path = item.partition("=")
        name = name.strip()
        if not sep or not name or not path:
            raise ConfigError(f"--data-root expects NAME=PATH (NAME: a value of the store's 'dataset' column), "
                              f"e.g. human=/data/human; got {item!r}")
        if name in out:
            raise ConfigError(f"--data-root names dataset '{name}' twice; give each dataset one root")
        if not Path(path).is_dir():
            raise ConfigError(f"--data-root {name}={path}: '{path}' is not a directory; give the folder the "
                              f"dataset '{name}' now lives in")
        out[name] = Path(path).resolve()
    return out


def dataset_names(store: Store) -> list[str]:
    """Dataset names of a store: those its provenance records, then those of its ``dataset`` column."""
    names = [str(d.get("name")) for d in store.provenance.get("datasets") or [] if isinstance(d, Mapping)]
    if C.DATASET in store.meta.columns:
        names += store.meta[C.DATASET].astype(str).unique().tolist()
    return list(dict.fromkeys(names))


def check_data_roots(data_roots: Mapping[str, Any] | None, stores: Sequence[Store]) -> None:
    """Raise :class:`ConfigError` when ``--data-root`` names a dataset no store holds."""
    known = list(dict.fromkeys(n for s in stores for n in dataset_names(s)))
    unknown = [n for n in data_roots or {} if n not in known]
    if unknown:
        raise ConfigError(f"--data-root names dataset '{unknown[0]}', which the store(s) do not hold; "
                          f"known datasets: {', '.join(known) or 'none'}")


class VideoFile(NamedTuple):
    """A row's video: its file, or why there is none (``refused``: it names a file the toolkit will not open)."""

    path: Path | None
    problem: str | None = None
    refused: bool = False


@dataclass(frozen=True)
class _Root:
    root: Path | None  # where relative videos are looked for now
    recorded: Path | None  # the root the store recorded (resolved against the current directory if relative)
    recorded_parts: tuple[str, ...]  # a relative recorded root, as given (to move old absolute paths)
    allowed: tuple[Path, ...]  # resolved folders the videos may lie in


class VideoPaths:
    """A store's videos as files, confined to its dataset roots (see the module docstring).

    ``data_roots`` maps dataset names to the folders those datasets now live in
    (``--data-root``); names the store does not hold are ignored here (see
    :func:`check_data_roots`). :attr:`warnings` lists recorded roots that do not exist.
    """

    def __init__(self, store: Store, data_roots: Mapping[str, str | Path] | None = None) -> None:
        self.store = store
        self.warnings: list[str] = []
        overrides = {name: Path(p).resolve() for name, p in (data_roots or {}).items()}
        self.roots: dict[str, _Root] = {}
        for entry in store.provenance.get("datasets") or []:
            if isinstance(entry, Mapping) and entry.get("name") is not None:
                name = str(entry["name"])
                self.roots[name] = self._root(name, entry, overrides.get(name))
        for name in dataset_names(store):
            if name not in self.roots and name in overrides:
                self.roots[name] = _Root(overrides[name], None, (), (overrides[name],))

    def _root(self, name: str, entry: Mapping[str, Any], override: Path | None) -> _Root:
        given = entry.get("root") or entry.get("path")
        parts: tuple[str, ...] = ()
        recorded = None
        if given:
            if not os.path.isabs(str(given)):  # stores made before roots were recorded: as given on the command line
                parts = Path(os.path.normpath(str(given))).parts
            recorded = Path(str(given)).resolve() if entry.get("root") else dataset_root(str(given))
            if not entry.get("root") and parts and _names_a_file(Path(str(given))):
                parts = parts[:-1]  # the recorded path was a dataset file: its folder is the root
        extra = tuple(Path(str(p)).resolve() for p in entry.get("media_roots") or [])
        root = override or recorded
        if override is None and recorded is not None and not recorded.is_dir():
            where = " (recorded relative to the directory the store was made in)" if parts else ""
            self.warnings.append(f"store '{self.store.path}': root '{given}' of dataset '{name}' does not exist"
                                 f"{where}; its videos are not shown: pass --data-root {name}=PATH")
        return _Root(root, recorded, parts, ((root,) if root is not None else ()) + extra)

    def _locate(self, value: str, entry: _Root) -> Path:
        path = Path(value)
        if not path.is_absolute():
            return entry.root / path  # type: ignore[operator]  (checked by the caller)
        if entry.root is not None and entry.root != entry.recorded:  # an override moves old absolute paths along
            if entry.recorded is not None and path.is_relative_to(entry.recorded):
                return entry.root / path.relative_to(entry.recorded)
            n = len(entry.recorded_parts)
            for i in range(len(path.parts) - n, 0, -1):
                if n and path.parts[i : i + n] == entry.recorded_parts:
                    return entry.root.joinpath(*path.parts[i + n :])
        return path

    def find(self, value: Any, dataset: Any) -> VideoFile:
        """The file of a row's ``video`` value in dataset ``dataset`` (``VideoFile(None)`` when the row has none)."""
        if value is None or (isinstance(value, float) and math.isnan(value)) or str(value) == "":
            return VideoFile(None)
        value = str(value)
        if Path(value).suffix.lower() not in VIDEO_SUFFIXES:
            return VideoFile(None, f"'{value}' is not a video file ({', '.join(VIDEO_SUFFIXES)})", True)
        entry = self.roots.get(str(dataset))
        if entry is None or entry.root is None:
            return VideoFile(None, f"'{value}': the store records no root for dataset '{dataset}' "
                                   f"(pass --data-root {dataset}=PATH)", True)
        real = self._locate(value, entry).resolve()
        if not any(real.is_relative_to(a) for a in entry.allowed):
            return VideoFile(None, f"'{value}' lies outside the root of dataset '{dataset}' ({entry.root})", True)
        if real.suffix and real.suffix.lower() not in VIDEO_SUFFIXES:
            return VideoFile(None, f"'{value}' leads to '{real.name}', which is not a video file", True)
        if not real.is_file():
            return VideoFile(None, f"video '{real}' of dataset '{dataset}' does not exist")
        return VideoFile(real)

    def path(self, value: Any, dataset: Any) -> Path | None:
        """Like :meth:`find`, but a refused or missing video raises :class:`DataError` (None: the row has no video)."""
        found = self.find(value, dataset)
        if found.problem is not None:
            fix = f"only video files inside the store's dataset roots are read ({FIX})" if found.refused else \
                f"{FIX}, or move the videos back"
            raise DataError(f"store '{self.store.path}': {found.problem}; {fix}")
        return found.path
