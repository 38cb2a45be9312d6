"""Mixing of embodiments: is the embodiment (the "batch") mixed away in the latent space?

Single-cell data integration, transposed: embodiment is the batch to be removed,
task stage the label to be kept. kNN-based metrics take a :class:`~metrics.knn.Neighbors`
graph computed once; silhouette-based ones take the matrix (run them on a subsample
above a few ten thousand rows). iLISI lives in :mod:`metrics.lisi`.
"""

from __future__ import annotations

import warnings

from typing import NamedTuple

import numpy as np
from scipy.stats import chi2

from metrics.knn import Metric, Neighbors
from metrics.silhouette import Between, encode, silhouette_samples


def _check_embodiments(embodiment: np.ndarray) -> tuple[np.ndarray, int]:
    codes, uniques = encode(embodiment)
    if len(uniques) < 2:
        raise ValueError(
            f"mixing metrics need at least 2 embodiments, got only {list(uniques)}; "
            "give latents of both human and robot samples"
        )
    return codes, len(uniques)


def _neighbor_codes(neighbors: Neighbors, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if len(neighbors) != len(codes):
        raise ValueError(f"the graph has {len(neighbors)} rows but labels has {len(codes)}; they must be row-aligned")
    valid = neighbors.indices >= 0
    return np.where(valid, codes[np.maximum(neighbors.indices, 0)], -1), valid


class KBETResult(NamedTuple):
    """kBET outcome: the acceptance rate and the per-sample chi-square test."""

    acceptance_rate: float  # share of samples whose neighbourhood is not rejected; higher is better
    statistic: np.ndarray  # (n,) chi-square statistics
    p_value: np.ndarray  # (n,) p-values


def kbet_test(neighbors: Neighbors, embodiment: np.ndarray, alpha: float = 0.05) -> KBETResult:
    """k-nearest-neighbour batch-effect test (Buttner et al. 2019) of each sample.

    Follows scib-metrics' ``kbet`` (itself after Pegasus): the embodiment counts among
    a sample's k neighbours are compared with the global embodiment proportions by a
    chi-square test with ``L - 1`` degrees of freedom; a sample is accepted when
    ``p >= alpha``. No ``adapt`` heuristics and no per-label diffusion graph
    (scib's ``kbet_per_label``); use the suite's ``by="stage"`` for per-stage values.

    Parameters
    ----------
    neighbors : Neighbors, ``(n, k)`` graph (the suite uses k = 50)
    embodiment : (n,) labels, at least 2 distinct
    alpha : significance level

    Returns
    -------
    KBETResult with acceptance rate in [0, 1] (higher is better mixing).
    """
    codes, L = _check_embodiments(embodiment)
    nb, valid = _neighbor_codes(neighbors, codes)
    expected_freq = np.bincount(codes, minlength=L) / len(codes)
    observed = np.stack([(nb == label).sum(axis=1) for label in range(L)], axis=1).astype(np.float64)
    expected = expected_freq[None, :] * valid.sum(axis=1, keepdims=True)
    stat = (np.square(observed - expected) / expected).sum(axis=1)
    p = chi2.sf(stat, L - 1)
    return KBETResult(float((p >= alpha).mean()), stat, p)


def kbet(neighbors: Neighbors, embodiment: np.ndarray, alpha: float = 0.05) -> float:
    """kBET acceptance rate in [0, 1]; higher is better. See :func:`kbet_test`."""
    return kbet_test(neighbors, embodiment, alpha).acceptance_rate


class MixingSamples(NamedTuple):
    """Per-sample neighbourhood mixing: observed and chance shares of other-embodiment neighbours."""

    observed: np.ndarray  # (n,) share of a sample's neighbours from another embodiment
    expected: np.ndarray  # (n,) the share expected if embodiments were randomly placed


def knn_mixing_samples(neighbors: Neighbors, embodiment: np.ndarray) -> MixingSamples:
    """Observed and expected share of other-embodiment neighbours of each sample.

    The expected share of a sample of embodiment e is ``(n - n_e) / (n - 1)``, the
    share of other-embodiment samples among all other samples.
    """
    codes, L = _check_embodiments(embodiment)
    nb, valid = _neighbor_codes(neighbors, codes)
    other = ((nb != codes[:, None]) & valid).sum(axis=1) / np.maximum(valid.sum(axis=1), 1)
    counts = np.bincount(codes, minlength=L)
    n = len(codes)
    expected = (n - counts[codes]) / (n - 1)
    return MixingSamples(other.astype(np.float64), expected.astype(np.float64))


def knn_mixing_score(samples: MixingSamples, embodiment: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Aggregate :class:`MixingSamples`: per embodiment, mean observed share / expected share, averaged.

    ``weights`` are non-negative row weights (bootstrap counts or a scope mask).
    Embodiments with zero total weight are skipped.
    """
    codes, uniques = encode(embodiment)
    w = np.ones(len(codes)) if weights is None else np.asarray(weights, dtype=np.float64)
    ratios = []
    for c in range(len(uniques)):
        sel = (codes == c) & (w > 0)
        if not sel.any():
            continue
        obs = np.average(samples.observed[sel], weights=w[sel])
        exp = np.average(samples.expected[sel], weights=w[sel])
        if exp > 0:
            ratios.append(obs / exp)
    return float(np.mean(ratios)) if ratios else float("nan")


def knn_embodiment_mixing(neighbors: Neighbors, embodiment: np.ndarray) -> float:
    """Observed share of other-embodiment neighbours over the share expected by chance.

    For each embodiment, the mean share of a sample's k neighbours that come from
    another embodiment, divided by the share expected under random placement
    ``(n - n_e) / (n - 1)``; averaged over embodiments (so a small embodiment counts
    as much as a large one). Related to the batch-mixing entropy of Haghverdi et al.
    2018, but read as a ratio.

    Returns
    -------
    float in [0, max(1 / expected)]: 0 = embodiments fully separated, 1 = mixed as by
    chance. Higher is better up to 1 (above 1 the embodiments avoid each other's kind).
    """
    return knn_mixing_score(knn_mixing_samples(neighbors, embodiment), embodiment)


class GroupedSilhouette(NamedTuple):
    """Per-sample scores of a within-group silhouette and which samples were scored."""

    scores: np.ndarray  # (n,) 1 - |silhouette of embodiment| within the sample's stage; nan where skipped
    groups: np.ndarray  # (n,) the stage of each sample


def embodiment_silhouette_samples(X: np.ndarray, embodiment: np.ndarray, stage: np.ndarray,
                                  metric: Metric | str = Metric.L2,
                                  between: Between | str = Between.NEAREST) -> GroupedSilhouette:
    """``1 - |silhouette|`` of embodiments within each stage, per sample (scib ``silhouette_batch``).

    Stages holding a single embodiment, or as many embodiments as samples, are skipped
    (``nan``), as in scib-metrics.
    """
    stage = np.asarray(stage)
    emb, _ = _check_embodiments(np.asarray(embodiment))
    scores = np.full(len(stage), np.nan)
    for rows in _group_rows(stage):
        n_emb = np.count_nonzero(np.bincount(emb[rows]))
        if n_emb == 1 or n_emb == len(rows):
            continue
        sil = silhouette_samples(X[rows], emb[rows], metric, between)  # codes: the same clusters as the labels
        scores[rows] = 1.0 - np.abs(sil)
    return GroupedSilhouette(scores, stage)


def _group_rows(groups: np.ndarray) -> list[np.ndarray]:
    """The (ascending) row indices of each group, in sorted group order (as ``np.unique``)."""
    codes, uniques = encode(groups)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(uniques) + 1))
    return [order[bounds[g] : bounds[g + 1]] for g in range(len(uniques))]


def grouped_silhouette_score(samples: GroupedSilhouette, weights: np.ndarray | None = None) -> float:
    """Mean over stages of each stage's (weighted) mean score; ``nan`` if no stage was scored."""
    w = np.ones(len(samples.scores)) if weights is None else np.asarray(weights, dtype=np.float64)
    codes, uniques = encode(samples.groups)
    keep = (w > 0) & ~np.isnan(samples.scores)
    codes, w, scores = codes[keep], w[keep], samples.scores[keep]
    total = np.bincount(codes, weights=w, minlength=len(uniques))
    scored = np.bincount(codes, minlength=len(uniques)) > 0
    means = np.bincount(codes, weights=w * scores, minlength=len(uniques))[scored] / total[scored]
    return float(np.mean(means)) if len(means) else float("nan")


def silhouette_embodiment(X: np.ndarray, embodiment: np.ndarray, stage: np.ndarray,
                          metric: Metric | str = Metric.L2) -> float:
    """Silhouette of embodiments within stages, rescaled so 1 is best (scib ``silhouette_batch``).

    Luecken et al. 2022: within each stage, the silhouette width of each sample with
    embodiment as the cluster label, ``1 - |s|``, averaged per stage, then over stages.

    Parameters
    ----------
    X : (n, d) float32; O(n^2) work (block-wise, no n x n matrix): subsample large sets
    embodiment, stage : (n,) labels
    metric : "l2" (Euclidean, scib's default) or "cosine"

    Returns
    -------
    float in [0, 1]; higher is better (1 = embodiments indistinguishable within stages).
    """
    return grouped_silhouette_score(embodiment_silhouette_samples(X, embodiment, stage, metric))


def bras(X: np.ndarray, embodiment: np.ndarray, stage: np.ndarray, metric: Metric | str = Metric.COSINE) -> float:
    """Batch-removal adapted silhouette (BRAS) of embodiments within stages.

    Rautenstrauch & Ohler 2025, scib-metrics ``bras`` defaults: cosine distance and
    ``between_cluster_distances="mean_other"`` (mean distance to all samples of the
    other embodiments, not the nearest one), ``1 - |s|`` averaged per stage, then over
    stages. With two embodiments it equals :func:`silhouette_embodiment` under the same
    metric.

    Returns
    -------
    float in [0, 1]; higher is better.
    """
    return grouped_silhouette_score(embodiment_silhouette_samples(X, embodiment, stage, metric, Between.MEAN_OTHER))


def embodiment_probe_acc(X: np.ndarray, embodiment: np.ndarray, groups: np.ndarray, n_splits: int = 5,
                         seed: int = 0, max_iter: int = 500) -> float:
    """Balanced accuracy of a linear probe predicting embodiment, cross-validated by episode.

    A standardised logistic regression (scikit-learn, L2, C=1) is fitted with
    ``StratifiedGroupKFold`` so no episode is split between train and test; the
    balanced accuracy of the pooled out-of-fold predictions is returned.

    Parameters
    ----------
    X : (n, d) float array
    embodiment : (n,) labels, at least 2 distinct, each with >= 2 groups
    groups : (n,) episode keys (rows of one episode stay in one fold)
    n_splits : folds, lowered to the fewest episodes of any embodiment

    Returns
    -------
    float in [0, 1]; 1 / #embodiments (0.5 for two) is perfect mixing, 1 is full separation.
    Lower is better.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import StratifiedGroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    codes, L = _check_embodiments(embodiment)
    groups = np.asarray(groups)
    per_class = [len(np.unique(groups[codes == c])) for c in range(L)]
    folds = min(n_splits, min(per_class))
    if folds < 2:
        raise ValueError(
            f"the embodiment probe needs at least 2 episodes of every embodiment for grouped "
            f"cross-validation, got {dict(zip(np.unique(embodiment).tolist(), per_class))} episodes"
        )
    pred = np.empty_like(codes)
    cv = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, test in cv.split(X, codes, groups):
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter))
        with warnings.catch_warnings():  # separable classes stop lbfgs early; the fit is still right
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X[train], codes[train])
        pred[test] = model.predict(X[test])
    return float(balanced_accuracy_score(codes, pred))
