"""Paired similarity: do two row-aligned representations ``A (m, dA)`` and ``B (m, dB)`` agree?

Rows are matched items, e.g. the (task, stage, progress-bin) means of
:func:`metrics.pairs.matched_pairs` (row i of A = human, row i of B = robot). All
functions accept different widths ``dA != dB``, use float64 internally on small
reduced matrices and never form an ``m x m`` Gram matrix (products are taken in
feature space, in row blocks), so they are safe for large ``m`` too.

=====================  ==========  ==============  =======================================
function               range       perfect         source
=====================  ==========  ==============  =======================================
cka_linear             [0, 1]      1               Kornblith et al. 2019
cka_debiased           <= 1        1               Song et al. 2012; Nguyen et al. 2021
mutual_knn             [0, 1]      1               Huh et al. 2024 (Platonic representation)
procrustes_angular     [0, pi/2]   0               Williams et al. 2021
svcca                  [0, 1]      1               Raghu et al. 2017
=====================  ==========  ==============  =======================================
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import nullcontext
from typing import TypeVar

import numpy as np
from threadpoolctl import threadpool_limits

from metrics.knn import knn

F = TypeVar("F", bound=Callable)

_ROW_BLOCK = 8192  # rows per block when accumulating (d x d) products
_SMALL = 2_000_000  # m * d below which BLAS runs on one thread


def _small_single_threaded(func: F) -> F:
    """Run on one BLAS thread when A and B are small (typical matched pairs: ~100 x 512).

    On a busy machine, multi-threaded BLAS on small matrices spends its time waiting for
    threads (measured 10-100x slower on 2 loaded cores); large inputs keep all threads.
    """
    @functools.wraps(func)
    def wrapper(A, B, *args, **kwargs):
        with threadpool_limits(limits=1) if max(np.size(A), np.size(B)) <= _SMALL else nullcontext():
            return func(A, B, *args, **kwargs)
    return wrapper  # type: ignore[return-value]

__all__ = ["MIN_PAIRS", "cka_debiased", "cka_linear", "min_pairs", "mutual_knn", "mutual_knn_samples",
           "paired_scores", "procrustes_angular", "svcca"]

# The fewest matched pairs (rows) on which :func:`paired_scores` reports cka_linear, cka_debiased,
# procrustes_angular and svcca (nan below). m column-centred rows span at most m - 1 dimensions: at m = 2 any
# two non-constant representations score cka_linear 1, procrustes_angular 0 and svcca 1 (two centred rows are
# one line, up to scale), whatever the data; at m = 3 two triangles are compared (independent random 64-d rows
# score cka_linear 0.97 and procrustes_angular 0.12 on average). Four is the fewest rows the unbiased HSIC of
# cka_debiased is defined on (it divides by m - 3) and the fewest with which svcca's own cap (m // 4 directions)
# keeps a direction; one minimum for the four keeps them defined in the same scopes. Above it the biased scores
# still flatter small m (independent rows of more dimensions than rows score cka_linear near 1): judge them
# against their null.
MIN_PAIRS = 4


def min_pairs(k: int = 10) -> dict[str, int]:
    """The fewest matched pairs each score of :func:`paired_scores` needs (``mutual_knn``: ``k + 1``)."""
    return {"cka_linear": MIN_PAIRS, "cka_debiased": MIN_PAIRS, "mutual_knn": k + 1,
            "procrustes_angular": MIN_PAIRS, "svcca": MIN_PAIRS}


def _check_pair(A: np.ndarray, B: np.ndarray, min_rows: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    A, B = np.asarray(A), np.asarray(B)
    if A.ndim != 2 or B.ndim != 2:
        raise ValueError(f"{name} needs 2-D arrays A (m, dA) and B (m, dB); got shapes {A.shape} and {B.shape}")
    if A.shape[0] != B.shape[0]:
        raise ValueError(
            f"{name} needs row-aligned A and B (row i of each is the same item); got {A.shape[0]} and "
            f"{B.shape[0]} rows; build them with metrics.pairs.matched_pairs"
        )
    if A.shape[0] < min_rows:
        raise ValueError(
            f"{name} needs at least {min_rows} paired rows; got {A.shape[0]}; "
            "pair more items (more tasks, stages or progress bins)"
        )
    for label, M in (("A", A), ("B", B)):
        if not np.isfinite(M).all():
            raise ValueError(f"{name}: {label} contains NaN or infinite values; drop or fix those rows")
    return A, B


def _centered(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    return X - X.mean(axis=0, keepdims=True)


def _cross(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """``A.T @ B`` accumulated over row blocks (bounded BLAS calls)."""
    out = np.zeros((A.shape[1], B.shape[1]), dtype=np.float64)
    for start in range(0, A.shape[0], _ROW_BLOCK):
        out += A[start : start + _ROW_BLOCK].T @ B[start : start + _ROW_BLOCK]
    return out


def _reduce(X: np.ndarray) -> np.ndarray:
    """An (m, r) matrix with the same Gram ``X X^T`` as ``X`` and r <= min(m, d): ``U S`` of the thin SVD.

    Every metric here is invariant to orthogonal transforms of the columns, so working on
    the reduced matrix is exact and keeps products small when d is large.
    """
    if X.shape[1] <= X.shape[0]:
        return X
    U, S, _ = np.linalg.svd(X, full_matrices=False)
    return U * S


@_small_single_threaded
def cka_linear(A: np.ndarray, B: np.ndarray) -> float:
    """Linear centred kernel alignment (Kornblith et al. 2019, "Similarity of Neural Network
    Representations Revisited"), feature-space form.

    ``CKA = ||B^T A||_F^2 / (||A^T A||_F ||B^T B||_F)`` on column-centred A (m, dA), B (m, dB);
    rows are *not* normalised. Range [0, 1], higher is more similar; 1 iff B is an
    orthogonal transform of A up to isotropic scale. Invariant to rotation, isotropic
    scaling and translation, not to general invertible linear maps. Cost O(m d^2)
    (O(m^2 d) after an SVD reduction when d > m). Biased: independent random
    representations score about d/m, not 0; see :func:`cka_debiased`.
    """
    A, B = _check_pair(A, B, 2, "cka_linear")
    A, B = _reduce(_centered(A)), _reduce(_centered(B))
    num = np.sum(_cross(B, A) ** 2)
    den = np.linalg.norm(_cross(A, A)) * np.linalg.norm(_cross(B, B))
    return float(num / den) if den > 0 else float("nan")


def _debiased_dot(xty: float, rows_x: np.ndarray, rows_y: np.ndarray, norm_x: float, norm_y: float, m: int) -> float:
    # m (m - 3) * unbiased HSIC of centred linear kernels, as in Kornblith's reference code
    return xty - m / (m - 2.0) * float(rows_x @ rows_y) + norm_x * norm_y / ((m - 1.0) * (m - 2.0))


@_small_single_threaded
def cka_debiased(A: np.ndarray, B: np.ndarray) -> float:
    """Debiased linear CKA: CKA with the unbiased HSIC estimator (Song et al. 2012, "Feature
    Selection via Dependence Maximization"; used for CKA by Nguyen et al. 2021 "Do Wide and
    Deep Networks Learn the Same Things?").

    Same inputs as :func:`cka_linear`; needs m >= 4 rows. About 0 for independent
    representations (it can be slightly negative), 1 for rotated/scaled copies; higher is
    more similar. Follows the feature-space ``feature_space_linear_cka(debiased=True)`` of
    Kornblith et al.'s reference notebook (column-centred inputs); nan when an estimated
    self-similarity is not positive (too few rows).
    """
    A, B = _check_pair(A, B, 4, "cka_debiased")
    m = A.shape[0]
    A, B = _reduce(_centered(A)), _reduce(_centered(B))
    rows_a, rows_b = np.einsum("ij,ij->i", A, A), np.einsum("ij,ij->i", B, B)
    na, nb = float(rows_a.sum()), float(rows_b.sum())
    xy = _debiased_dot(float(np.sum(_cross(B, A) ** 2)), rows_a, rows_b, na, nb, m)
    xx = _debiased_dot(float(np.sum(_cross(A, A) ** 2)), rows_a, rows_a, na, na, m)
    yy = _debiased_dot(float(np.sum(_cross(B, B) ** 2)), rows_b, rows_b, nb, nb, m)
    if xx <= 0 or yy <= 0:
        return float("nan")
    return float(xy / np.sqrt(xx * yy))


@_small_single_threaded
def mutual_knn_samples(A: np.ndarray, B: np.ndarray, k: int = 10) -> np.ndarray:
    """Per row: share of its k nearest rows in A-space that are also among its k nearest in B-space.

    ``(m,)`` float in [0, 1]. See :func:`mutual_knn`.
    """
    A, B = _check_pair(A, B, k + 1, "mutual_knn")
    if k < 1:
        raise ValueError(f"k must be >= 1; got {k}")
    na = knn(A, None, k, "cosine").indices
    nb = knn(B, None, k, "cosine").indices
    overlap = (na[:, :, None] == nb[:, None, :]).any(axis=2).sum(axis=1)
    return overlap / float(k)


def mutual_knn(A: np.ndarray, B: np.ndarray, k: int = 10) -> float:
    """Mutual k-nearest-neighbour alignment (Huh et al. 2024, "The Platonic Representation
    Hypothesis").

    Rows are L2-normalised; for each row i the k nearest other rows are found in A-space
    and in B-space (cosine, self excluded) and the overlap ``|N_A(i) & N_B(i)| / k`` is
    averaged. Range [0, 1], higher is better; chance is about ``k / (m - 1)``. Needs m > k.
    Unlike the other metrics in ``metrics/``, it searches by itself: the neighbours are
    those of the small paired matrices, not of the shared latent graph. Ties are broken by
    FAISS's order (the reference uses ``torch.topk``).
    """
    return float(mutual_knn_samples(A, B, k).mean())


@_small_single_threaded
def procrustes_angular(A: np.ndarray, B: np.ndarray) -> float:
    """Angular Procrustes shape distance (Williams et al. 2021, "Generalized Shape Metrics on
    Neural Representations", alpha = 1).

    A and B are column-centred and scaled to unit Frobenius norm; the distance is
    ``arccos(||A^T B||_*)`` (nuclear norm = the best alignment under any rotation).
    Range [0, pi/2] radians, lower is better; 0 iff B is a rotated, scaled and translated
    copy of A. A true metric. Widths may differ (the narrower one is implicitly
    zero-padded, as in the reference). Cost O(m d min(m, d)).
    """
    A, B = _check_pair(A, B, 2, "procrustes_angular")
    A, B = _reduce(_centered(A)), _reduce(_centered(B))
    na, nb = np.linalg.norm(A), np.linalg.norm(B)
    if na == 0 or nb == 0:
        raise ValueError("procrustes_angular: A or B is constant across rows (zero after centring); "
                         "the shape distance is undefined")
    nuclear = np.linalg.svd(_cross(A / na, B / nb), compute_uv=False).sum()
    return float(np.arccos(np.clip(nuclear, -1.0, 1.0)))


def _principal(X: np.ndarray, keep: float) -> np.ndarray:
    """Orthonormal basis (m, r) of the top principal directions explaining ``keep`` of the variance."""
    U, S, _ = np.linalg.svd(X, full_matrices=False)
    var = S**2
    if var.sum() == 0:
        raise ValueError("svcca: A or B is constant across rows (zero variance after centring)")
    r = int(np.searchsorted(np.cumsum(var) / var.sum(), keep - 1e-12) + 1)
    return U[:, : min(r, len(S))]


@_small_single_threaded
def svcca(A: np.ndarray, B: np.ndarray, keep: float = 0.99, max_dims: int | None = None) -> float:
    """Singular vector canonical correlation analysis (Raghu et al. 2017, "SVCCA").

    Each of A, B is column-centred and reduced by SVD to the fewest directions explaining
    ``keep`` (default 99 %) of its variance, but at most ``max_dims`` (default ``m // 4``);
    the result is the mean of the canonical correlations between the two reduced
    subspaces (cosines of their principal angles). Range [0, 1], higher is better; 1 for
    rotated and scaled copies (and for copies related by any invertible linear map when
    nothing is dropped).

    Deviations from google/svcca: (1) the ``max_dims`` cap. CCA needs many more rows than
    kept directions: with r directions among m rows even independent data scores about
    ``sqrt(r / m)``, and r close to m gives 1 for anything. Matched pairs have few rows
    (tasks x stages x bins), so the cap keeps chance well below 1 (about 0.5 at r = m/4);
    judge values against a null (shuffled pairs), not against 0. Pass ``max_dims`` large
    for the plain 99 % rule. (2) Exact CCA via orthonormal bases (QR/SVD) instead of the
    epsilon-regularised covariance inversion.
    """
    A, B = _check_pair(A, B, 2, "svcca")
    if not 0 < keep <= 1:
        raise ValueError(f"keep must be in (0, 1]; got {keep}")
    m = A.shape[0]
    cap = max(1, m // 4) if max_dims is None else int(max_dims)
    if cap < 1:
        raise ValueError(f"max_dims must be >= 1 or None; got {max_dims}")
    Ua, Ub = _principal(_centered(A), keep)[:, :cap], _principal(_centered(B), keep)[:, :cap]
    rho = np.linalg.svd(Ua.T @ Ub, compute_uv=False)
    return float(np.clip(rho, 0.0, 1.0).mean())


@_small_single_threaded
def paired_scores(A: np.ndarray, B: np.ndarray, k: int = 10) -> dict[str, float]:
    """All paired-similarity scores of A and B as a JSON-ready dict, with ``n_pairs`` (the rows m).

    A score is nan when m is below its minimum (:func:`min_pairs`: :data:`MIN_PAIRS` rows, ``k + 1`` for
    ``mutual_knn``) instead of raising or returning a value fixed by m, so a report over many small stages keeps
    going; callers say why from ``n_pairs``.
    """
    A, B = _check_pair(A, B, 0, "paired_scores")
    m = A.shape[0]
    scores = {"cka_linear": cka_linear, "cka_debiased": cka_debiased, "mutual_knn": lambda a, b: mutual_knn(a, b, k),
              "procrustes_angular": procrustes_angular, "svcca": svcca}
    need = min_pairs(k)
    out: dict[str, float] = {name: fn(A, B) if m >= need[name] else float("nan") for name, fn in scores.items()}
    out["n_pairs"] = m
    return out
