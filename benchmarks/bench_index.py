"""Benchmark of the retrieval index kinds on synthetic clustered latents (a script, not a test).

For each size (default 100k and 1M human latents of dimension 256, float32) it writes
a real latent store, builds every index kind through :func:`probe.retrieval.index.build_index`
and searches through :meth:`probe.retrieval.index_search.OpenIndex.search` (the code ``probe
retrieve`` runs), reporting:

* build time;
* single-query latency (median over queries, k=10), next to the time it takes to
  read the whole matrix once from memory (``X.sum()`` and a copy give the memory
  bandwidth): exact search of one query cannot beat one pass over the matrix;
* batched queries per second (all queries in one call);
* recall@10 against exact search, for a sweep of nprobe / efSearch / rerank,
  and the fastest setting reaching recall@10 >= 0.95 with its speed-up over exact.

Usage::

    python benchmarks/bench_index.py --sizes 100000            # ~1-2 min on 2 cores
    python benchmarks/bench_index.py --sizes 100000,1000000 --json bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from probe import columns as C  # noqa: E402
from probe.retrieval.index import IndexConfig, build_index  # noqa: E402
from probe.store.writer import write_store  # noqa: E402

SWEEPS = {
    "flat": [{}],
    "hnsw": [{"ef_search": e} for e in (16, 32, 64, 128, 256)],
    "ivf": [{"nprobe": p} for p in (4, 8, 16, 32, 64)],
    "ivfpq": [{"nprobe": p, "rerank": r} for p in (16, 32, 64) for r in (50, 200)],
}


def clustered(n: int, dim: int, n_clusters: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian clusters (as stages of tasks) with a spread of within-cluster scales."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_clusters, dim)).astype(np.float32)
    labels = rng.integers(0, n_clusters, size=n)
    X = np.empty((n, dim), np.float32)
    for s in range(0, n, 1 << 16):
        lab = labels[s : s + (1 << 16)]
        X[s : s + len(lab)] = centers[lab] + 0.5 * rng.normal(size=(len(lab), dim)).astype(np.float32)
    return X, labels


def meta_for(n: int) -> pd.DataFrame:
    frames = 100
    episode = np.arange(n) // frames
    frame = np.arange(n) % frames
    return pd.DataFrame({
        C.SAMPLE_ID: np.char.add("h", np.arange(n).astype(str)).astype(object), C.EMBODIMENT: "human",
        C.DATASET: "bench", C.EPISODE: episode.astype(np.int64), C.FRAME: frame.astype(np.int64),
        C.TIMESTAMP: frame / 30.0, C.TASK: "t", C.STAGE: "s", C.PROGRESS: frame / (frames - 1),
        C.STAGE_PROGRESS: frame / (frames - 1),
    })


def bandwidth(X: np.ndarray) -> dict[str, float]:
    """Seconds to read X once (X.sum) and to copy it, and the implied GB/s."""
    X = np.ascontiguousarray(X)
    X.sum()
    t = min(_timed(lambda: X.sum(dtype=np.float32)) for _ in range(5))
    out = np.empty_like(X)
    c = min(_timed(lambda: np.copyto(out, X)) for _ in range(3))
    gb = X.nbytes / 1e9
    return {"bytes": X.nbytes, "read_s": t, "read_gbps": gb / t, "copy_s": c, "copy_gbps": 2 * gb / c}


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def recall_at(I: np.ndarray, exact: np.ndarray, k: int = 10) -> float:
    return float(np.mean([len(set(a[:k]) & set(b[:k])) / k for a, b in zip(I, exact)]))


def run_size(n: int, dim: int, n_queries: int, n_single: int, kinds: list[str], workdir: Path) -> dict:
    print(f"\n== n={n:,} dim={dim}: generating and writing the store", flush=True)
    X, _ = clustered(n + n_queries, dim, n_clusters=max(32, n // 2000), seed=0)
    Q, X = X[n:].copy(), X[:n]
    store = write_store(workdir / f"store-{n}", meta_for(n), {"latent": X}, overwrite=True)
    bw = bandwidth(X)
    print(f"memory: read {bw['bytes'] / 1e6:.0f} MB once in {bw['read_s'] * 1e3:.1f} ms "
          f"({bw['read_gbps']:.1f} GB/s); copy {bw['copy_s'] * 1e3:.1f} ms ({bw['copy_gbps']:.1f} GB/s)")
    results = {"n": n, "dim": dim, "bandwidth": bw, "kinds": {}}
    exact_I = None
    exact_single = exact_qps = None
    for kind in kinds:
        idx_dir = workdir / f"index-{n}-{kind}"
        t0 = time.perf_counter()
        index = build_index(store, "latent", idx_dir, config=IndexConfig(kind=kind, metric="l2", rerank=0),
                            overwrite=True)
        build_s = time.perf_counter() - t0
        print(f"{kind}: built in {build_s:.1f}s ({index.manifest.params})", flush=True)
        rows = []
        for setting in SWEEPS[kind]:
            search = dict(setting)
            search.setdefault("rerank", 0)
            index.search(Q[:1], 10, **search)  # warm-up
            single = [_timed(lambda i=i: index.search(Q[i : i + 1], 10, **search)) for i in range(n_single)]
            t = time.perf_counter()
            _, I = index.search(Q, 10, **search)
            batch_s = time.perf_counter() - t
            if kind == "flat":
                exact_I, exact_single, exact_qps = I, statistics.median(single), n_queries / batch_s
            rec = recall_at(I, exact_I) if exact_I is not None else float("nan")
            row = {"setting": setting, "single_ms": 1e3 * statistics.median(single), "qps": n_queries / batch_s,
                   "recall_at_10": rec}
            if exact_single:
                row["single_speedup"] = exact_single / statistics.median(single)
                row["batch_speedup"] = row["qps"] / exact_qps
            rows.append(row)
            extra = (f"  x{row['single_speedup']:.1f} single, x{row['batch_speedup']:.1f} batched vs exact"
                     if kind != "flat" else
                     f"  (one read of X: {bw['read_s'] * 1e3:.2f} ms; "
                     f"{row['single_ms'] / (bw['read_s'] * 1e3):.2f}x of it)")
            print(f"  {kind:6s} {json.dumps(setting):32s} single {row['single_ms']:8.3f} ms  "
                  f"batched {row['qps']:10.0f} q/s  recall@10 {rec:.3f}{extra}", flush=True)
        good = [r for r in rows if r["recall_at_10"] >= 0.95]
        best = min(good, key=lambda r: r["single_ms"]) if good else None
        results["kinds"][kind] = {"build_s": build_s, "params": index.manifest.params, "sweep": rows,
                                  "best_at_recall_0.95": best}
        shutil.rmtree(idx_dir, ignore_errors=True)
    shutil.rmtree(workdir / f"store-{n}", ignore_errors=True)
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="100000,1000000", help="comma-separated numbers of human latents")
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--queries", type=int, default=1000, help="queries per batched search")
    p.add_argument("--single", type=int, default=50, help="queries timed one by one")
    p.add_argument("--kinds", default="flat,hnsw,ivf,ivfpq", help="flat must come first (the exact reference)")
    p.add_argument("--threads", type=int, help="FAISS threads (default: all cores)")
    p.add_argument("--workdir", help="where stores and indexes are written (default: a temporary directory)")
    p.add_argument("--json", help="write all numbers to this JSON file")
    args = p.parse_args(argv)
    import faiss

    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    kinds = [k.strip() for k in args.kinds.split(",")]
    if kinds[0] != "flat":
        p.error("--kinds must start with flat (the exact reference for recall)")
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench-index-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"faiss {faiss.__version__}, {os.cpu_count()} cores, {faiss.omp_get_max_threads()} threads, "
          f"workdir {workdir}")
    all_results = []
    try:
        for n in (int(s) for s in args.sizes.split(",")):
            all_results.append(run_size(n, args.dim, args.queries, args.single, kinds, workdir))
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    print("\nsummary (fastest setting with recall@10 >= 0.95):")
    for res in all_results:
        for kind, r in res["kinds"].items():
            b = r["best_at_recall_0.95"]
            if b is None:
                print(f"  n={res['n']:>9,} {kind:6s} no setting reached recall@10 0.95")
                continue
            speed = f"x{b['single_speedup']:.1f} single / x{b['batch_speedup']:.1f} batched vs exact" \
                if "single_speedup" in b and kind != "flat" else "exact"
            print(f"  n={res['n']:>9,} {kind:6s} build {r['build_s']:6.1f}s  {json.dumps(b['setting']):32s} "
                  f"single {b['single_ms']:7.3f} ms  {b['qps']:9.0f} q/s  recall {b['recall_at_10']:.3f}  {speed}")
    if args.json:
        Path(args.json).write_text(json.dumps(all_results, indent=2, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
