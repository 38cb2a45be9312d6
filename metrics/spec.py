"""What a metric of the suite is: families, labels, configuration, the registry and the result types.

:mod:`metrics.suite` runs the registered metrics (``run_suite``); the families
(:mod:`metrics.families`) describe and :func:`register` themselves with the types here.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

from metrics.index import IndexKind
from metrics.knn import Metric, Neighbors

log = logging.getLogger(__name__)

class MetricInputError(ValueError):
    """The suite cannot run on these inputs (one embodiment, constant latents, too few samples ...)."""


class Family(str, Enum):
    """Metric families; the CLI's and config's ``families`` select among them."""

    MIXING = "mixing"
    CONSERVATION = "conservation"
    PAIRED = "paired"
    DISTRIBUTION = "distribution"
    TEMPORAL = "temporal"
    RETRIEVAL = "retrieval"


def _families(values) -> tuple[Family, ...]:
    """``values`` as families; unknown names are refused with the known ones (and the nearest)."""
    import difflib

    known = [f.value for f in Family]
    if isinstance(values, str):
        values = (values,)
    unknown = [str(v) for v in values if not isinstance(v, Family) and str(v) not in known]
    if unknown:
        near = difflib.get_close_matches(unknown[0], known, n=1)
        raise MetricInputError(f"unknown metric family {', '.join(repr(u) for u in unknown)}"
                               + (f" (did you mean {near[0]}?)" if near else "") + f"; families: {', '.join(known)}")
    return tuple(Family(v) for v in values)


class Better(str, Enum):
    """Which direction of a metric is better."""

    HIGHER = "higher"
    LOWER = "lower"


class Kind(str, Enum):
    """How a metric uses the data, which decides how it is subsampled and bootstrapped."""

    GRAPH = "graph"  # per-sample values from the shared kNN graph, all rows; bootstrap reweights them
    SAMPLES = "samples"  # per-sample values from O(n^2) work on the subsample; bootstrap reweights them
    FIT = "fit"  # refitted (model, clustering, distances) on the rows at each replicate, on a smaller subsample


class By(str, Enum):
    """Scopes reported besides the overall value."""

    STAGE = "stage"
    TASK = "task"


class Null(str, Enum):
    """Which labels the null baseline shuffles."""

    EMBODIMENT = "embodiment"
    STAGE = "stage"
    FRAME = "frame"  # frame order shuffled within each episode (temporal metrics)
    NONE = "none"


@dataclass(frozen=True)
class Labels:
    """Row-aligned label arrays the metrics read (strings); ``episode`` keys are unique across datasets."""

    embodiment: np.ndarray
    stage: np.ndarray
    task: np.ndarray
    episode: np.ndarray
    progress: np.ndarray | None = None  # in-episode progress in [0, 1] (temporal metrics)
    frame: np.ndarray | None = None  # frame index within the episode (temporal metrics)
    stage_progress: np.ndarray | None = None  # position within the stage in [0, 1] (matched pairs)

    def __len__(self) -> int:
        return len(self.embodiment)

    def replace(self, **changes: np.ndarray) -> Labels:
        values = {f: getattr(self, f) for f in self.__dataclass_fields__}
        values.update(changes)
        return Labels(**values)

    def take(self, rows: np.ndarray) -> Labels:
        return Labels(**{f: None if getattr(self, f) is None else np.asarray(getattr(self, f))[rows]
                         for f in self.__dataclass_fields__})


@dataclass(frozen=True)
class MetricsConfig:
    """Everything the suite needs to know; validated on construction.

    k : neighbours of the shared graph (the largest any metric needs; LISI uses all k,
        perplexity k / 3, as scib's 90 / 30)
    metric : "cosine" or "l2", chosen once for the graph, silhouettes and k-means
    bootstrap : episode-bootstrap replicates (0 = no intervals)
    null_repeats : label permutations averaged into each null baseline (0 = no nulls)
    max_samples : rows above which O(n^2) and fitted metrics use a stratified subsample
    bootstrap_samples : rows of the (smaller) stratified subsample on which fitted
        metrics are refitted for each bootstrap replicate and null permutation
    by : also report each metric per stage or per task (None = overall only): values and nulls, no
        intervals (:data:`metrics.calibration.NO_SCOPE_INTERVAL`)
    families / metrics : which families / metric names to compute (None = all)
    index : "exact" (default), or "ivf" / "hnsw" (approximate, for millions of rows; their
        recall against exact search on a sample goes into the notes)
    kbet_k, mixing_k : neighbours used by kBET and kNN mixing (slices of the graph)
    human : the embodiment name treated as human by the transfer metrics; all others
        are "robot"
    intervals : "refit" (each replicate recomputes every metric, kNN graph included, on an episode
        subsample) or "reweight" (fast: per-sample values reweighted on the fixed graph); see
        :mod:`metrics.intervals`
    all_intervals : also give an interval to the metrics whose intervals are not calibrated
        (:attr:`MetricSpec.uncalibrated`), and per-scope intervals to per-sample metrics (for
        ``benchmarks/bench_calibration.py``, which measures them)
    interval_fraction : experimental, for ``benchmarks/bench_calibration.py --fraction``: the share of every
        embodiment x task cell's episodes each ``"refit"`` replicate keeps (0 < f < 1; rounded per cell, at
        least one episode dropped), instead of min(0.5, bootstrap_samples / n); the replicates' spread is
        rescaled by sqrt(f' / (1 - f')), f' the share of the rows actually kept (a delete-d jackknife at large
        f). Replicates then hold f' of all rows (no ``bootstrap_samples`` cap): for small data. None (default):
        today's fraction (benchmarks/RESULTS.md, "Large-fraction subsampling")
    permutations : label permutations behind the p-values of the headline kNN-graph
        mixing and conservation metrics (ilisi, kbet, knn_embodiment_mixing, clisi);
        their null baseline averages all of them (0 = no p-values)
    """

    k: int = 90
    metric: Metric = Metric.COSINE
    bootstrap: int = 30
    null_repeats: int = 3
    max_samples: int = 20_000
    bootstrap_samples: int = 4_000
    seed: int = 0
    by: By | None = None
    families: tuple[Family, ...] | None = None
    metrics: tuple[str, ...] | None = None
    index: IndexKind = IndexKind.EXACT
    kbet_k: int = 50
    mixing_k: int = 15
    alpha: float = 0.05
    ci_level: float = 0.95
    human: str = "human"
    retrieval_max_r: int = 1000
    permutations: int = 99
    intervals: str = "refit"
    all_intervals: bool = False
    interval_fraction: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "metric", Metric(self.metric))
        object.__setattr__(self, "index", IndexKind(self.index))
        if self.by is not None:
            object.__setattr__(self, "by", By(self.by))
        if self.families is not None:
            object.__setattr__(self, "families", _families(self.families))
        if self.metrics is not None:
            object.__setattr__(self, "metrics", tuple(self.metrics))
        for name in ("k", "max_samples", "bootstrap_samples", "kbet_k", "mixing_k", "retrieval_max_r"):
            if int(getattr(self, name)) < 1:
                raise MetricInputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.intervals not in ("refit", "reweight"):
            raise MetricInputError(f"intervals must be 'refit' or 'reweight', got {self.intervals!r}")
        for name in ("bootstrap", "null_repeats", "permutations"):
            if int(getattr(self, name)) < 0:
                raise MetricInputError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.interval_fraction is not None:
            f = self.interval_fraction
            try:
                ok = not isinstance(f, (bool, str)) and 0 < float(f) < 1
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise MetricInputError(f"interval_fraction must be a number with 0 < f < 1 (the share of episodes "
                                       f"each interval replicate keeps), or None, got {f!r}")
            if self.intervals != "refit":
                raise MetricInputError(f"interval_fraction applies to intervals='refit' only, got "
                                       f"intervals={self.intervals!r}")
            object.__setattr__(self, "interval_fraction", float(f))
        if not 0 < self.ci_level < 1 or not 0 < self.alpha < 1:
            raise MetricInputError(f"ci_level and alpha must lie in (0, 1), got {self.ci_level} and {self.alpha}")


@dataclass
class Context:
    """What every metric may read: the data, the one graph, the subsamples, the config, the notes."""

    X: np.ndarray  # (n, d) float32, as given
    graph: Neighbors  # the one kNN graph over all rows, at the largest k
    rows: np.ndarray  # the O(n^2) subsample (sorted row indices)
    boot_rows: np.ndarray  # the smaller subsample fitted metrics are refitted on per replicate / null
    config: MetricsConfig
    notes: list[str]
    cache: dict = field(default_factory=dict)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)
            log.info(text)

    def neighbors(self, k: int) -> Neighbors:
        return self.graph.top(min(k, self.graph.k))


@dataclass(frozen=True)
class MetricSpec:
    """One metric of the suite.

    ``prepare(ctx, labels, rows)`` does the heavy work once per label set (per-sample
    values, or just the rows for fitted metrics); ``score(ctx, state, labels, weights)``
    turns it into one number for non-negative integer row ``weights`` over all n rows
    (1 = overall, a 0/1 scope mask, or bootstrap counts). Specs with the same
    ``prepare`` share its result.
    """

    name: str
    family: Family
    better: Better
    kind: Kind
    null: Null
    prepare: Callable[[Context, Labels, np.ndarray | None], Any]
    score: Callable[[Context, Any, Labels, np.ndarray], float]
    scopes: frozenset[By] = frozenset({By.STAGE, By.TASK})
    requires: Callable[[Context, Labels], str | None] | None = None  # a reason to skip, or None
    description: str = ""
    default: bool = True  # False: computed only when named in ``MetricsConfig.metrics`` (slow ones)
    headline: int | None = None  # place among the headline metrics (1 first), None: not a headline metric
    # ``prepare`` for labels shuffled between (episode, stage) runs, from the graph aggregated by runs once
    # (:mod:`metrics.permutation`): the same state, far cheaper, for the many permutations of a p-value
    permuted: Callable[[Context, Labels], Any] | None = None
    # why the metric reports no interval: its intervals miss 0.93-0.97 coverage of their nominal 95%
    # (benchmarks/bench_calibration.py); "" for a metric whose intervals are calibrated
    uncalibrated: str = ""
    # the values the metric can take, from its definition (:data:`metrics.ranges.BOUNDS`; ``inf`` an open side):
    # reported intervals are clipped to it; None: not declared, intervals are not clipped
    bounds: tuple[float, float] | None = None
    # how the spread of the interval's subsamples is carried to the full sample (``intervals="refit"``): "sqrt"
    # (the spread shrinks as 1/sqrt(n): scale sqrt(f / (1 - f))) or "adaptive" (the rate estimated from subsamples
    # at two fractions, :func:`metrics.bootstrap.rate_exponent`; off for every metric: it does not calibrate the kNN
    # mixing metrics, benchmarks/RESULTS.md, "Rate-adaptive subsampling")
    rate: str = "sqrt"


REGISTRY: dict[str, MetricSpec] = {}


def register(*specs: MetricSpec) -> None:
    """Add metrics to the suite (the name is the key in JSON and tables)."""
    for spec in specs:
        same = [s.name for s in REGISTRY.values()
                if spec.headline is not None and s.headline == spec.headline and s.name != spec.name]
        if same:
            raise ValueError(f"metric '{spec.name}' takes headline place {spec.headline}, already held by '{same[0]}'")
        REGISTRY[spec.name] = spec


def headline_metrics() -> tuple[str, ...]:
    """Names of the headline metrics, in headline order: the one list the report, the dashboard and
    the demo show first (a view showing fewer takes a prefix or a subset in this order).

    Reads the registry: import :mod:`metrics.suite`, which registers every family, first.
    """
    ranked = sorted((s for s in REGISTRY.values() if s.headline is not None), key=lambda s: s.headline)
    return tuple(s.name for s in ranked)


@dataclass(frozen=True)
class MetricValue:
    """A metric's value, its bootstrap interval and its null baseline (``nan`` where not computed)."""

    value: float
    ci_lo: float = float("nan")
    ci_hi: float = float("nan")
    null: float = float("nan")
    p: float = float("nan")  # permutation p-value against the null (headline mixing / conservation metrics)
    interval: str = ""  # how the interval was made (:meth:`metrics.intervals.Replicates.method`)
    interval_note: str = ""  # why there is no interval ("not calibrated: ..."), or ""

    def to_dict(self) -> dict[str, Any]:
        def clean(v: float) -> float | None:
            return None if v is None or not np.isfinite(v) else float(v)

        ci = None if not (np.isfinite(self.ci_lo) and np.isfinite(self.ci_hi)) else [clean(self.ci_lo), clean(self.ci_hi)]
        out = {"value": clean(self.value), "ci": ci, "null": clean(self.null)}
        if np.isfinite(self.p):
            out["p"] = float(self.p)
        if self.interval:
            out["interval"] = self.interval
        if self.interval_note:
            out["interval_note"] = self.interval_note
        return out


