"""A 2-D layout of a store layer and the parameters that made it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

import numpy as np

from probe.errors import ConfigError


class Method(str, Enum):
    """How a layout is computed."""

    UMAP = "umap"
    PCA = "pca"
    ALIGNED_UMAP = "aligned-umap"


@dataclass(frozen=True)
class ProjectionConfig:
    """Parameters of a layout.

    ``max_points`` caps the rows laid out (stratified sample; ``None`` = all rows).
    ``n_epochs=None`` lets umap-learn choose (200 for large data, 500 for small).
    ``seed=None`` makes UMAP non-deterministic but multi-threaded.
    """

    method: Method = Method.UMAP
    n_neighbors: int = 15
    min_dist: float = 0.1
    metric: str = "cosine"
    n_epochs: int | None = None
    max_points: int | None = 20000
    seed: int | None = 0
    trust_points: int = 2000
    trust_k: int = 10
    warm_start: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", Method(self.method))
        if self.metric not in ("cosine", "l2"):
            raise ConfigError(f"projection metric must be 'cosine' or 'l2', got {self.metric!r}")
        if self.n_neighbors < 2:
            raise ConfigError(f"n_neighbors must be >= 2, got {self.n_neighbors}")
        if self.max_points is not None and self.max_points < 10:
            raise ConfigError(f"max_points must be >= 10 (or None for all rows), got {self.max_points}")
        if self.trust_k < 1 or self.trust_points < 10:
            raise ConfigError(f"trust_k must be >= 1 and trust_points >= 10, got {self.trust_k}, {self.trust_points}")

    def params(self) -> dict[str, Any]:
        """The parameters that change the coordinates (part of the cache key)."""
        d = asdict(self)
        d["method"] = self.method.value
        return d


@dataclass(frozen=True, eq=False)
class Layout:
    """A 2-D layout of some rows of a store layer.

    ``coords (n, 2)`` float32 row-aligned with ``rows`` (integer positions in the
    store / latents); ``sample_ids`` of those rows (used to warm-start the next
    layout); ``trustworthiness`` in [0, 1] (higher is better) measured on a
    subsample; ``sampled`` is True when only part of the rows was laid out.
    """

    coords: np.ndarray
    rows: np.ndarray
    method: str
    params: dict[str, Any]
    trustworthiness: float
    sampled: bool
    cache_key: str
    n_total: int = 0
    sample_ids: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=object), repr=False)
    from_cache: bool = False

    def __len__(self) -> int:
        return int(self.coords.shape[0])

    @property
    def note(self) -> str:
        """A one-line description for reports, saying when the layout is a sample."""
        text = f"{self.method}, trustworthiness {self.trustworthiness:.3f}"
        if self.sampled:
            text += f", stratified sample of {len(self)} of {self.n_total} points"
        return text
