"""LeRobot's metadata files: the codebase version in ``meta/info.json``, JSON and JSONL readers with
readable errors, and per-episode sub-task segments (``subtask_names``, ``subtask_start_frames``
inclusive, ``subtask_end_frames`` exclusive)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from probe.errors import DataError
from probe.readers.base import Format

SUBTASK_NAMES = "subtask_names"
SUBTASK_STARTS = "subtask_start_frames"
SUBTASK_ENDS = "subtask_end_frames"


def lerobot_version(path: str | Path) -> Format | None:
    """:class:`Format` of a LeRobot dataset root, or None if ``meta/info.json`` is absent."""
    info_path = Path(path) / "meta" / "info.json"
    if not info_path.is_file():
        return None
    version = str(read_json(info_path).get("codebase_version", ""))
    if version.startswith("v3"):
        return Format.LEROBOT_V3
    if version.startswith("v2"):
        return Format.LEROBOT_V2
    raise DataError(
        f"LeRobot dataset '{path}' has codebase_version {version!r}; supported are v2.0, v2.1 and v3.0 "
        "(convert older datasets with LeRobot's conversion scripts)"
    )


def read_json(path: Path) -> dict[str, Any]:
    """A JSON metadata file; :class:`DataError` naming it when unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read '{path}': {exc}") from exc


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """A v2.x JSON-lines metadata file (``episodes.jsonl``, ``tasks.jsonl``), one record per line."""
    if not path.is_file():
        raise DataError(f"LeRobot v2 dataset is missing '{path}'; a v2.x dataset needs meta/episodes.jsonl "
                        "and meta/tasks.jsonl")
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise DataError(f"cannot parse '{path}': {exc}") from exc


def subtask_segments(row: dict[str, Any], index: int) -> tuple[tuple[str, int, int], ...]:
    """``(name, start, end)`` sub-task segments of one episode's metadata row (empty when it has none)."""
    names = row.get(SUBTASK_NAMES)
    if names is None or (not isinstance(names, (list, tuple, np.ndarray))):
        return ()
    starts, ends = row.get(SUBTASK_STARTS), row.get(SUBTASK_ENDS)
    if starts is None or ends is None or not (len(names) == len(starts) == len(ends)):
        raise DataError(f"episode {index}: '{SUBTASK_NAMES}', '{SUBTASK_STARTS}' and '{SUBTASK_ENDS}' must be "
                        "lists of the same length")
    return tuple((str(n), int(s), int(e)) for n, s, e in zip(names, starts, ends))
