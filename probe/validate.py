"""Validation at the boundary: every check on user input lives here.

Each function raises an error from :mod:`probe.errors` whose message says what was
expected, what was found and how to fix it.
"""

from __future__ import annotations

import difflib
import fnmatch
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from probe import columns as C
from probe.dataset_folders import KEYPOINTS, enclosing_dataset
from probe.errors import ConfigError, LatentsError, LayerNotFoundError, OutputExistsError, OutputPathError

_FINITE_CHUNK = 1 << 16  # rows checked at a time, so memory-mapped layers stay cheap


def check_matrix(X: np.ndarray, *, name: str = "latents") -> None:
    """Check that ``X`` is a 2-D float32 matrix of finite values."""
    if not isinstance(X, np.ndarray):
        raise LatentsError(f"{name}: expected a numpy array, got {type(X).__name__}")
    if X.ndim != 2:
        raise LatentsError(
            f"{name}: expected a 2-D matrix (n_samples, dim), got shape {X.shape}; "
            "pool token or spatial outputs to one vector per sample first"
        )
    if X.shape[1] == 0:
        raise LatentsError(f"{name}: latents have width 0 (shape {X.shape}); each sample needs a vector of at "
                           "least one value")
    if X.dtype != np.float32:
        raise LatentsError(
            f"{name}: expected dtype float32, got {X.dtype}; convert with X.astype(np.float32)"
        )
    for start in range(0, X.shape[0], _FINITE_CHUNK):
        block = X[start : start + _FINITE_CHUNK]
        if not np.isfinite(block).all():
            bad = np.flatnonzero(~np.isfinite(block).all(axis=1))
            rows = ", ".join(str(start + int(r)) for r in bad[:5])
            raise LatentsError(
                f"{name}: {len(bad)}+ rows hold NaN or Inf values (first rows: {rows}); "
                "check the model's outputs for these samples or drop them before writing"
            )


def check_meta(meta: pd.DataFrame, n: int | None = None, *, name: str = "meta") -> None:
    """Check required columns, their dtypes, unique sample ids and the row count."""
    if not isinstance(meta, pd.DataFrame):
        raise LatentsError(f"{name}: expected a pandas DataFrame, got {type(meta).__name__}")
    missing = [c for c in C.REQUIRED if c not in meta.columns]
    if missing:
        raise LatentsError(
            f"{name}: missing required column(s) {missing}; a store needs "
            f"{list(C.REQUIRED)} (see 'Latent store format' in the README)"
        )
    if n is not None and len(meta) != n:
        raise LatentsError(
            f"{name}: has {len(meta)} rows but the latent matrix has {n}; "
            "they must be row-aligned (one metadata row per latent vector)"
        )
    for col in C.INT_COLUMNS:
        if not pd.api.types.is_integer_dtype(meta[col]):
            raise LatentsError(
                f"{name}: column '{col}' must hold integers, got dtype {meta[col].dtype}"
            )
    for col in C.FLOAT_COLUMNS:
        if not pd.api.types.is_numeric_dtype(meta[col]) or pd.api.types.is_bool_dtype(meta[col]):
            raise LatentsError(
                f"{name}: column '{col}' must hold numbers, got dtype {meta[col].dtype}"
            )
        if meta[col].isna().any():
            raise LatentsError(f"{name}: column '{col}' has missing values")
    for col in C.STRING_COLUMNS:
        if meta[col].isna().any():
            raise LatentsError(f"{name}: column '{col}' has missing values")
        if not (pd.api.types.is_string_dtype(meta[col]) or pd.api.types.is_object_dtype(meta[col])):
            raise LatentsError(
                f"{name}: column '{col}' must hold strings, got dtype {meta[col].dtype}; "
                f"convert with meta['{col}'] = meta['{col}'].astype(str)"
            )
    for col in (C.PROGRESS, C.STAGE_PROGRESS):
        values = meta[col].to_numpy(dtype=np.float64)
        if len(values) and (values.min() < 0.0 or values.max() > 1.0):
            raise LatentsError(
                f"{name}: column '{col}' must lie in [0, 1], got range "
                f"[{values.min():.3g}, {values.max():.3g}]"
            )
    dup = meta[C.SAMPLE_ID].duplicated()
    if dup.any():
        first = meta.loc[dup, C.SAMPLE_ID].iloc[0]
        raise LatentsError(
            f"{name}: column '{C.SAMPLE_ID}' must be unique, but {int(dup.sum())} ids repeat "
            f"(first: {first!r}); make ids unique, e.g. '<dataset>/<episode>/<frame>'"
        )


