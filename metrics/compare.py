"""Differences of a metric between two runs, with an interval and a p-value, and Holm's correction.

Two runs that resampled the same episodes (equal design keys: the stores of two
checkpoints of one extraction, at one seed) are compared **replicate by replicate**:
the difference of the replicates describes the noise of the difference, which is
much smaller than either run's own noise when both move together. Runs with other
designs (other data, another seed) are compared as independent estimates.

p-values use the replicates' standard error with Student's t at the degrees of freedom of
the interval (:func:`metrics.bootstrap.interval_df`; 30 replicates cannot resolve the tails
that a correction for many comparisons asks for);
:func:`holm` corrects a family of them (Holm-Bonferroni: controls the family-wise
error rate without assuming independence).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import t as student

from metrics.bootstrap import centred_interval, interval_df


@dataclass(frozen=True)
class Difference:
    """``b - a`` of one metric, its ``level`` interval and two-sided p-value against no change."""

    delta: float
    lo: float
    hi: float
    se: float
    p: float
    paired: bool


def _se(reps: np.ndarray, scale: float) -> float:
    reps = reps[np.isfinite(reps)]
    return float(scale * np.std(reps, ddof=1)) if len(reps) > 1 else math.nan


def difference(a: float, reps_a: np.ndarray, scale_a: float, b: float, reps_b: np.ndarray, scale_b: float, *,
               paired: bool, level: float = 0.95, df: float | None = None) -> Difference:
    """The difference ``b - a`` with an interval and a two-sided p-value.

    Parameters
    ----------
    a, b : the two estimates
    reps_a, reps_b : their interval replicates (:attr:`metrics.spec.SuiteResult.replicates`)
    scale_a, scale_b : the replicates' scale (1 for a bootstrap, ``sqrt(f / (1 - f))`` for subsamples)
    paired : the replicates resampled the same episodes (equal design keys); they are then differenced
        replicate by replicate, else the two standard errors add in quadrature
    df : the design's degrees of freedom (:attr:`metrics.spec.SuiteResult.df`; the smaller of the two runs'),
        combined with the replicates' (:func:`metrics.bootstrap.interval_df`)
    """
    reps_a, reps_b = np.asarray(reps_a, dtype=np.float64), np.asarray(reps_b, dtype=np.float64)
    delta = float(b - a)
    if not math.isfinite(delta):
        return Difference(math.nan, math.nan, math.nan, math.nan, math.nan, paired)
    if paired and len(reps_a) == len(reps_b) and scale_a == scale_b:
        diffs = reps_b - reps_a
        se = _se(diffs, scale_a)
        nu = interval_df(int(np.isfinite(diffs).sum()), df)
        ci = centred_interval(diffs, delta, level, scale_a, df)
        lo, hi = ci.lo, ci.hi
    else:
        paired = False
        se = math.hypot(_se(reps_a, scale_a), _se(reps_b, scale_b))
        nu = interval_df(min(int(np.isfinite(reps_a).sum()), int(np.isfinite(reps_b).sum())), df)
        q = float(student.ppf(0.5 + level / 2, nu))
        lo, hi = delta - q * se, delta + q * se
    if not math.isfinite(se):
        return Difference(delta, math.nan, math.nan, math.nan, math.nan, paired)
    if se == 0:
        p = 1.0 if delta == 0 else 0.0
    else:
        p = float(2 * student.sf(abs(delta) / se, nu))
    return Difference(delta, float(lo), float(hi), se, p, paired)


def holm(pvalues: np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (nan stays nan and does not count as a test)."""
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = len(ok)
    if not m:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    running = 0.0
    for i, idx in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[idx]))
        out[idx] = running
    return out
