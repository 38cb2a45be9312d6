"""The range of values each metric of the suite can take, read from its definition.

:mod:`metrics.families` puts each range on the metric's :class:`~metrics.spec.MetricSpec` (``bounds``),
and the suite clips every interval it reports (overall and per scope) to it
(:func:`metrics.bootstrap.centred_interval`): an interval of ``estimate +- t x sd`` can otherwise leave
the range (a precision@1 interval of [-0.04, 0.31]). The range holds the estimate and the value the
interval describes (the estimate's expectation), so clipping cannot lower coverage and the clipped
interval still contains the estimate. ``inf`` marks an open side; a metric missing here is not clipped.
"""

from __future__ import annotations

import math

_UNIT = (0.0, 1.0)
_CORRELATION = (-1.0, 1.0)
_NON_NEGATIVE = (0.0, math.inf)

BOUNDS: dict[str, tuple[float, float]] = {
    # (median per-sample LISI - 1) / (L - 1) and (L - median) / (L - 1); LISI (inverse Simpson) lies in [1, L]
    "ilisi": _UNIT,
    "clisi": _UNIT,
    "kbet": _UNIT,  # share of samples whose kBET test accepts
    "silhouette_embodiment": _UNIT,  # mean of 1 - |silhouette|, silhouettes in [-1, 1]
    "bras": _UNIT,  # the same with the mean distance to the other embodiments
    # observed share of other-embodiment neighbours over the chance share (n - n_e) / (n - 1): no upper bound
    # but 1 / (chance share), which depends on the data
    "knn_embodiment_mixing": _NON_NEGATIVE,
    "embodiment_probe_acc": _UNIT,  # balanced accuracy
    "silhouette_stage": _UNIT,  # (mean silhouette + 1) / 2
    "stage_nmi": _UNIT,
    "stage_ari": (-0.5, 1.0),  # adjusted Rand index: bounded below by -0.5 (scikit-learn's adjusted_rand_score)
    "stage_transfer_acc_robot_to_human": _UNIT,  # balanced accuracy
    "stage_transfer_acc_human_to_robot": _UNIT,
    "cka_linear": _UNIT,  # ||B^T A||_F^2 / (||A^T A||_F ||B^T B||_F)
    # unbiased HSIC's over the root of their product: an inner product of U-centred Gram matrices over the
    # product of their norms (Cauchy-Schwarz), so in [-1, 1]; about 0 for independent representations
    "cka_debiased": _CORRELATION,
    "mutual_knn": _UNIT,  # mean overlap |N_A & N_B| / k
    "procrustes_angular": (0.0, math.pi / 2),  # arccos of a nuclear norm in [0, 1] (radians)
    "svcca": _UNIT,  # mean canonical correlation (clipped to [0, 1] in metrics.paired.svcca)
    # unbiased MMD^2 with a Gaussian kernel (values in [0, 1]): two within-sample kernel means minus twice the
    # cross mean, so in [-2, 2]; the estimate can be slightly negative, so 0 is not its lower bound
    "mmd_rbf": (-2.0, 2.0),
    "frechet_distance": _NON_NEGATIVE,  # clipped at 0 in metrics.distribution.frechet_distance
    "sliced_wasserstein": _NON_NEGATIVE,  # root of a mean of squared 1-D Wasserstein distances
    "sinkhorn_divergence": _NON_NEGATIVE,  # clipped at 0 by POT's empirical_sinkhorn_divergence
    # per-query hit@k, AP@R and reciprocal rank lie in [0, 1], and so do their means
    **{f"retrieval_{name}_{direction}": _UNIT
       for name in ("precision_at_1", "map_at_r", "mrr", "recall_at_5", "recall_at_10")
       for direction in ("robot_to_human", "human_to_robot")},
    "kendall_tau": _CORRELATION,  # Kendall's tau-b
    "cycle_consistency": _UNIT,  # share of frames whose match cycles back
}
