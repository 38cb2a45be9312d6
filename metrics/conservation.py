"""Conservation of task stages: does the latent space keep stages apart while mixing embodiments?

The "bio-conservation" side of single-cell integration benchmarks (Luecken et al.
2022), with task stage as the cell type. cLISI lives in :mod:`metrics.lisi`.
"""

from __future__ import annotations

import warnings

from typing import NamedTuple

import numpy as np

from metrics.knn import Metric, normalize_rows
from metrics.silhouette import encode, silhouette_samples


def _check_stages(stage: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    codes, uniques = encode(stage)
    if len(uniques) < 2:
        raise ValueError(
            f"conservation metrics need at least 2 stages, got only {list(uniques)}; "
            "label the samples' task stages (the 'stage' column) or skip these metrics"
        )
    return codes, uniques


def stage_silhouette_samples(X: np.ndarray, stage: np.ndarray, metric: Metric | str = Metric.L2) -> np.ndarray:
    """Per-sample silhouette width with stage as the cluster label, in [-1, 1]."""
    _check_stages(stage)
    return silhouette_samples(X, np.asarray(stage), metric)


def silhouette_stage(X: np.ndarray, stage: np.ndarray, metric: Metric | str = Metric.L2) -> float:
    """Average silhouette width of stages, rescaled to [0, 1] (scib ``silhouette_label``).

    ``(mean silhouette + 1) / 2`` (Luecken et al. 2022). O(n^2) work done block-wise in
    float32: subsample large sets.

    Returns
    -------
    float in [0, 1]; higher is better (1 = compact, well-separated stages).
    """
    return float((stage_silhouette_samples(X, stage, metric).mean() + 1.0) / 2.0)


class ClusterAgreement(NamedTuple):
    """Agreement of a k-means partition of the latents with the stage labels."""

    nmi: float  # normalised mutual information (arithmetic mean), in [0, 1]; higher is better
    ari: float  # adjusted Rand index, in [-0.5, 1]; 0 is chance, higher is better
    clusters: np.ndarray  # (n,) k-means cluster of each sample


def kmeans_clusters(X: np.ndarray, n_clusters: int, metric: Metric | str = Metric.L2, seed: int = 0,
                    n_init: int = 3) -> np.ndarray:
    """k-means cluster ids of the rows (rows L2-normalised first for cosine)."""
    from sklearn.cluster import KMeans

    Z = normalize_rows(X) if Metric(metric) is Metric.COSINE else np.asarray(X, dtype=np.float32)
    return KMeans(n_clusters=n_clusters, n_init=n_init, random_state=seed).fit_predict(Z)


def stage_cluster_agreement(X: np.ndarray, stage: np.ndarray, metric: Metric | str = Metric.L2,
                            seed: int = 0) -> ClusterAgreement:
    """NMI and ARI between k-means clusters (k = #stages) of the latents and the stages.

    Follows scib-metrics' ``nmi_ari_cluster_labels_kmeans`` (Luecken et al. 2022) with
    scikit-learn's ``KMeans`` (3 initialisations, seeded) instead of scib's JAX k-means;
    cosine spaces are clustered on unit-normalised rows.
    """
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    codes, uniques = _check_stages(stage)
    if len(codes) <= len(uniques):
        raise ValueError(f"k-means with {len(uniques)} clusters needs more than {len(uniques)} samples, got {len(codes)}")
    clusters = kmeans_clusters(X, len(uniques), metric, seed)
    return ClusterAgreement(float(normalized_mutual_info_score(codes, clusters)),
                            float(adjusted_rand_score(codes, clusters)), clusters)


def stage_nmi(X: np.ndarray, stage: np.ndarray, metric: Metric | str = Metric.L2, seed: int = 0) -> float:
    """NMI of k-means clusters vs stages, in [0, 1]; higher is better. See :func:`stage_cluster_agreement`."""
    return stage_cluster_agreement(X, stage, metric, seed).nmi


def stage_ari(X: np.ndarray, stage: np.ndarray, metric: Metric | str = Metric.L2, seed: int = 0) -> float:
    """ARI of k-means clusters vs stages, 0 at chance, 1 at best. See :func:`stage_cluster_agreement`."""
    return stage_cluster_agreement(X, stage, metric, seed).ari


class StageTransfer(NamedTuple):
    """A stage classifier trained on one embodiment and tested on another."""

    balanced_accuracy: float  # in [0, 1]; chance is 1 / len(stages); higher is better
    stages: list  # the stages present in both embodiments (the only ones used)


def stage_transfer_acc(X: np.ndarray, stage: np.ndarray, embodiment: np.ndarray, source: str | list[str],
                       target: str | list[str], max_iter: int = 500) -> StageTransfer:
    """Balanced accuracy of a linear stage classifier trained on ``source`` rows, tested on ``target`` rows.

    A standardised multinomial logistic regression (scikit-learn, L2, C=1). Only the
    stages present in both embodiments are used: a stage seen by one side only can
    neither be learned nor tested fairly. Zero-shot cross-embodiment transfer in the
    spirit of linear probing (Alain & Bengio 2016).

    Parameters
    ----------
    X : (n, d) float array
    stage, embodiment : (n,) labels
    source, target : embodiment name(s) to train on / test on

    Returns
    -------
    StageTransfer; accuracy in [0, 1], higher is better (chance = 1 / #shared stages).
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    stage = np.asarray(stage)
    embodiment = np.asarray(embodiment)
    src = np.isin(embodiment, np.atleast_1d(source))
    tgt = np.isin(embodiment, np.atleast_1d(target))
    if not src.any() or not tgt.any():
        raise ValueError(
            f"stage transfer needs samples of both {source!r} and {target!r}; "
            f"embodiments present: {sorted(set(embodiment.tolist()))}"
        )
    shared = sorted(set(stage[src].tolist()) & set(stage[tgt].tolist()))
    if len(shared) < 2:
        raise ValueError(
            f"stage transfer needs at least 2 stages present in both {source!r} and {target!r}, got {shared}"
        )
    src &= np.isin(stage, shared)
    tgt &= np.isin(stage, shared)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter))
    with warnings.catch_warnings():  # separable classes stop lbfgs early; the fit is still right
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X[src], stage[src])
    return StageTransfer(float(balanced_accuracy_score(stage[tgt], model.predict(X[tgt]))), shared)
