"""How faithful a 2-D layout is to the latent space it maps (a pure function of arrays)."""

from __future__ import annotations

import numpy as np

from metrics.knn import prepare


def trustworthiness(X: np.ndarray, coords: np.ndarray, *, metric: str = "cosine", k: int = 10,
                    max_points: int = 2000, seed: int = 0) -> float:
    """scikit-learn's trustworthiness of ``coords`` for ``X`` on a random subsample.

    In [0, 1], higher is better: 1 means every 2-D neighbour is also a neighbour in
    the latent space. For cosine, rows are L2-normalised and compared by Euclidean
    distance (same neighbour ranking).
    """
    from sklearn.manifold import trustworthiness as sk_trust

    n = X.shape[0]
    rows = np.arange(n)
    if n > max_points:
        rows = np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))
    k = min(k, max((len(rows) - 1) // 2 - 1, 1))
    Xs = prepare(np.asarray(X[rows]), "cosine" if metric == "cosine" else "l2")
    return float(sk_trust(Xs, np.asarray(coords[rows], dtype=np.float32), n_neighbors=k, metric="euclidean"))