@dataclass
class SuiteResult:
    """The suite's output: overall metrics, per-scope metrics and notes."""

    n: int
    metrics: dict[str, MetricValue]
    scopes: dict[str, dict[str, MetricValue]]  # scope value (a stage or task) -> metric -> value
    by: By | None
    notes: list[str]
    subsampled: int | None  # rows of the O(n^2) subsample, None when all rows were used
    k: int
    config: MetricsConfig
    # each metric's interval replicates and their scale, and a key of the resampling design (rows' episodes and
    # strata, seed, replicates): two results with the same key resampled the same episodes, so their
    # differences can be compared replicate by replicate (:mod:`metrics.compare`)
    replicates: dict[str, tuple[np.ndarray, float]] = field(default_factory=dict)
    design: str = ""
    df: float = float("nan")  # the design's degrees of freedom behind every interval (episodes - strata)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: ``{"n", "metrics", "per_stage"|"per_task", "notes", "subsampled", "k"}``."""
        out: dict[str, Any] = {"n": self.n, "k": self.k, "subsampled": self.subsampled,
                               "metrics": {name: v.to_dict() for name, v in self.metrics.items()}}
        if self.by is not None:
            out[f"per_{self.by.value}"] = {scope: {name: v.to_dict() for name, v in values.items()}
                                           for scope, values in self.scopes.items()}
        out["notes"] = list(self.notes)
        if self.replicates:
            out["replicates"] = {"design": self.design, "df": float(self.df) if np.isfinite(self.df) else None,
                                 "values": {name: [None if not np.isfinite(x) else float(x) for x in reps]
                                            for name, (reps, _) in self.replicates.items()},
                                 "scale": {name: scale for name, (_, scale) in self.replicates.items()}}
        return out


