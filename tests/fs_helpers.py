"""File-system conditions for the output-safety tests: a read-only directory and a small (full) disk.

Root ignores permission bits, so for root a directory is made read-only with the immutable attribute
(``chattr +i``: no entry can be added, removed or renamed, even by root), and a small disk is a real
tmpfs mounted for the test. Where neither is possible the test is skipped, saying why.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[Path]:
    """``path`` (a directory) read-only for this process inside the block, root included."""
    path = Path(path)
    if os.geteuid() != 0:
        mode = path.stat().st_mode & 0o7777
        path.chmod(0o555)
        try:
            yield path
        finally:
            path.chmod(mode)
        return
    done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"running as root, and 'chattr +i' failed ({done.stderr.strip()}): no way to make a "
                    "directory read-only for root here")
    try:
        yield path
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


@contextlib.contextmanager
def small_disk(path: Path, size: str = "1M") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``path`` inside the block (needs root; skipped when mounting fails)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (the file-size-limit test covers this case without it)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()})")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(disk: Path) -> None:
    """Write a file into ``disk`` until it is full."""
    with open(disk / "filler", "wb", buffering=0) as fh, contextlib.suppress(OSError):
        while True:
            fh.write(b"\0" * 4096)
