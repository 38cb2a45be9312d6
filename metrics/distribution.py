"""Distribution distances between the latents of two embodiments, ``P (n1, d)`` and ``Q (n2, d)``.

Unlike paired similarity these need no matching of samples: they ask whether the two
point clouds (overall, or of one stage) are the same distribution. All are 0 (up to
estimation noise) for identical distributions and grow as they separate; lower is
better (more shared).

==========================  =================  ======================  =================================
function                    cost               samples                 source
==========================  =================  ======================  =================================
mmd_rbf / mmd_pvalue        O(n^2 d)           subsampled to 2000      Gretton et al. 2012
frechet_distance            O(n d^2 + d^3)     all                     Heusel et al. 2017 (FID formula)
sliced_wasserstein          O(n d L + n log n) all                     Bonneel et al. 2015, via POT
sinkhorn_divergence         O(n^2 d) per iter  subsampled to 1000      Genevay et al. 2018, via POT
==========================  =================  ======================  =================================

The quadratic ones take ``max_samples`` (per embodiment, seeded subsample without
replacement; ``None`` uses everything); the defaults are the recommended limits on a
laptop CPU. Kernel sums are taken in float32 row blocks: no ``n x n`` matrix is held.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from dataclasses import dataclass
from types import ModuleType

import numpy as np
from scipy import linalg
from scipy.spatial.distance import pdist

log = logging.getLogger(__name__)

MMD_MAX_SAMPLES = 2000        # per embodiment, for mmd_rbf / mmd_pvalue
SINKHORN_MAX_SAMPLES = 1000   # per embodiment, for sinkhorn_divergence
_BANDWIDTH_SAMPLES = 1000     # pooled points used for the median heuristic
_ROW_BLOCK = 1024             # kernel rows per block
_SINKHORN_TOL = 1e-6          # marginal violation at which Sinkhorn stops

__all__ = ["MMD_MAX_SAMPLES", "MMDTest", "SINKHORN_MAX_SAMPLES", "distribution_scores", "frechet_distance",
           "median_bandwidth", "mmd_pvalue", "mmd_rbf", "sinkhorn_divergence", "sliced_wasserstein", "subsample"]


def _check_two(P: np.ndarray, Q: np.ndarray, name: str, min_rows: int = 2) -> tuple[np.ndarray, np.ndarray]:
    P, Q = np.asarray(P), np.asarray(Q)
    if P.ndim != 2 or Q.ndim != 2 or P.shape[1] != Q.shape[1]:
        raise ValueError(
            f"{name} needs 2-D samples P (n1, d) and Q (n2, d) of the same width; got {P.shape} and {Q.shape}"
        )
    for label, M in (("P", P), ("Q", Q)):
        if M.shape[0] < min_rows:
            raise ValueError(
                f"{name} needs at least {min_rows} samples per embodiment; {label} has {M.shape[0]}; "
                "pool more episodes or skip this stage"
            )
        if not np.isfinite(M).all():
            raise ValueError(f"{name}: {label} contains NaN or infinite values; drop or fix those rows")
    return P, Q


def subsample(X: np.ndarray, max_samples: int | None, rng: np.random.Generator) -> np.ndarray:
    """At most ``max_samples`` rows of ``X`` drawn without replacement (all rows, in order, if fewer)."""
    if max_samples is None or X.shape[0] <= max_samples:
        return X
    rows = np.sort(rng.choice(X.shape[0], size=max_samples, replace=False))
    return X[rows]


def _limit(P: np.ndarray, Q: np.ndarray, max_samples: int | None, seed: int, name: str
           ) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if max_samples is not None and max(P.shape[0], Q.shape[0]) > max_samples:
        log.info("%s: subsampling %d and %d samples to at most %d each", name, P.shape[0], Q.shape[0], max_samples)
    return subsample(P, max_samples, rng), subsample(Q, max_samples, rng)


# ----------------------------------------------------------------------------- MMD


def median_bandwidth(P: np.ndarray, Q: np.ndarray, seed: int = 0) -> float:
    """Median heuristic (Gretton et al. 2012): the median Euclidean distance between distinct
    points of the pooled sample, estimated on at most 1000 pooled points (seeded)."""
    Z = np.concatenate([np.asarray(P, dtype=np.float64), np.asarray(Q, dtype=np.float64)])
    Z = subsample(Z, _BANDWIDTH_SAMPLES, np.random.default_rng(seed))
    d = pdist(Z)
    sigma = float(np.median(d[d > 0])) if np.any(d > 0) else 0.0
    if sigma == 0.0:
        log.warning("median_bandwidth: all points coincide; using bandwidth 1")
        return 1.0
    return sigma


def _kernel_block(X: np.ndarray, Z: np.ndarray, z_sq: np.ndarray, gamma: float) -> np.ndarray:
    """``exp(-gamma ||x - z||^2)`` for a block of rows X against all of Z, float32."""
    x_sq = np.einsum("ij,ij->i", X, X)
    d2 = x_sq[:, None] + z_sq[None, :] - 2.0 * (X @ Z.T)
    np.maximum(d2, 0.0, out=d2)
    return np.exp(-gamma * d2, out=d2)


def _mmd2_stats(P: np.ndarray, Q: np.ndarray, bandwidth: float, permutations: np.ndarray) -> np.ndarray:
    """Unbiased MMD^2 for the split given by each column of ``permutations`` (bool (N, p), True = P).

    One pass over row blocks of the pooled kernel matrix: per block ``K_b @ S`` gives
    ``s^T K s`` for every split at once; the total and the row sums finish the three sums.
    """
    Z = np.ascontiguousarray(np.concatenate([P, Q]), dtype=np.float32)
    N, n1 = Z.shape[0], P.shape[0]
    n2 = N - n1
    gamma = 1.0 / (2.0 * bandwidth**2)
    z_sq = np.einsum("ij,ij->i", Z, Z)
    S = permutations.astype(np.float32)
    sks = np.zeros(S.shape[1], dtype=np.float64)   # s^T K s per split
    rowsum = np.empty(N, dtype=np.float64)
    for start in range(0, N, _ROW_BLOCK):
        stop = min(start + _ROW_BLOCK, N)
        Kb = _kernel_block(Z[start:stop], Z, z_sq, gamma)
        rowsum[start:stop] = Kb.sum(axis=1, dtype=np.float64)
        sks += np.einsum("ip,ip->p", S[start:stop].astype(np.float64), (Kb @ S).astype(np.float64))
    total = rowsum.sum()
    s_rows = permutations.T.astype(np.float64) @ rowsum    # s^T K 1 per split
    pp = sks - n1                                           # K_ii = 1 on the diagonal
    qq = total - 2.0 * s_rows + sks - n2
    pq = s_rows - sks
    return pp / (n1 * (n1 - 1)) + qq / (n2 * (n2 - 1)) - 2.0 * pq / (n1 * n2)


def mmd_rbf(P: np.ndarray, Q: np.ndarray, bandwidth: float | None = None, *,
            max_samples: int | None = MMD_MAX_SAMPLES, seed: int = 0) -> float:
    """Unbiased squared maximum mean discrepancy with a Gaussian kernel (Gretton et al. 2012, "A
    Kernel Two-Sample Test", MMD^2_u).

    ``k(x, y) = exp(-||x - y||^2 / (2 sigma^2))`` with ``sigma`` = ``bandwidth`` or, by default,
    the median heuristic (:func:`median_bandwidth` of the pooled sample). The value is
    roughly in [-small, 2]; about 0 for identical distributions (the unbiased estimate can
    be slightly negative), larger is more different; lower is better. Unitless (the
    bandwidth follows the data's scale), so it compares across layers. Needs >= 2
    samples per side. Inputs above ``max_samples`` rows (default 2000) are subsampled
    (seeded); cost O((n1 + n2)^2 d), in float32 kernel blocks.
    """
    P, Q = _check_two(P, Q, "mmd_rbf")
    P, Q = _limit(P, Q, max_samples, seed, "mmd_rbf")
    sigma = median_bandwidth(P, Q, seed) if bandwidth is None else float(bandwidth)
    if sigma <= 0:
        raise ValueError(f"bandwidth must be > 0; got {bandwidth}")
    split = np.zeros((P.shape[0] + Q.shape[0], 1), dtype=bool)
    split[: P.shape[0]] = True
    return float(_mmd2_stats(P, Q, sigma, split)[0])


@dataclass(frozen=True)
class MMDTest:
    """Result of :func:`mmd_pvalue`: the statistic, its permutation p-value and the settings used."""

    mmd2: float
    p_value: float
    bandwidth: float
    n_permutations: int
    n_p: int
    n_q: int


def mmd_pvalue(P: np.ndarray, Q: np.ndarray, n_permutations: int = 200, bandwidth: float | None = None, *,
               max_samples: int | None = MMD_MAX_SAMPLES, seed: int = 0) -> MMDTest:
    """Permutation test of "P and Q come from the same distribution" with :func:`mmd_rbf`.

    The pooled sample is re-split at random ``n_permutations`` times (seeded); the p-value is
    ``(1 + #{permuted MMD^2 >= observed}) / (1 + n_permutations)``, so it is never 0 and its
    resolution is ``1 / (n_permutations + 1)``. Small p: the embodiments are distinguishable.
    The bandwidth is fixed from the pooled sample, as in Gretton et al. 2012. All splits are
    evaluated in one pass over the kernel blocks (cost O(N^2 (d + n_permutations))).
    """
    P, Q = _check_two(P, Q, "mmd_pvalue")
    if n_permutations < 1:
        raise ValueError(f"n_permutations must be >= 1; got {n_permutations}")
    P, Q = _limit(P, Q, max_samples, seed, "mmd_pvalue")
    sigma = median_bandwidth(P, Q, seed) if bandwidth is None else float(bandwidth)
    rng = np.random.default_rng(seed)
    N, n1 = P.shape[0] + Q.shape[0], P.shape[0]
    splits = np.zeros((N, n_permutations + 1), dtype=bool)
    splits[:n1, 0] = True
    for p in range(1, n_permutations + 1):
        splits[rng.permutation(N)[:n1], p] = True
    stats = _mmd2_stats(P, Q, sigma, splits)
    observed = stats[0]
    p_value = (1.0 + np.sum(stats[1:] >= observed)) / (1.0 + n_permutations)
    return MMDTest(float(observed), float(p_value), sigma, int(n_permutations), int(P.shape[0]), int(Q.shape[0]))


# ----------------------------------------------------------------------------- Fréchet


def _moments(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance, accumulated in float64 over row blocks."""
    n, d = X.shape
    mu = np.zeros(d, dtype=np.float64)
    for start in range(0, n, 8192):
        mu += np.asarray(X[start : start + 8192], dtype=np.float64).sum(axis=0)
    mu /= n
    cov = np.zeros((d, d), dtype=np.float64)
    for start in range(0, n, 8192):
        block = np.asarray(X[start : start + 8192], dtype=np.float64) - mu
        cov += block.T @ block
    return mu, cov / (n - 1)


def frechet_distance(P: np.ndarray, Q: np.ndarray, eps: float = 1e-6) -> float:
    """Fréchet distance between Gaussians fitted to P and Q (the FID formula of Heusel et al. 2017).

    ``||mu_P - mu_Q||^2 + Tr(S_P + S_Q - 2 (S_P S_Q)^{1/2})`` with unbiased covariances.
    Range [0, inf), in squared latent units; 0 for identical means and covariances; lower
    is better. Only first and second moments count. Needs n > d per side for a
    well-conditioned covariance (a warning is logged otherwise) and is biased upward at
    small n. Matrix square root as in pytorch-fid: ``scipy.linalg.sqrtm``; if it is not
    finite, ``eps`` is added to both diagonals; a complex result with imaginary
    diagonal above 1e-3 raises, smaller imaginary parts are dropped. Cost O(n d^2 + d^3).
    """
    P, Q = _check_two(P, Q, "frechet_distance")
    d = P.shape[1]
    if min(P.shape[0], Q.shape[0]) <= d:
        log.info("frechet_distance: %d and %d samples for %d dimensions: covariances are singular; "
                    "the distance is unreliable", P.shape[0], Q.shape[0], d)
    mu1, s1 = _moments(P)
    mu2, s2 = _moments(Q)
    covmean = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        log.info("frechet_distance: singular product of covariances; adding %g to the diagonals", eps)
        offset = np.eye(d) * eps
        covmean = linalg.sqrtm((s1 + offset) @ (s2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(
                f"frechet_distance: matrix square root has imaginary component "
                f"{np.max(np.abs(covmean.imag)):.3g}; covariances are ill-conditioned (use more samples)"
            )
        covmean = covmean.real
    diff = mu1 - mu2
    return float(max(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean), 0.0))


# ----------------------------------------------------------------------------- OT

_POT_DISABLE = ("POT_BACKEND_DISABLE_PYTORCH", "POT_BACKEND_DISABLE_JAX", "POT_BACKEND_DISABLE_CUPY",
                "POT_BACKEND_DISABLE_TENSORFLOW")


def _pot() -> ModuleType:
    """POT, imported on first use with only its numpy backend.

    POT imports torch (and jax, cupy, tensorflow) at import time when they are installed,
    which ``metrics/`` must not do; its documented environment switches turn that off for
    the duration of the import and are restored afterwards.
    """
    if "ot" in sys.modules:
        return sys.modules["ot"]
    saved = {key: os.environ.get(key) for key in _POT_DISABLE}
    os.environ.update({key: "1" for key in _POT_DISABLE})
    try:
        import ot
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return ot


def sliced_wasserstein(P: np.ndarray, Q: np.ndarray, n_projections: int = 128, seed: int = 0) -> float:
    """Sliced 2-Wasserstein distance (Bonneel et al. 2015), POT's ``ot.sliced_wasserstein_distance``.

    Mean over ``n_projections`` random unit directions (seeded) of the squared 1-D
    Wasserstein-2 distance between the projected samples, square-rooted. Range
    [0, inf), in latent units; 0 for identical samples; lower is better. Uniform weights;
    all samples are used (O(n d L + n log n)). A Monte-Carlo estimate: fix ``seed`` to compare.
    """
    P, Q = _check_two(P, Q, "sliced_wasserstein", min_rows=1)
    if n_projections < 1:
        raise ValueError(f"n_projections must be >= 1; got {n_projections}")
    P64, Q64 = np.asarray(P, dtype=np.float64), np.asarray(Q, dtype=np.float64)
    return float(_pot().sliced_wasserstein_distance(P64, Q64, n_projections=n_projections, p=2, seed=seed))


def sinkhorn_divergence(P: np.ndarray, Q: np.ndarray, epsilon: float = 1.0, *,
                        max_samples: int | None = SINKHORN_MAX_SAMPLES, seed: int = 0,
                        n_iter: int = 2000) -> float:
    """Debiased Sinkhorn divergence (Genevay et al. 2018; Feydy et al. 2019), via POT's
    ``ot.bregman.empirical_sinkhorn_divergence`` (squared Euclidean cost, POT's plain
    ``sinkhorn`` solver, retried with the slower ``sinkhorn_log`` if it underflows or does not
    converge; stops at marginal error 1e-6 or ``n_iter`` iterations; a warning is logged if
    neither converged). POT's ``sinkhorn_stabilized`` is not used: it returned wrong values
    on 256-d data in our tests.

    ``S(P, Q) = OT_e(P, Q) - (OT_e(P, P) + OT_e(Q, Q)) / 2`` where ``OT_e`` is POT's transport
    cost ``<T, C>`` of the entropic plan; clipped at 0 by POT. Range [0, inf) in squared
    latent units; 0 for identical samples; lower is better. Interpolates between
    Wasserstein-2 squared (small epsilon) and an MMD (large epsilon).

    ``epsilon`` is relative: the entropic regularisation is ``epsilon`` times the median
    squared distance of the pooled sample (median heuristic), so one value suits every
    layer's scale. The default 1.0 (blur = the median distance) is chosen for latents of
    hundreds of dimensions: two samples of one 256-d Gaussian (1000 points each) score
    about 1.4 at epsilon 1, but 3.8 at 0.5 and 67 at 0.2, since small epsilon approaches
    the empirical W2^2 between the two finite samples, which is large in high dimension
    even for one distribution; with epsilon 1 a mean shift still scores about its true
    W2^2 (1.0 per dimension -> 258 for 256 dimensions). Lower epsilon only for low-dimensional data.

    Inputs above ``max_samples`` rows (default 1000) are subsampled (seeded): cost and
    memory are O(n1 n2) per iteration, about 2 s at 1000 x 1000 x 256 on 2 cores (much
    more if the log-domain fallback is needed, i.e. for very small epsilon). Compare
    values; 0 is reached only in the limit of infinite samples.
    """
    P, Q = _check_two(P, Q, "sinkhorn_divergence", min_rows=1)
    if epsilon <= 0:
        raise ValueError(f"epsilon must be > 0; got {epsilon}")
    P, Q = _limit(P, Q, max_samples, seed, "sinkhorn_divergence")
    reg = epsilon * median_bandwidth(P, Q, seed) ** 2
    P64, Q64 = np.asarray(P, dtype=np.float64), np.asarray(Q, dtype=np.float64)
    for method in ("sinkhorn", "sinkhorn_log"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with np.errstate(all="ignore"):
                value = float(_pot().bregman.empirical_sinkhorn_divergence(
                    P64, Q64, reg, numIterMax=n_iter, stopThr=_SINKHORN_TOL, method=method, warn=True))
        if np.isfinite(value) and not caught:
            break
        log.info("sinkhorn_divergence: %s failed at epsilon=%g (%s); retrying in the log domain (slower)",
                 method, epsilon, caught[0].message if caught else "not finite")
    if caught or not np.isfinite(value):
        log.warning("sinkhorn_divergence: %s (epsilon=%g; raise n_iter or epsilon)",
                    caught[0].message if caught else "not finite", epsilon)
    return value


# ----------------------------------------------------------------------------- all


def distribution_scores(P: np.ndarray, Q: np.ndarray, *, n_permutations: int = 200, seed: int = 0,
                        mmd_max_samples: int | None = MMD_MAX_SAMPLES,
                        sinkhorn_max_samples: int | None = SINKHORN_MAX_SAMPLES) -> dict[str, float | int]:
    """Every distribution distance of P and Q (and the MMD p-value) as a JSON-ready dict."""
    test = mmd_pvalue(P, Q, n_permutations, max_samples=mmd_max_samples, seed=seed)
    return {
        "mmd2": test.mmd2,
        "mmd_pvalue": test.p_value,
        "mmd_bandwidth": test.bandwidth,
        "frechet": frechet_distance(P, Q),
        "sliced_wasserstein": sliced_wasserstein(P, Q, seed=seed),
        "sinkhorn_divergence": sinkhorn_divergence(P, Q, max_samples=sinkhorn_max_samples, seed=seed),
        "n_p": int(np.asarray(P).shape[0]),
        "n_q": int(np.asarray(Q).shape[0]),
    }
