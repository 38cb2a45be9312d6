"""``Latents``: the one value passed between extraction, metrics, retrieval and views."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from probe import columns as C
from probe.validate import check_matrix, check_meta


@dataclass(frozen=True, eq=False)
class Latents:
    """A float32 matrix ``X (n, d)`` and a metadata frame with one row per vector.

    It validates itself on construction: ``X`` is 2-D, float32 and finite, ``meta``
    has the required columns of :mod:`probe.columns` with the right dtypes, unique
    sample ids and as many rows as ``X``. ``X`` may be a read-only memory map.
    """

    X: np.ndarray
    meta: pd.DataFrame
    layer: str = ""

    def __post_init__(self) -> None:
        check_matrix(self.X, name=f"latents of layer '{self.layer}'" if self.layer else "latents")
        check_meta(self.meta, self.X.shape[0])
        if not isinstance(self.meta.index, pd.RangeIndex) or self.meta.index.start != 0:
            object.__setattr__(self, "meta", self.meta.reset_index(drop=True))

    def __len__(self) -> int:
        return int(self.X.shape[0])

    def __repr__(self) -> str:
        emb = ", ".join(f"{k}={v}" for k, v in self.meta[C.EMBODIMENT].value_counts().items())
        return f"Latents(layer={self.layer!r}, n={len(self)}, dim={self.dim}, {emb})"

    @property
    def dim(self) -> int:
        return int(self.X.shape[1])

    @property
    def embodiments(self) -> list[str]:
        return sorted(self.meta[C.EMBODIMENT].unique().tolist())

    @property
    def tasks(self) -> list[str]:
        return sorted(self.meta[C.TASK].unique().tolist())

    @property
    def stages(self) -> list[str]:
        """Stage names in order of first appearance (the order within episodes)."""
        return list(dict.fromkeys(self.meta[C.STAGE].tolist()))

    def column(self, name: str) -> np.ndarray:
        """One metadata column as a numpy array."""
        return self.meta[name].to_numpy()

    def episode_keys(self) -> np.ndarray:
        """A per-row key unique to each episode across datasets: ``'<dataset>:<episode>'``."""
        return C.episode_keys(self.meta)

    def take(self, rows: np.ndarray | list[int]) -> Latents:
        """The rows at integer positions ``rows`` (or a boolean mask), in that order."""
        rows = np.asarray(rows)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        return Latents(np.ascontiguousarray(self.X[rows]), self.meta.iloc[rows].reset_index(drop=True), self.layer)

    def mask(self, **conditions: Any) -> np.ndarray:
        """Boolean mask of rows whose columns equal a value or lie in a list of values."""
        keep = np.ones(len(self), dtype=bool)
        for col, value in conditions.items():
            if col not in self.meta.columns:
                raise KeyError(f"no metadata column '{col}'; columns: {list(self.meta.columns)}")
            series = self.meta[col]
            if isinstance(value, (list, tuple, set, np.ndarray)):
                keep &= series.isin(list(value)).to_numpy()
            else:
                keep &= (series == value).to_numpy()
        return keep

    def where(self, **conditions: Any) -> Latents:
        """Rows matching all conditions, e.g. ``where(stage='grasp', task=['pick', 'push'])``."""
        return self.take(self.mask(**conditions))

    def of(self, embodiment: str) -> Latents:
        """Rows of one embodiment."""
        return self.where(**{C.EMBODIMENT: embodiment})
