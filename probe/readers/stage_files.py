"""Sidecar stage files: segments ``episode, start, end, stage`` in frames, or ``start_s, end_s`` in seconds.

A ``.csv``, ``.json`` or ``.parquet`` file; an optional ``dataset`` column keeps the
rows of the dataset of that name. JSON is a list of records, or
``{"unit": "seconds"|"frames", "segments": [...]}``. :func:`read_stage_file` checks
the columns; :mod:`probe.readers.stages` checks the segments against a dataset's episodes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from probe.errors import DataError
from probe.validate import FileKind

SEGMENT_COLUMNS = ("episode", "start", "end", "stage")
SECONDS_COLUMNS = ("episode", "start_s", "end_s", "stage")


def read_stage_file(path: str | Path, *, unit: str | None = None) -> pd.DataFrame:
    """A sidecar stage file as a frame ``episode, start, end, stage`` (+ ``dataset``) or its seconds variant.

    ``unit`` (``'frames'`` or ``'seconds'``) says how plain ``start``/``end``
    columns are meant; by default frames (``start_s``/``end_s`` are always seconds).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"stage file '{path}' does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            df = pd.read_csv(path)
        elif suffix == ".parquet":
            df = pd.read_parquet(path)
        elif suffix == ".json":
            obj = json.loads(path.read_text())
            if isinstance(obj, dict):
                unit = unit or obj.get("unit")
                obj = obj.get("segments", [])
            df = pd.DataFrame(obj)
        else:
            raise DataError(f"stage file '{path}' must end in .csv, .json or .parquet")
    except (OSError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"cannot read stage file '{path}': {exc}") from exc
    unit = (unit or "frames").lower()
    if unit not in ("frames", "seconds"):
        raise DataError(f"stage file '{path}': unit must be 'frames' or 'seconds', got {unit!r}")
    if unit == "seconds" and {"start", "end"} <= set(df.columns):
        df = df.rename(columns={"start": "start_s", "end": "end_s"})
    if set(SECONDS_COLUMNS) <= set(df.columns):
        return df
    missing = [c for c in SEGMENT_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(
            f"stage file '{path}' lacks column(s) {missing}; expected columns episode, start, end, stage "
            f"(frames, end exclusive) or episode, start_s, end_s, stage (seconds); got {list(df.columns)}"
        )
    return df


def _is_stage_file(path: Path) -> bool:
    """Whether ``path`` reads as a stage file (what ``overwrite`` may replace)."""
    read_stage_file(path)
    return True


#: a sidecar stage file: ``write_stage_file(..., overwrite=True)`` replaces only one of these (or an empty file)
STAGE_FILE = FileKind("stage file", _is_stage_file)


def write_stage_file(segments: pd.DataFrame, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write segments (``episode, start, end, stage``) atomically as .csv, .json or .parquet.

    An existing file is refused unless ``overwrite``, and even then only a stage file (or an empty
    file) is replaced, never another file at that path.
    """
    from probe.atomic import atomic_file

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".json"):
        raise DataError(f"stage file '{path}' must end in .csv, .json or .parquet")
    missing = [c for c in SEGMENT_COLUMNS if c not in segments.columns]
    if missing:
        raise DataError(f"segments lack column(s) {', '.join(missing)}; expected columns "
                        f"{', '.join(SEGMENT_COLUMNS)}")
    with atomic_file(path, overwrite=overwrite, kind=STAGE_FILE) as tmp:  # checks the path before writing
        if suffix == ".csv":
            segments.to_csv(tmp, index=False)
        elif suffix == ".parquet":
            segments.to_parquet(tmp, index=False)
        elif suffix == ".json":
            tmp.write_text(segments.to_json(orient="records", indent=1))
    return path
