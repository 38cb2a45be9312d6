"""Memory sizes and the budget of a pass: how many checkpoints' weights one pass over the data may hold.

:func:`parse_bytes` reads sizes such as ``4GB`` or ``512MiB`` (``--pass-memory``,
``--frame-cache-max``); :func:`pass_budget` is what a pass may hold by default: a
quarter of the available RAM on CPU, of the free GPU memory on CUDA.
"""

from __future__ import annotations

import os



BUDGET_FRACTION = 0.25




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


def pass_budget(pass_memory: int | None, device: str) -> int:
    """Bytes of model parameters and buffers one pass may hold: ``pass_memory``, else a quarter
    of the available RAM (CPU) or of the free GPU memory (CUDA)."""
    if pass_memory is not None:
        return int(pass_memory)
    return int(BUDGET_FRACTION * available_memory(device))


