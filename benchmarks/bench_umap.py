"""UMAP on the shared kNN graph versus umap-learn's default path: time and trustworthiness.

Same data, same run, same UMAP parameters (n_neighbors 15, min_dist 0.1, cosine,
umap-learn's default epochs and spectral init, the same random_state). Timed:

* the shared graph: :func:`probe.cache.graphs.shared_graph` at k=90, what ``probe metrics``
  searches anyway and caches; paid once per store layer, reported separately;
* ours: what :func:`probe.projection.project.project` runs for a full-size layout once the
  metrics have run: read the graph from the cache, slice 14 neighbours, fit UMAP;
* ours from scratch: the same with the graph searched here at k=14 (no metrics run);
* umap-learn's default path: ``umap.UMAP(...).fit_transform(X)`` (NN-descent + fit).

Both UMAP paths are JIT-warmed on 1,000 points first. Goal: ours >= 1.5x faster
than the default path at 100k points, trustworthiness within 0.01.

    .venv/bin/python benchmarks/bench_umap.py --n 100000 --dim 256
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--epochs", type=int, default=None, help="UMAP epochs (default: umap-learn's choice, 200)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--trust-points", type=int, default=2000)
    p.add_argument("--out", type=Path, default=None, help="also write the results as JSON here")
    args = p.parse_args()

    import umap

    from conftest import clustered_latents, synthetic_meta
    from probe.cache.graphs import shared_graph
    from probe.projection.layout import ProjectionConfig
    from probe.projection.project import _fit_umap
    from metrics.layout_quality import trustworthiness
    from probe.store.writer import write_store

    warnings.filterwarnings("ignore", message=".*n_jobs value.*")
    frames, tasks, stages = 50, ("a", "b", "c"), ("s0", "s1", "s2", "s3", "s4")
    episodes = max(1, args.n // (2 * len(tasks) * frames))
    meta = synthetic_meta(n_episodes=episodes, frames=frames, tasks=tasks, stages=stages)
    X = clustered_latents(meta, dim=args.dim, shift=1.0, noise=1.0, seed=args.seed)
    n = len(X)
    config = ProjectionConfig(max_points=None, n_epochs=args.epochs, seed=args.seed)
    common = dict(n_neighbors=config.n_neighbors, min_dist=config.min_dist, metric="cosine", n_epochs=args.epochs,
                  random_state=args.seed)

    with tempfile.TemporaryDirectory(prefix="bench-umap-") as tmp:
        store = write_store(Path(tmp) / "store", meta, {"layer": X})
        cache = Path(tmp) / "cache"
        # JIT warm-up (numba) of both paths, so neither timing includes compilation
        _fit_umap(X[:1000], config, None, None, False)
        umap.UMAP(**common).fit_transform(X[:1000])

        t0 = time.perf_counter()
        shared_graph(X, fingerprint=store.fingerprint, layer="layer", k=90, cache_dir=cache)
        t_graph = time.perf_counter() - t0

        t0 = time.perf_counter()
        graph = shared_graph(X, fingerprint=store.fingerprint, layer="layer", k=90, cache_dir=cache)
        ours = _fit_umap(X, config, None, graph, False)
        t_ours = time.perf_counter() - t0

        t0 = time.perf_counter()
        ours_scratch = _fit_umap(X, config, None, None, False)
        t_scratch = time.perf_counter() - t0

        t0 = time.perf_counter()
        theirs = umap.UMAP(**common).fit_transform(X)
        t_theirs = time.perf_counter() - t0

    trust = {name: trustworthiness(X, coords, max_points=args.trust_points, seed=args.seed)
             for name, coords in (("ours", ours), ("ours_scratch", ours_scratch), ("umap_default", theirs))}
    result = {
        "n": n, "dim": args.dim, "epochs": args.epochs or "umap-learn default",
        "shared_graph_k90_s": round(t_graph, 2),
        "ours_with_shared_graph_s": round(t_ours, 2),
        "ours_from_scratch_s": round(t_scratch, 2),
        "umap_default_s": round(t_theirs, 2),
        "speedup_shared_graph": round(t_theirs / t_ours, 2),
        "speedup_from_scratch": round(t_theirs / t_scratch, 2),
        "trustworthiness": {k: round(v, 4) for k, v in trust.items()},
        "trust_diff_ours_minus_default": round(trust["ours"] - trust["umap_default"], 4),
    }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
