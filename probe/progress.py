"""Progress bars for long work. Library functions take ``progress: bool``; the CLI turns it on.

A bar is drawn only where stderr is a terminal (:func:`drawn`): redirected to a log or a pipe, the
CLI's output holds no bars (each is many ``\\r``-separated redraws, and an error line would land on a
bar's line). ``$PROBE_PROGRESS=1`` draws them anyway, ``$PROBE_PROGRESS=0`` never.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

FORCE_ENV = "PROBE_PROGRESS"  # "1": draw bars even when stderr is not a terminal; "0": never draw them


def drawn(enabled: bool = True) -> bool:
    """Whether a bar asked for (``enabled``) is drawn: when stderr is a terminal, or as ``$PROBE_PROGRESS`` says."""
    if not enabled:
        return False
    force = os.environ.get(FORCE_ENV, "").strip()
    if force in ("0", "1"):
        return force == "1"
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


def track(items: Iterable[T], *, total: int | None = None, desc: str = "", enabled: bool = True,
          unit: str = "it") -> Iterator[T]:
    """Iterate over ``items`` with a tqdm bar on stderr when ``enabled`` and :func:`drawn`."""
    if not drawn(enabled):
        yield from items
        return
    from tqdm.auto import tqdm

    with tqdm(items, total=total, desc=desc, unit=unit, dynamic_ncols=True, leave=False) as bar:
        yield from bar


def bar(total: int, *, desc: str = "", enabled: bool = True, unit: str = "it"):
    """A manual tqdm bar (``.update(n)``), or a no-op one when disabled or not :func:`drawn`."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not drawn(enabled), dynamic_ncols=True, leave=False)
