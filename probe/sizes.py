"""Memory and disk sizes as users write them (``4GB``, ``512MiB``) and as the toolkit prints them."""

from __future__ import annotations

import re

from probe.errors import ConfigError


_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_bytes(value: int | float | str | None, option: str = "--pass-memory") -> int | None:
    """Bytes from ``4000000``, ``'4GB'``, ``'512MiB'`` or ``'1.5G'``; None or ``'auto'`` stay None.

    Decimal units (``KB``, ``MB``, ``GB``, ``TB``; the ``B`` is optional) and binary
    ones (``KiB``, ``MiB``, ``GiB``, ``TiB``) are understood, case-insensitively.
    """
    if value is None or (isinstance(value, str) and value.strip().lower() == "auto"):
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number, unit = float(value), ""
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(value))
        if not match or match.group(2).lower() not in _UNITS:
            raise ConfigError(f"{option}: expected a size like 4GB, 512MiB or 0, or 'auto', got {value!r}")
        number, unit = float(match.group(1)), match.group(2).lower()
    if number < 0:
        raise ConfigError(f"{option}: a memory size cannot be negative, got {value!r}")
    return int(number * _UNITS[unit])


def format_bytes(n: int) -> str:
    """``n`` bytes as ``1.5 GB``, ``12.0 MB``, ``3.1 kB`` or ``512 B`` (decimal units)."""
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"
