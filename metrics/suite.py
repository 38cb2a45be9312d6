"""The alignment-metrics suite on arrays: one kNN graph, subsampling, episode bootstrap, nulls, scopes.

``run_suite(X, labels, config)`` is pure (arrays in, a :class:`SuiteResult` out).
It searches ONE exact FAISS kNN graph at the largest k and hands slices of it to
every kNN metric; runs O(n^2) and model-fitting metrics on a stratified subsample
(embodiment x task x stage) above ``max_samples``; gives every headline metric a
percentile interval from a bootstrap over episodes and a null baseline (embodiment
labels shuffled within stage for mixing metrics, stage labels shuffled within task
for conservation metrics, both by (episode, stage) runs); and reports the same
metrics per stage or per task with ``by=``. Everything it had to decide is said
in ``SuiteResult.notes``.

Metrics are entries of :data:`REGISTRY`; a family adds itself with :func:`register`.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

from metrics import bootstrap as bs
from metrics.graph import IndexKind, approximate_note, build_graph
from metrics.knn import Metric, Neighbors
from metrics.subsample import strata_keys, stratified_subsample

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
    by : also report each metric per stage or per task (None = overall only)
    families / metrics : which families / metric names to compute (None = all)
    index : "exact" (default), or "ivf" / "hnsw" (approximate, for millions of rows; their
        recall against exact search on a sample goes into the notes)
    kbet_k, mixing_k : neighbours used by kBET and kNN mixing (slices of the graph)
    human : the embodiment name treated as human by the transfer metrics; all others
        are "robot"
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

    def __post_init__(self) -> None:
        object.__setattr__(self, "metric", Metric(self.metric))
        object.__setattr__(self, "index", IndexKind(self.index))
        if self.by is not None:
            object.__setattr__(self, "by", By(self.by))
        if self.families is not None:
            object.__setattr__(self, "families", tuple(Family(f) for f in self.families))
        if self.metrics is not None:
            object.__setattr__(self, "metrics", tuple(self.metrics))
        for name in ("k", "max_samples", "bootstrap_samples", "kbet_k", "mixing_k", "retrieval_max_r"):
            if int(getattr(self, name)) < 1:
                raise MetricInputError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("bootstrap", "null_repeats"):
            if int(getattr(self, name)) < 0:
                raise MetricInputError(f"{name} must be >= 0, got {getattr(self, name)}")
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


REGISTRY: dict[str, MetricSpec] = {}


def register(*specs: MetricSpec) -> None:
    """Add metrics to the suite (the name is the key in JSON and tables)."""
    for spec in specs:
        REGISTRY[spec.name] = spec


@dataclass(frozen=True)
class MetricValue:
    """A metric's value, its bootstrap interval and its null baseline (``nan`` where not computed)."""

    value: float
    ci_lo: float = float("nan")
    ci_hi: float = float("nan")
    null: float = float("nan")

    def to_dict(self) -> dict[str, Any]:
        def clean(v: float) -> float | None:
            return None if v is None or not np.isfinite(v) else float(v)

        ci = None if not (np.isfinite(self.ci_lo) and np.isfinite(self.ci_hi)) else [clean(self.ci_lo), clean(self.ci_hi)]
        return {"value": clean(self.value), "ci": ci, "null": clean(self.null)}


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

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: ``{"n", "metrics", "per_stage"|"per_task", "notes", "subsampled", "k"}``."""
        out: dict[str, Any] = {"n": self.n, "k": self.k, "subsampled": self.subsampled,
                               "metrics": {name: v.to_dict() for name, v in self.metrics.items()}}
        if self.by is not None:
            out[f"per_{self.by.value}"] = {scope: {name: v.to_dict() for name, v in values.items()}
                                           for scope, values in self.scopes.items()}
        out["notes"] = list(self.notes)
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


def _stage_notes(labels: Labels, ctx: Context) -> None:
    for stage in dict.fromkeys(labels.stage.tolist()):
        embs = np.unique(labels.embodiment[labels.stage == stage])
        if len(embs) < 2:
            ctx.note(f"stage '{stage}' is present in embodiment '{embs[0]}' only: it is excluded from "
                     "within-stage mixing, transfer and paired metrics")


# ---------------------------------------------------------------------------- running


def _selected(config: MetricsConfig) -> list[MetricSpec]:
    if config.metrics is not None:
        unknown = [m for m in config.metrics if m not in REGISTRY]
        if unknown:
            raise MetricInputError(f"unknown metric(s) {unknown}; available: {', '.join(REGISTRY)}")
    specs = [s for s in REGISTRY.values()
             if (config.families is None or s.family in config.families)
             and (s.name in config.metrics if config.metrics is not None else s.default)]
    if not specs:
        raise MetricInputError(f"no metric selected (families={config.families}, metrics={config.metrics})")
    return specs


class _States:
    """Prepared states, shared by specs with the same ``prepare`` and label set."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._store: dict[tuple, Any] = {}

    def get(self, spec: MetricSpec, labels: Labels, rows: np.ndarray | None, tag: str) -> Any:
        key = (spec.prepare, tag)
        if key not in self._store:
            self._store[key] = spec.prepare(self.ctx, labels, rows)
        return self._store[key]


