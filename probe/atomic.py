"""Atomic writes: outputs appear whole or not at all.

Files are written to a temporary sibling and renamed into place; directories are
built in a temporary sibling directory and renamed. A failure removes the
temporary and leaves any previous output untouched. What is published gets the
permissions the umask gives (temporary files and directories are created private),
and a full disk is one :class:`~probe.errors.DiskFullError` naming the path.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from probe.errors import DiskFullError
from probe.sizes import format_bytes
from probe.validate import FileKind, OutputKind, check_output_path

#: errors of a full file system, a full quota, or a file-size limit (``ulimit -f``): one class of fault
NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def current_umask() -> int:
    """This process's umask (read without changing it where /proc tells it)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def publish_mode(path: str | Path, *, directory: bool) -> None:
    """Give a temporary file or directory about to be renamed into place the permissions a newly created
    one would have (``0o666`` or ``0o777`` less the umask): ``mkstemp`` and ``mkdtemp`` make them private."""
    os.chmod(path, (0o777 if directory else 0o666) & ~current_umask())


def disk_full(path: str | Path, needed: int | None = None, *, kept: str = "nothing was written") -> DiskFullError:
    """The one-line error of a full file system while writing ``path`` (``needed`` bytes, when known)."""
    path = Path(path)
    free = None
    for folder in (path, *path.parents):
        with contextlib.suppress(OSError):
            free = shutil.disk_usage(folder).free
            break
    need = f"it needs {format_bytes(needed)}" if needed is not None else "no space left"
    have = f", {format_bytes(free)} free" if free is not None else ""
    return DiskFullError(f"no space left on the device of '{path}' ({need}{have}, or a file-size limit was "
                         f"reached); {kept}: free some space or choose another location")


@contextlib.contextmanager
def no_space_is_an_error(path: str | Path, needed: int | None = None, *,
                         kept: str = "nothing was written") -> Iterator[None]:
    """Turn a full-disk ``OSError`` raised in the block into :func:`disk_full`'s one-line error."""
    try:
        yield
    except DiskFullError:
        raise
    except OSError as exc:
        if exc.errno in NO_SPACE:
            raise disk_full(path, needed, kept=kept) from exc
        raise


def reserve_space(path: str | Path, size: int) -> None:
    """Allocate ``size`` bytes of the file ``path`` on disk now (``posix_fallocate``), so that a full disk
    raises ``OSError(ENOSPC)`` here (see :func:`no_space_is_an_error`) rather than a SIGBUS when a
    memory map of the file is written later."""
    if not hasattr(os, "posix_fallocate") or size <= 0:
        return
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):  # unsupported: nothing reserved
            raise
    finally:
        os.close(fd)


def replace_dir(tmp: Path, target: Path) -> None:
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        target.rename(old)
        try:
            tmp.rename(target)
        except BaseException:
            old.rename(target)
            raise
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
    else:
        tmp.rename(target)


@contextlib.contextmanager
def atomic_dir(path: str | Path, *, overwrite: bool = False, kind: OutputKind | None = None,
               what: str = "output directory") -> Iterator[Path]:
    """Yield a temporary directory that replaces ``path`` when the block succeeds.

    With ``overwrite`` an existing ``path`` is replaced only when it is empty or recognisably an
    output of ``kind`` (see :func:`probe.validate.check_output_path`).
    """
    kind = kind or OutputKind(what, marker="")  # no kind: only an empty directory is replaced
    target = check_output_path(path, overwrite, kind=kind)
    with no_space_is_an_error(target, kept=f"the {kind.what} was not written"):
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            yield tmp
            publish_mode(tmp, directory=True)
            replace_dir(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


@contextlib.contextmanager
def atomic_file(path: str | Path, *, overwrite: bool = True, what: str = "output file",
                kind: FileKind | None = None) -> Iterator[Path]:
    """Yield a temporary file path that is renamed to ``path`` when the block succeeds.

    With a ``kind`` an existing ``path`` is replaced only when it is empty or recognisably an output of
    that kind (see :func:`probe.validate.check_output_path`).
    """
    target = check_output_path(path, overwrite, what=what, kind=kind)
    what = kind.what if kind is not None else what
    with no_space_is_an_error(target, kept=f"the {what} was not written"):
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=target.parent)
        os.close(fd)
        tmp = Path(name)
        try:
            yield tmp
            publish_mode(tmp, directory=False)
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def write_text(path: str | Path, text: str, *, overwrite: bool = True, kind: FileKind | None = None) -> Path:
    """Write ``text`` to ``path`` atomically (replacing only a file of ``kind``, when given)."""
    with atomic_file(path, overwrite=overwrite, kind=kind) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | Path, obj: Any, *, overwrite: bool = True, kind: FileKind | None = None) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically (replacing only a file of ``kind``, when given).

    Strict JSON (:func:`json_text`): a non-finite float (``nan``, ``inf``) is written as ``null``."""
    return write_text(path, json_text(obj) + "\n", overwrite=overwrite, kind=kind)


def json_text(obj: Any, *, indent: int | None = 2, default: Callable[[Any], Any] | None = None) -> str:
    """``obj`` as strict JSON text, the one JSON spelling of files and ``--json`` output alike.

    Non-finite floats (``nan``, ``inf``, numpy's included) become ``null``, numpy scalars and arrays
    plain numbers and lists, paths strings; any other object goes through ``default`` (a
    :class:`TypeError` naming its type without one). ``allow_nan=False`` holds whatever slips past:
    no ``NaN`` token, which JSON does not have, is ever written.
    """
    return json.dumps(plain_json(obj, default), indent=indent, allow_nan=False)


def plain_json(obj: Any, default: Callable[[Any], Any] | None = None) -> Any:
    """``obj`` made of JSON's own types (see :func:`json_text`): non-finite floats as None."""
    import numpy as np

    if obj is None or isinstance(obj, (str, bool, int)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {_json_key(k): plain_json(v, default) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain_json(v, default) for v in obj]
    if isinstance(obj, (np.generic, np.ndarray)):
        return plain_json(obj.tolist() if isinstance(obj, np.ndarray) else obj.item(), default)
    if isinstance(obj, Path):
        return str(obj)
    if default is None:
        raise TypeError(f"cannot write {type(obj).__name__} to JSON")
    return plain_json(default(obj), None)


def _json_key(key: Any) -> Any:
    import numpy as np

    return key.item() if isinstance(key, np.generic) else key
