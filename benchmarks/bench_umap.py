"""UMAP on the shared FAISS kNN graph versus umap-learn's own NN-descent: time and trustworthiness.

Same data, same run, same UMAP parameters; the FAISS path includes the graph search.
Goal: >= 1.5x faster with trustworthiness within 0.01.

    .venv/bin/python benchmarks/bench_umap.py --n 100000 --dim 256
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def clustered(n: int, dim: int, clusters: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(clusters, dim)).astype(np.float32) * 3
    X = centers[rng.integers(clusters, size=n)] + rng.normal(size=(n, dim)).astype(np.float32)
    return X.astype(np.float32)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--clusters", type=int, default=30)
    p.add_argument("--n-neighbors", type=int, default=15)
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--trust-points", type=int, default=2000)
    args = p.parse_args()

    import umap

    from probe.projection import _umap_knn, trustworthiness

    X = clustered(args.n, args.dim, args.clusters, args.seed)
    common = dict(n_neighbors=args.n_neighbors, min_dist=0.1, metric="cosine", n_epochs=args.epochs,
                  random_state=args.seed)
    # JIT warm-up (numba) of both paths, so neither timing includes compilation
    umap.UMAP(**common, force_approximation_algorithm=True).fit_transform(X[:1000])
    wi, wd = _umap_knn(X[:1000], args.n_neighbors, "cosine", None)
    umap.UMAP(**common, precomputed_knn=(wi, wd), force_approximation_algorithm=True).fit_transform(X[:1000])

    t0 = time.perf_counter()
    idx, dist = _umap_knn(X, args.n_neighbors, "cosine", None)
    t_graph = time.perf_counter() - t0
    ours = umap.UMAP(**common, precomputed_knn=(idx, dist), force_approximation_algorithm=True).fit_transform(X)
    t_ours = time.perf_counter() - t0

    t0 = time.perf_counter()
    theirs = umap.UMAP(**common, force_approximation_algorithm=True).fit_transform(X)
    t_theirs = time.perf_counter() - t0

    tw_ours = trustworthiness(X, ours, max_points=args.trust_points)
    tw_theirs = trustworthiness(X, theirs, max_points=args.trust_points)
    print(json.dumps({
        "n": args.n, "dim": args.dim, "epochs": args.epochs,
        "faiss_graph_s": round(t_graph, 2), "faiss_umap_total_s": round(t_ours, 2),
        "nndescent_umap_total_s": round(t_theirs, 2), "speedup": round(t_theirs / t_ours, 2),
        "trust_faiss": round(tw_ours, 4), "trust_nndescent": round(tw_theirs, 4),
        "trust_diff": round(tw_ours - tw_theirs, 4),
    }, indent=2))


if __name__ == "__main__":
    main()