def _safe(fn: Callable[[], float], ctx: Context, what: str) -> float:
    try:
        return float(fn())
    except ValueError as exc:
        ctx.note(f"{what}: not computed ({exc})")
        return float("nan")


def _null_labels(spec: MetricSpec, labels: Labels, rng: np.random.Generator) -> Labels:
    if spec.null is Null.EMBODIMENT:
        return labels.replace(embodiment=bs.null_embodiment(labels.embodiment, labels.stage, labels.episode, rng))
    if spec.null is Null.FRAME:
        frame = labels.frame if labels.frame is not None else np.arange(len(labels))
        return labels.replace(frame=bs.shuffle_within(frame, labels.episode, rng))
    return labels.replace(stage=bs.null_stage(labels.stage, labels.task, labels.episode, rng))


def run_suite(X: np.ndarray, labels: Labels, config: MetricsConfig | None = None, *,
              graph: Neighbors | None = None, progress: bool = False) -> SuiteResult:
    """Compute the selected metrics with intervals, nulls and scopes.

    Parameters
    ----------
    X : (n, d) float32 latents (a memory map is fine)
    labels : row-aligned :class:`Labels`
    config : :class:`MetricsConfig` (defaults if None)
    graph : the kNN graph of ``X`` (self excluded, at least ``config.k`` neighbours,
        ``config.metric``, searched with ``config.index``) when the caller already has
        it, e.g. from a cache shared with layouts; searched here when None
    progress : show a progress bar over metrics (tqdm)

    Returns
    -------
    SuiteResult

    Raises
    ------
    MetricInputError
        One embodiment only, fewer than 4 samples, NaN or constant latents, unknown metric.
    """
    config = config or MetricsConfig()
    labels = Labels(**{f: None if getattr(labels, f) is None else np.asarray(getattr(labels, f))
                       for f in labels.__dataclass_fields__})
    check_inputs(X, labels)
    n = X.shape[0]
    notes: list[str] = []
    specs = _selected(config)
    opt_in = [s.name for s in REGISTRY.values() if not s.default and config.metrics is None
              and (config.families is None or s.family in config.families)]
    if opt_in:
        notes.append(f"not computed by default (slow): {', '.join(opt_in)}; name them in metrics (--metrics) to compute")

    k = config.k
    if k > n - 1:
        k = n - 1
        notes.append(f"only {n} samples: the kNN graph uses k={k} instead of {config.k}")
    X32 = np.ascontiguousarray(X, dtype=np.float32)
    if config.metric is Metric.COSINE:
        zero = int((np.einsum("ij,ij->i", X32, X32) == 0).sum())
        if zero:
            notes.append(f"{zero} latent vectors are all zeros: they have no direction under cosine distance")
    if graph is None:
        graph = build_graph(X32, k, config.metric, config.index, notes)
    else:
        if len(graph) != n or graph.k < k or Metric(graph.metric) is not config.metric:
            raise MetricInputError(f"the given graph ({len(graph)} rows, k={graph.k}, {Metric(graph.metric).value}) "
                                   f"does not fit {n} rows at k={k}, {config.metric.value}; pass graph=None")
        graph = graph.top(k)
        if config.index is not IndexKind.EXACT:
            notes.append(approximate_note(config.index))

    strata = strata_keys(labels.embodiment, labels.task, labels.stage)
    rows = stratified_subsample(strata, config.max_samples, config.seed)
    boot_rows = rows[stratified_subsample(strata[rows], config.bootstrap_samples, config.seed + 1)]
    subsampled = None
    if len(rows) < n:
        subsampled = len(rows)
        notes.append(f"O(n^2) and fitted metrics ran on a stratified subsample of {len(rows)} of {n} samples "
                     "(embodiment x task x stage)")
    ctx = Context(X32, graph, rows, boot_rows, config, notes)
    _stage_notes(labels, ctx)

    scopes_of: dict[str, np.ndarray] = {}
    if config.by is not None:
        column = labels.stage if config.by is By.STAGE else labels.task
        for value in dict.fromkeys(column.tolist()):
            scopes_of[str(value)] = (column == value).astype(np.int64)

    boot_weights = list(bs.episode_bootstrap_weights(labels.episode, labels.embodiment, config.bootstrap, config.seed))
    if config.bootstrap:
        ctx.note(f"95% intervals from {config.bootstrap} bootstrap replicates over episodes (resampled within "
                 f"embodiment); fitted metrics are refitted on a {len(boot_rows)}-sample subsample per replicate")
    if config.null_repeats:
        ctx.note(f"null baselines average {config.null_repeats} permutations of (episode, stage) runs: embodiment "
                 "labels shuffled within stage (mixing, paired, distribution), stage labels shuffled within task "
                 "(conservation, retrieval); frame order shuffled within episodes (temporal)")

    states = _States(ctx)
    boot_states = _States(ctx)
    ones = np.ones(n, dtype=np.int64)
    results: dict[str, MetricValue] = {}
    scoped: dict[str, dict[str, MetricValue]] = {s: {} for s in scopes_of}
    from_tqdm = None
    if progress:
        from tqdm.auto import tqdm as from_tqdm
    iterator = from_tqdm(specs, desc="metrics", leave=False) if from_tqdm else specs

    n_stages = len(np.unique(labels.stage))
    for spec in iterator:
        reason = spec.requires(ctx, labels) if spec.requires else None
        if reason is None and spec.family is Family.CONSERVATION and n_stages < 2:
            reason = "the store has a single stage, so there is nothing to conserve"
        if reason:
            ctx.note(f"{spec.name}: nan ({reason})")
            results[spec.name] = MetricValue(float("nan"))
            for s in scopes_of:
                scoped[s][spec.name] = MetricValue(float("nan"))
            continue
        main_rows = None if spec.kind is Kind.GRAPH else rows
        try:
            state = states.get(spec, labels, main_rows, "main")
        except ValueError as exc:
            ctx.note(f"{spec.name}: not computed ({exc})")
            results[spec.name] = MetricValue(float("nan"))
            for s in scopes_of:
                scoped[s][spec.name] = MetricValue(float("nan"))
            continue
        value = _safe(lambda: spec.score(ctx, state, labels, ones), ctx, spec.name)

        # bootstrap: reweight per-sample values; refit fitted metrics on the smaller subsample
        if spec.kind is Kind.FIT:
            bstate = boot_states.get(spec, labels, boot_rows, "boot")
        else:
            bstate = state
        reps = np.array([_safe(lambda: spec.score(ctx, bstate, labels, w), ctx, f"{spec.name} (bootstrap)")
                         for w in boot_weights]) if boot_weights else np.array([])
        ci = bs.percentile_interval(reps, config.ci_level) if len(reps) else bs.Interval(float("nan"), float("nan"))

        # null: shuffled labels, prepared again (graph metrics on all rows, others on the bootstrap subsample)
        null_vals, null_scoped = [], {s: [] for s in scopes_of}
        if spec.null is not Null.NONE:
            rng = np.random.default_rng(config.seed + 7919)
            null_rows = None if spec.kind is Kind.GRAPH else boot_rows
            for r in range(config.null_repeats):
                nl = _null_labels(spec, labels, rng)
                nstates = _States(ctx)
                try:
                    nstate = nstates.get(spec, nl, null_rows, f"null{r}")
                except ValueError as exc:
                    ctx.note(f"{spec.name} (null): not computed ({exc})")
                    break
                null_vals.append(_safe(lambda: spec.score(ctx, nstate, nl, ones), ctx, f"{spec.name} (null)"))
                if spec.kind is not Kind.FIT:
                    for s, mask in scopes_of.items():
                        if config.by in spec.scopes:
                            null_scoped[s].append(_safe(lambda: spec.score(ctx, nstate, nl, mask), ctx,
                                                        f"{spec.name} (null, {s})"))
        null = float(np.nanmean(null_vals)) if null_vals and not np.all(np.isnan(null_vals)) else float("nan")
        results[spec.name] = MetricValue(value, ci.lo, ci.hi, null)

        # scopes: per-sample metrics reweight, fitted metrics refit on the scope's rows (no interval)
        for s, mask in scopes_of.items():
            if config.by not in spec.scopes:
                scoped[s][spec.name] = MetricValue(float("nan"))
                continue
            v = _safe(lambda: spec.score(ctx, state, labels, mask), ctx, f"{spec.name} ({config.by.value} {s})")
            if spec.kind is Kind.FIT:
                scoped[s][spec.name] = MetricValue(v)
                continue
            sreps = [_safe(lambda: spec.score(ctx, state, labels, w * mask), ctx, f"{spec.name} ({s}, bootstrap)")
                     for w in boot_weights]
            sci = bs.percentile_interval(np.array(sreps), config.ci_level) if sreps else bs.Interval(np.nan, np.nan)
            vals = null_scoped[s]
            snull = float(np.nanmean(vals)) if vals and not np.all(np.isnan(vals)) else float("nan")
            scoped[s][spec.name] = MetricValue(v, sci.lo, sci.hi, snull)
    if scopes_of and any(s.kind is Kind.FIT for s in specs):
        ctx.note(f"per-{config.by.value} values of fitted metrics are refitted on the {config.by.value}'s rows "
                 "without interval or null")
    return SuiteResult(n, results, scoped, config.by, notes, subsampled, k, config)


def available(families: Iterable[Family] | None = None) -> list[str]:
    """Names of registered metrics (of some families)."""
    fams = None if families is None else {Family(f) for f in families}
    return [name for name, s in REGISTRY.items() if fams is None or s.family in fams]


# Families register themselves on import of this module (kept at the end: they import the names above).
from metrics import families as _families  # noqa: E402,F401
