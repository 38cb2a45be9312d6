"""Memory sizes and the budget of a pass: how many checkpoints' weights one pass over the data may hold.

:func:`parse_bytes` reads sizes such as ``4GB`` or ``512MiB`` (``--pass-memory``,
``--frame-cache-max``); :func:`pass_budget` is what a pass may hold by default: a
quarter of the available RAM on CPU, of the free GPU memory on CUDA.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from probe.errors import ConfigError

if TYPE_CHECKING:
    from probe.extract import ExtractConfig

BUDGET_FRACTION = 0.25
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


def available_memory(device: str) -> int:
    """Bytes a pass may count on: free GPU memory for ``cuda``, available RAM otherwise."""
    if str(device).startswith("cuda"):
        import torch

        free, _total = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return 4 * 10**9  # unknown platform: assume a modest machine


def pass_budget(config: ExtractConfig, device: str) -> int:
    """Bytes of model parameters and buffers one pass may hold: ``config.pass_memory``, else a quarter
    of the available RAM (CPU) or of the free GPU memory (CUDA)."""
    if config.pass_memory is not None:
        return int(config.pass_memory)
    return int(BUDGET_FRACTION * available_memory(device))


def format_bytes(n: int) -> str:
    """``n`` bytes as ``1.5 GB``, ``12.0 MB``, ``3.1 kB`` or ``512 B`` (decimal units)."""
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"
