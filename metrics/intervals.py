"""The replicates behind the suite's 95% intervals, and how each kind of metric gets them.

Two modes (:attr:`metrics.spec.MetricsConfig.intervals`):

``"refit"`` (default)
    Every replicate keeps a fraction f = min(0.5, bootstrap_samples / n) of the episodes of
    every embodiment x task cell, **without replacement**, and recomputes each metric there
    exactly as on the full data: its own kNN graph, its own silhouettes, fits and retrieval.
    The replicates' spread is rescaled by sqrt(f' / (1 - f')), f' the share of the rows the
    full estimate used (1 at half-sampling). Estimate and interval come from the same
    estimator; ``benchmarks/bench_calibration.py`` measures their coverage.
``"reweight"`` (fast, for interactive views)
    Per-sample metrics reweight their values by an episode bootstrap on the fixed kNN graph;
    fitted metrics are refitted on episode subsamples of their rows. A sample's value depends
    on its neighbours' episodes, which the reweighting keeps fixed, so these intervals are
    narrower than the estimate's real spread (see the calibration table): in this mode only
    fitted metrics report an interval (:meth:`Replicates.uncalibrated`).

``MetricsConfig.interval_fraction`` (experimental, off) sets the fraction of ``"refit"`` replicates instead:
f = 0.8 or 0.9 keeps nearly all episodes, a delete-d jackknife (Shao & Wu 1989) whose replicates are nearly
full size, rescaled by sqrt(f' / (1 - f')) with f' the share of rows actually kept, without the half-sample
cap (``benchmarks/RESULTS.md``, "Large-fraction subsampling").

A metric declared ``rate="adaptive"`` (:attr:`metrics.spec.MetricSpec.rate`; none is) also gets as many
replicates at half the fraction, and its scale carries the spread to the full sample at the rate estimated from
the two spreads (:func:`metrics.bootstrap.rate_exponent`, Bertail, Politis & Romano 1999) instead of root-n. It
was measured for the kNN mixing metrics and calibrates none of them (``benchmarks/RESULTS.md``, "Rate-adaptive
subsampling"), so it stays off.

Both give ``estimate +- t * scale * sd(replicates)`` (:func:`metrics.bootstrap.centred_interval`): a
standard-error interval centred on the estimate, ``t`` the Student quantile at the degrees of freedom of
the episodes (episodes minus embodiment x task cells) and of the replicates combined
(:func:`metrics.bootstrap.interval_df`), clipped to the metric's range (:attr:`metrics.spec.MetricSpec.bounds`,
from :data:`metrics.ranges.BOUNDS`: a precision stays in [0, 1]; clipping cannot lower coverage). A metric
whose intervals miss 0.93-0.97 coverage in the calibration benchmark declares why
(:attr:`metrics.spec.MetricSpec.uncalibrated`) and reports none.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from metrics import bootstrap as bs
from metrics.graph import build_graph
from metrics.spec import Context, Kind, Labels, MetricsConfig, MetricSpec
from metrics.subsample import strata_keys

MODES = ("refit", "reweight")


def _subset(labels: Labels, idx: np.ndarray) -> Labels:
    return Labels(**{f: None if getattr(labels, f) is None else getattr(labels, f)[idx]
                     for f in labels.__dataclass_fields__})


class Replicates:
    """The interval replicates of one suite run.

    ``of(spec, state, scopes)`` returns the spec's replicate values, its per-scope replicate
    values (``{scope: [...]}``, empty where a scope gets no interval) and the scale that maps the
    replicates' spread to the estimate's.
    """

    def __init__(self, ctx: Context, labels: Labels, config: MetricsConfig, rows: np.ndarray) -> None:
        self.ctx, self.labels, self.config, self.rows = ctx, labels, config, rows
        self.mode = config.intervals
        n = len(labels)
        cells = strata_keys(labels.embodiment, labels.task)  # episodes are drawn within embodiment x task
        self.cells = cells
        self.df = float(bs.design_df(labels.episode, cells))
        B = config.bootstrap
        if self.mode == "refit":
            self.fraction = (min(0.5, config.bootstrap_samples / max(n, 1)) if config.interval_fraction is None
                             else config.interval_fraction)
            self.weights, _ = bs.episode_subsample_weights(labels.episode, cells, B, self.fraction, config.seed + 2)
            self.kept = float(np.mean([w.sum() for w in self.weights])) if self.weights else 0.0
        else:
            self.fraction = min(0.5, config.bootstrap_samples / max(len(rows), 1))
            self.boot = list(bs.episode_bootstrap_weights(labels.episode, cells, B, config.seed))
            self.weights, self.fit_scale = bs.episode_subsample_weights(labels.episode, cells, B, self.fraction,
                                                                        config.seed + 1)
        self._subs: dict[tuple[int, bool], tuple[Context, Labels, dict, np.ndarray]] = {}
        self._small: list[np.ndarray] | None = None  # subsamples at half the fraction (rate="adaptive" metrics)
        self.kept_small = 0.0

    @property
    def design(self) -> str:
        """Equal for two runs whose replicates drew the same episodes (their differences can be paired)."""
        return bs.design_key(self.labels.episode, self.cells, self.config.seed, self.config.bootstrap,
                             self.fraction, len(self.rows)) + self.mode

    def method(self, kind: Kind, rate: str = "sqrt") -> str:
        """How a metric of ``kind`` (and :attr:`~metrics.spec.MetricSpec.rate`) gets its interval, in words."""
        if self.mode == "refit":
            scaling = ("rescaled by sqrt(f / (1 - f))" if rate != "adaptive" else
                       f"rescaled by sqrt(f^2b / (1 - f^2b)), the rate b in [0.5, 1] estimated from the spread of "
                       f"{self.config.bootstrap} more replicates at half that fraction")
            share = (f"{self.fraction:.0%}" if self.config.interval_fraction is None else  # rounded per cell:
                     f"interval_fraction {self.fraction:g}: {self.kept / max(len(self.labels), 1):.1%} of rows, "
                     "whole")
            return (f"episode subsampling ({share} of episodes per embodiment x task kept without "
                    "replacement, the metric recomputed on them with its own kNN graph or fit); estimate +- t x "
                    f"the replicates' standard deviation {scaling}, t at "
                    f"{bs.interval_df(self.config.bootstrap, self.df):.0f} degrees of freedom; clipped to the "
                    "metric's range")
        if kind is Kind.FIT:
            return (f"episode subsampling ({self.fraction:.0%} of episodes kept without replacement within "
                    "embodiment x task, refitted); estimate +- t x the replicates' standard deviation rescaled by "
                    "sqrt(f / (1 - f)), clipped to the metric's range")
        return ("episode bootstrap reweighting per-sample values on the fixed kNN graph (fast; narrower than the "
                "estimate's spread: see the calibration table)")

    def uncalibrated(self, spec: MetricSpec) -> str:
        """Why ``spec``'s interval is not calibrated in this mode ("" when it is): the metric's own declaration
        (:attr:`metrics.spec.MetricSpec.uncalibrated`), or, with ``"reweight"``, reweighting per-sample values on
        the fixed graph, which under-covers (``benchmarks/RESULTS.md``)."""
        if spec.uncalibrated:
            return spec.uncalibrated
        if self.mode == "reweight" and spec.kind is not Kind.FIT:
            return ("per-sample values reweighted on the fixed kNN graph spread less than the estimate (coverage "
                    "0.85-0.87 for retrieval on aligned embodiments); --intervals refit gives a calibrated interval")
        return ""

    def _sub(self, i: int, small: bool = False) -> tuple[Context, Labels, dict, np.ndarray]:
        if (i, small) not in self._subs:
            idx = np.flatnonzero((self._small if small else self.weights)[i])
            labels = _subset(self.labels, idx)
            X = self.ctx.X[idx]
            graph = build_graph(X, min(self.config.k, len(idx) - 1), self.config.metric, self.config.index)
            rows = np.arange(len(idx))
            ctx = Context(X, graph, rows, rows, self.config, [])
            ctx.cache["runs"] = bs.runs(labels.episode, labels.stage)
            self._subs[(i, small)] = (ctx, labels, {}, idx)
        return self._subs[(i, small)]

    def _refit(self, spec: MetricSpec, state: Any, scopes: dict[str, np.ndarray],
               small: bool = False) -> tuple[list, dict, float]:
        reps, sreps = [], {s: [] for s in scopes} if spec.kind is not Kind.FIT else {}
        for i in range(len(self._small if small else self.weights)):
            ctx, labels, states, idx = self._sub(i, small)
            key = (spec.prepare, "main")
            try:
                if key not in states:
                    states[key] = spec.prepare(ctx, labels, None if spec.kind is Kind.GRAPH else ctx.rows)
                sstate = states[key]
                reps.append(float(spec.score(ctx, sstate, labels, np.ones(len(idx), dtype=np.int64))))
            except ValueError:
                reps.append(float("nan"))
                for s in sreps:
                    sreps[s].append(float("nan"))
                continue
            for s in sreps:
                try:
                    sreps[s].append(float(spec.score(ctx, sstate, labels, scopes[s][idx])))
                except ValueError:
                    sreps[s].append(float("nan"))
        used = len(self.labels) if spec.kind is Kind.GRAPH else (
            len(state["rows"]) if isinstance(state, dict) and "rows" in state else len(self.rows))
        if self.config.interval_fraction is None:
            f = min(self.kept / max(used, 1), 0.5)
        else:  # large-fraction subsampling, no half-sample cap: f' the share of all rows the replicates keep
            f = self.kept / max(len(self.labels), 1)  # (their rows are not capped at the estimate's rows either)
        if spec.rate != "adaptive" or small:
            return reps, sreps, float(np.sqrt(f / (1 - f))) if 0 < f < 1 else 1.0
        return reps, sreps, self._adaptive_scale(spec, state, reps, f, used)

    def _adaptive_scale(self, spec: MetricSpec, state: Any, reps: list, f: float, used: int) -> float:
        """The scale of a ``rate="adaptive"`` metric: its rate from the spread of as many replicates at half the
        fraction (:func:`metrics.bootstrap.rate_exponent`, clamped to [0.5, 1]), the spread at ``f`` carried to
        the full sample at that rate (:func:`metrics.bootstrap.rate_scale`; sqrt(f / (1 - f)) at 0.5). The stored
        replicates stay those at ``f``: this scale maps their spread to the estimate's (comparisons read both)."""
        if self._small is None:
            self._small, _ = bs.episode_subsample_weights(self.labels.episode, self.cells, self.config.bootstrap,
                                                          self.fraction / 2, self.config.seed + 3)
            self.kept_small = float(np.mean([w.sum() for w in self._small])) if self._small else 0.0
        small, _, _ = self._refit(spec, state, {}, small=True)
        f_small = f * self.kept_small / max(self.kept, 1e-12)  # the same share of the rows the estimate used
        beta = bs.rate_exponent(float(np.nanstd(small, ddof=1)), float(np.nanstd(reps, ddof=1)), f_small, f)
        return bs.rate_scale(f, 0.5 if not np.isfinite(beta) else beta) if 0 < f < 1 else 1.0

    def of(self, spec: MetricSpec, state: Any, scopes: dict[str, np.ndarray]) -> tuple[list, dict, float]:
        """``(replicates, {scope: replicates}, scale)`` of one metric (``state``: its full-data state)."""
        if not self.config.bootstrap:
            return [], {}, 1.0
        if self.mode == "refit":
            return self._refit(spec, state, scopes)

        def safe(w: np.ndarray) -> float:
            try:
                return float(spec.score(self.ctx, state, self.labels, w))
            except ValueError:
                return float("nan")

        if spec.kind is Kind.FIT:
            return [safe(w) for w in self.weights], {}, self.fit_scale
        return ([safe(w) for w in self.boot], {s: [safe(w * m) for w in self.boot] for s, m in scopes.items()}, 1.0)