def close_matches(name: str, choices: Iterable[str], n: int = 5) -> list[str]:
    """The ``n`` names in ``choices`` that look most like ``name``."""
    choices = list(choices)
    found = difflib.get_close_matches(name, choices, n=n, cutoff=0.4)
    if len(found) < n:
        found += [c for c in choices if name in c and c not in found][: n - len(found)]
    return found


def check_layer(name: str, available: Sequence[str], *, where: str, hint: str) -> None:
    """Raise :class:`LayerNotFoundError` when ``name`` is not among ``available``."""
    if name in available:
        return
    near = close_matches(name, available)
    shown = near or list(available)[:8]
    raise LayerNotFoundError(
        f"layer '{name}' not found in {where}; "
        f"{'close matches' if near else 'available layers include'}: {', '.join(shown)} ({hint})"
    )


# -- output paths -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutputKind:
    """A kind of output directory the toolkit writes (a store, an index, a report ...), recognised by
    what it holds, so that ``--overwrite`` replaces only the toolkit's own output of that kind.

    Attributes
    ----------
    what : how messages name it ("store", "report directory").
    marker : a file every such directory holds (its manifest, or its main file).
    format : the marker's JSON ``format`` value, when the marker is a manifest.
    files : name patterns of every entry such a directory may hold (None: anything beside the marker).
    """

    what: str
    marker: str
    format: str | None = None
    files: tuple[str, ...] | None = None

    def holds(self, path: str | Path) -> bool:
        """Whether the directory ``path`` is recognisably this kind of output."""
        path = Path(path)
        marker = path / self.marker
        if not marker.is_file():
            return False
        if self.format is not None:
            try:
                manifest = json.loads(marker.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return False
            if not isinstance(manifest, dict) or manifest.get("format") != self.format:
                return False
        if self.files is not None:
            try:
                names = [entry.name for entry in path.iterdir()]
            except OSError:
                return False
            return all(any(fnmatch.fnmatchcase(name, pattern) for pattern in self.files) for name in names)
        return True


@dataclass(frozen=True)
class FileKind:
    """A kind of output file the toolkit writes (metrics JSON, a CSV table, a parquet export ...), recognised
    by its content, so that ``--overwrite`` replaces only the toolkit's own file of that kind.

    Attributes
    ----------
    what : how messages name it ("metrics JSON").
    recognise : ``recognise(path) -> bool``: whether the existing file is one the toolkit wrote as this kind
        (an error while reading it counts as no).
    """

    what: str
    recognise: Callable[[Path], bool]

    def holds(self, path: str | Path) -> bool:
        """Whether the file ``path`` is recognisably this kind of output."""
        path = Path(path)
        try:
            return path.is_file() and bool(self.recognise(path))
        except Exception:  # unreadable, not the format: not the toolkit's
            return False


def json_with_keys(*keys: str, listed: bool = False) -> Callable[[Path], bool]:
    """A :class:`FileKind` recogniser: a JSON object holding ``keys`` (``listed``: or a non-empty list of them)."""
    def recognise(path: Path) -> bool:
        value = json.loads(path.read_text(encoding="utf-8"))
        items = value if listed and isinstance(value, list) and value else [value]
        return all(isinstance(item, dict) and all(key in item for key in keys) for item in items)
    return recognise


def csv_with_columns(*columns: str) -> Callable[[Path], bool]:
    """A :class:`FileKind` recogniser: a CSV file whose header row names ``columns`` (among others)."""
    def recognise(path: Path) -> bool:
        import csv

        with open(path, encoding="utf-8", newline="") as fh:
            header = next(csv.reader([fh.readline(1 << 16)]), [])
        return set(columns) <= set(header)
    return recognise


def _a(what: str) -> str:
    return ("an " if what[:1] in "aeiou" else "a ") + what


def _listing(path: Path, most: int = 4) -> str:
    try:
        entries = sorted(path.iterdir(), key=lambda e: e.name)
    except OSError as exc:
        return f"unreadable: {exc.strerror}"
    shown = [e.name + ("/" if e.is_dir() else "") for e in entries[:most]]
    return ", ".join(shown) + (f" and {len(entries) - most} more" if len(entries) > most else "")


def check_output_location(path: str | Path, what: str = "output") -> Path:
    """Refuse an output path that is the working directory, one above it, the home directory or the
    file-system root, that is a dataset or lies inside one (:func:`check_outside_datasets`), or that cannot be
    created: a file in the middle of the path, or a directory on the way that is not writable (for root too: one
    without any write permission bit). Returns the path."""
    path = Path(path).expanduser()
    try:
        resolved, cwd = path.resolve(), Path.cwd().resolve()
    except (OSError, RuntimeError):  # the working directory was removed; a symlink loop
        resolved, cwd = path.absolute(), None
    if cwd is not None and (resolved == cwd or resolved in cwd.parents):
        raise OutputPathError(f"{what} '{path}' is the current directory or one above it; the toolkit replaces "
                              f"its output path whole, so give it a path of its own, e.g. '{path / 'out'}'")
    try:
        home = Path.home().resolve()
    except (OSError, RuntimeError, KeyError):  # no home directory known
        home = Path(resolved.anchor or "/")
    if resolved == home or resolved in home.parents or resolved.parent == resolved:
        raise OutputPathError(f"{what} '{path}' is the home directory, one above it or the file-system root; give "
                              f"it a path of its own, e.g. '{path / 'out'}'")
    check_outside_datasets(path, what)
    for ancestor in path.parents:
        if not ancestor.exists():
            if os.path.lexists(ancestor):
                raise OutputPathError(f"'{ancestor}' is a broken link, so {what} '{path}' cannot be created; "
                                      "fix the link or choose another path")
            continue
        if not ancestor.is_dir():
            raise OutputPathError(f"'{ancestor}' is a file, so {what} '{path}' cannot be created inside it; "
                                  "choose another path")
        if not os.access(ancestor, os.W_OK | os.X_OK):
            raise OutputPathError(f"cannot write {what} '{path}': directory '{ancestor}' is not writable "
                                  "(permissions or a read-only file system); choose a writable location or "
                                  "check the path and permissions")
        mode = _read_only_for_root(ancestor)
        if mode is not None:
            raise OutputPathError(f"cannot write {what} '{path}': directory '{ancestor}' is not writable (mode "
                                  f"{mode}: no one may write there, and running as root does not change that); "
                                  "choose a writable location or check the path and permissions")
        break
    return path


def check_outside_datasets(path: str | Path, what: str = "output") -> None:
    """Refuse an output path that is a dataset folder (LeRobot, hand keypoints) or lies inside one, checked on the
    path and each existing ancestor (see :func:`probe.dataset_folders.enclosing_dataset`): datasets are read in
    place and never written."""
    found = enclosing_dataset(path)
    if found is None:
        return
    folder, kind, itself = found
    why = " (it holds a (T, 21, 3) .npy beside a video)" if kind == KEYPOINTS else ""
    where = f"is a {kind}{why}" if itself else f"is inside the {kind} '{folder}'{why}"
    raise OutputPathError(f"{what} '{path}' {where}; datasets are read in place and never written: choose a path "
                          "outside it")


def _read_only_for_root(folder: Path) -> str | None:
    """The mode (``dr-xr-xr-x``) of a directory without any write permission bit that ``os.access`` calls
    writable only because this process is root (root ignores the bits); None otherwise."""
    import stat

    if getattr(os, "geteuid", lambda: -1)() != 0:
        return None
    try:
        mode = folder.stat().st_mode
    except OSError:
        return None
    return stat.filemode(mode) if mode & 0o222 == 0 else None


def check_output_path(path: str | Path, overwrite: bool, *, what: str = "output file",
                      kind: OutputKind | FileKind | None = None) -> Path:
    """Check an output path once, before any work; returns the path.

    Refuses (see :func:`check_output_location`) a path that cannot be written, a directory where a
    file goes (``kind`` None or a :class:`FileKind`) or a file where a directory of an
    :class:`OutputKind` goes, and an existing path unless ``overwrite``. Even with ``overwrite`` an
    existing directory is replaced only when it is empty or recognisably the toolkit's output of the
    same ``kind``, and a file of a :class:`FileKind` only when it is empty or recognisably that kind:
    never a user's folder or file.
    """
    path = Path(path)
    what = kind.what if kind is not None else what
    directory = isinstance(kind, OutputKind)
    check_output_location(path, what)
    if not os.path.lexists(path):
        return path
    if not directory and path.is_dir():
        raise OutputPathError(f"{what} '{path}' is a directory; the {what} is a file: give a file name, "
                              f"e.g. '{path / 'out'}'")
    if directory and not path.is_dir():
        raise OutputPathError(f"'{path}' is a file, but {_a(what)} is a directory; move the file away or choose "
                              "another path")
    if isinstance(kind, FileKind) and path.is_symlink():  # replacing it would swap the user's link for a file
        raise OutputPathError(f"{what} '{path}' is a symbolic link; give the file it points to, or another path")
    if isinstance(kind, FileKind) and not kind.holds(path) and not _empty_file(path):
        raise OutputExistsError(f"'{path}' exists and is not {_a(what)} written by this toolkit; --overwrite only "
                                "replaces the toolkit's own outputs: move it away or choose another path")
    if not overwrite:
        raise OutputExistsError(
            f"{what} '{path}' already exists; choose another path or pass --overwrite "
            "(overwrite=True in Python) to replace it"
        )
    if directory and not kind.holds(path) and any(path.iterdir()):
        raise OutputExistsError(f"'{path}' is not {_a(what)} written by this toolkit (it holds {_listing(path)}); "
                                "--overwrite only replaces the toolkit's own outputs: move it away or choose "
                                "another path")
    return path


def _empty_file(path: Path) -> bool:
    """An empty regular file: nothing to lose by replacing it."""
    try:
        return path.is_file() and path.stat().st_size == 0
    except OSError:
        return False


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}, "c": [{"d": 2}]}`` as ``{"a.b": 1, "c[0].d": 2}``: what differs can be named."""
    if isinstance(value, Mapping) and value:
        items = [(f"{prefix}.{key}" if prefix else str(key), item) for key, item in value.items()]
    elif isinstance(value, list) and value and all(isinstance(item, Mapping) for item in value):
        items = [(f"{prefix}[{i}]", item) for i, item in enumerate(value)]
    else:
        return {prefix: value}
    out: dict[str, Any] = {}
    for key, item in items:
        out |= _flatten(item, key)
    return out


def _shown(value: Any) -> str:
    if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return value[:12]  # a content hash
    return json.dumps(value) if not isinstance(value, str) else repr(value)  # 'pick up the can', quoted


def check_same_options(recorded: Mapping[str, Any] | None, current: Mapping[str, Any], *, what: str,
                       fix: str) -> None:
    """Refuse to continue ``what`` (a staged run, a store) made with other options than ``current``,
    naming the first difference; ``recorded`` None means they were not recorded."""
    if recorded is None:
        raise ConfigError(f"cannot resume: {what} records no options to compare (written by an older version); "
                          f"{fix}")
    old = _flatten(json.loads(json.dumps(recorded, default=str)))
    new = _flatten(json.loads(json.dumps(current, default=str)))
    for key in list(dict.fromkeys([*new, *old])):
        if old.get(key) != new.get(key):
            raise ConfigError(f"cannot resume: {what} used {key} {_shown(old.get(key))}, this run "
                              f"{_shown(new.get(key))}; {fix}")