def weights_key(weights: np.ndarray) -> str:
    """A short hash of a weight vector (to share fitted models between metrics)."""
    return hashlib.blake2b(np.ascontiguousarray(weights).tobytes(), digest_size=12).hexdigest()


def repeat_rows(rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The subsample's rows repeated by their weights (bootstrap duplicates become repeated rows)."""
    w = np.asarray(weights)[rows].astype(np.int64)
    return np.repeat(rows, w)


# ---------------------------------------------------------------------------- checks


def check_inputs(X: np.ndarray, labels: Labels) -> None:
    """Raise :class:`MetricInputError` for inputs no metric can use."""
    n = X.shape[0] if hasattr(X, "shape") and X.ndim == 2 else -1
    if n < 0:
        raise MetricInputError(f"expected latents of shape (n, d), got {getattr(X, 'shape', type(X))}")
    for name in ("embodiment", "stage", "task", "episode"):
        if len(getattr(labels, name)) != n:
            raise MetricInputError(f"labels '{name}' has {len(getattr(labels, name))} rows but the latents have {n}")
    embodiments = np.unique(labels.embodiment)
    if len(embodiments) < 2:
        raise MetricInputError(
            f"alignment metrics compare embodiments, but only one is present ({', '.join(map(str, embodiments))}); "
            "give a store holding both human and robot samples"
        )
    if n < 4:
        raise MetricInputError(f"metrics need at least 4 samples, got {n}")
    lo = np.full(X.shape[1], np.inf, dtype=np.float64)
    hi = np.full(X.shape[1], -np.inf, dtype=np.float64)
    for start in range(0, n, 1 << 16):
        block = np.asarray(X[start : start + (1 << 16)])
        if not np.isfinite(block).all():
            raise MetricInputError("latents hold NaN or Inf values; drop or fix those rows before computing metrics")
        lo = np.minimum(lo, block.min(axis=0))
        hi = np.maximum(hi, block.max(axis=0))
    if np.all(hi - lo == 0):
        raise MetricInputError(
            f"all {n} latent vectors are identical (constant latents): the layer carries no information "
            "about the samples; check the extraction (hook on the right module? pooled before a constant?)"
        )
