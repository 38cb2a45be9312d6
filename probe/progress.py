"""Progress bars for long work. Library functions take ``progress: bool``; the CLI turns it on."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def track(items: Iterable[T], *, total: int | None = None, desc: str = "", enabled: bool = True,
          unit: str = "it") -> Iterator[T]:
    """Iterate over ``items`` with a tqdm bar on stderr when ``enabled``."""
    if not enabled:
        yield from items
        return
    from tqdm.auto import tqdm

    with tqdm(items, total=total, desc=desc, unit=unit, dynamic_ncols=True, leave=False) as bar:
        yield from bar


def bar(total: int, *, desc: str = "", enabled: bool = True, unit: str = "it"):
    """A manual tqdm bar (``.update(n)``), or a no-op object when disabled."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, dynamic_ncols=True, leave=False)
