"""Exclusive locks on outputs: one run at a time writes (or stages) an output.

:func:`exclusive` holds ``flock(LOCK_EX | LOCK_NB)`` on a small lock file for the
length of a block. A second run asking for the same lock is refused at once with
one line naming the first (its pid, host, start time and command, which the
holder writes into the file). The lock dies with its process (no stale locks);
the file is removed when the block ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from probe.errors import OutputLockedError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no locking
    fcntl = None  # type: ignore[assignment]


def _holder(fd: int) -> str:
    """Who holds the lock, from what it wrote into the lock file."""
    with contextlib.suppress(OSError, ValueError):
        raw = os.pread(fd, 4096, 0)
        info = json.loads(raw.decode("utf-8"))
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(info["started"])))
        return (f"pid {info['pid']} on {info['host']}, started {started}"
                + (f": {info['command']}" if info.get("command") else ""))
    return "a process that has not recorded itself yet"


def _acquire(path: Path, what: str) -> int:
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise OutputLockedError(f"{what} is being written by another run ({holder}); wait for it to finish "
                                    f"or write to another path (lock file '{path}')") from None
        except BaseException:
            os.close(fd)
            raise
        try:  # the holder before us may have removed the file meanwhile: then lock the new one
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


@contextlib.contextmanager
def exclusive(path: str | Path, *, what: str) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` inside the block, or raise
    :class:`~probe.errors.OutputLockedError` at once when another process holds it.

    Folders created for the lock file are removed again if they are empty when the block ends.
    """
    path = Path(path)
    if fcntl is None:  # pragma: no cover
        yield
        return
    created = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = _acquire(path, what)
        try:
            record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                      "command": " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))}
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(record).encode("utf-8"), 0)
        except OSError:  # a full disk: the lock holds all the same, without its description
            pass
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)  # while still holding it, so nobody locks the removed file
            os.close(fd)
    finally:
        for folder in created:  # deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()
