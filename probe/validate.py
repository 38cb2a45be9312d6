"""Validation at the boundary: every check on user input lives here.

Each function raises an error from :mod:`probe.errors` whose message says what was
expected, what was found and how to fix it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from probe import columns as C
from probe.errors import LatentsError, LayerNotFoundError, OutputExistsError

_FINITE_CHUNK = 1 << 16  # rows checked at a time, so memory-mapped layers stay cheap


def check_matrix(X: np.ndarray, *, name: str = "latents") -> None:
    """Check that ``X`` is a 2-D float32 matrix of finite values."""
    if not isinstance(X, np.ndarray):
        raise LatentsError(f"{name}: expected a numpy array, got {type(X).__name__}")
    if X.ndim != 2:
        raise LatentsError(
            f"{name}: expected a 2-D matrix (n_samples, dim), got shape {X.shape}; "
            "pool token or spatial outputs to one vector per sample first"
        )
    if X.dtype != np.float32:
        raise LatentsError(
            f"{name}: expected dtype float32, got {X.dtype}; convert with X.astype(np.float32)"
        )
    for start in range(0, X.shape[0], _FINITE_CHUNK):
        block = X[start : start + _FINITE_CHUNK]
        if not np.isfinite(block).all():
            bad = np.flatnonzero(~np.isfinite(block).all(axis=1))
            rows = ", ".join(str(start + int(r)) for r in bad[:5])
            raise LatentsError(
                f"{name}: {len(bad)}+ rows hold NaN or Inf values (first rows: {rows}); "
                "check the model's outputs for these samples or drop them before writing"
            )


def check_meta(meta: pd.DataFrame, n: int | None = None, *, name: str = "meta") -> None:
    """Check required columns, their dtypes, unique sample ids and the row count."""
    if not isinstance(meta, pd.DataFrame):
        raise LatentsError(f"{name}: expected a pandas DataFrame, got {type(meta).__name__}")
    missing = [c for c in C.REQUIRED if c not in meta.columns]
    if missing:
        raise LatentsError(
            f"{name}: missing required column(s) {missing}; a store needs "
            f"{list(C.REQUIRED)} (see 'Latent store format' in the README)"
        )
    if n is not None and len(meta) != n:
        raise LatentsError(
            f"{name}: has {len(meta)} rows but the latent matrix has {n}; "
            "they must be row-aligned (one metadata row per latent vector)"
        )
    for col in C.INT_COLUMNS:
        if not pd.api.types.is_integer_dtype(meta[col]):
            raise LatentsError(
                f"{name}: column '{col}' must hold integers, got dtype {meta[col].dtype}"
            )
    for col in C.FLOAT_COLUMNS:
        if not pd.api.types.is_numeric_dtype(meta[col]) or pd.api.types.is_bool_dtype(meta[col]):
            raise LatentsError(
                f"{name}: column '{col}' must hold numbers, got dtype {meta[col].dtype}"
            )
        if meta[col].isna().any():
            raise LatentsError(f"{name}: column '{col}' has missing values")
    for col in C.STRING_COLUMNS:
        if meta[col].isna().any():
            raise LatentsError(f"{name}: column '{col}' has missing values")
        if not (pd.api.types.is_string_dtype(meta[col]) or pd.api.types.is_object_dtype(meta[col])):
            raise LatentsError(
                f"{name}: column '{col}' must hold strings, got dtype {meta[col].dtype}; "
                f"convert with meta['{col}'] = meta['{col}'].astype(str)"
            )
    for col in (C.PROGRESS, C.STAGE_PROGRESS):
        values = meta[col].to_numpy(dtype=np.float64)
        if len(values) and (values.min() < 0.0 or values.max() > 1.0):
            raise LatentsError(
                f"{name}: column '{col}' must lie in [0, 1], got range "
                f"[{values.min():.3g}, {values.max():.3g}]"
            )
    dup = meta[C.SAMPLE_ID].duplicated()
    if dup.any():
        first = meta.loc[dup, C.SAMPLE_ID].iloc[0]
        raise LatentsError(
            f"{name}: column '{C.SAMPLE_ID}' must be unique, but {int(dup.sum())} ids repeat "
            f"(first: {first!r}); make ids unique, e.g. '<dataset>/<episode>/<frame>'"
        )


def close_matches(name: str, choices: Iterable[str], n: int = 5) -> list[str]:
    """The ``n`` names in ``choices`` that look most like ``name``."""
    choices = list(choices)
    found = difflib.get_close_matches(name, choices, n=n, cutoff=0.4)
    if len(found) < n:
        found += [c for c in choices if name in c and c not in found][: n - len(found)]
    return found


def check_layer(name: str, available: Sequence[str], *, where: str, hint: str) -> None:
    """Raise :class:`LayerNotFoundError` when ``name`` is not among ``available``."""
    if name in available:
        return
    near = close_matches(name, available)
    shown = near or list(available)[:8]
    raise LayerNotFoundError(
        f"layer '{name}' not found in {where}; "
        f"{'close matches' if near else 'available layers include'}: {', '.join(shown)} ({hint})"
    )


def check_output_path(path: str | Path, overwrite: bool, *, what: str = "output") -> Path:
    """Refuse an existing output path unless ``overwrite``; returns the path."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(
            f"{what} '{path}' already exists; choose another path or pass --overwrite "
            "(overwrite=True) to replace it"
        )
    return path
