"""Timing of the alignment metric families on synthetic latents (a script, not a test).

For n latents of dimension d (half human, half robot; 3 tasks x 4 stages, episodes of
100 frames) it times, each on the inputs the suite gives it:

* matched pairs (all rows) and the five paired-similarity metrics on them;
* MMD^2 with a 200-permutation p-value (subsampled to 2000 per embodiment), Fréchet,
  sliced Wasserstein (all rows) and the Sinkhorn divergence (subsampled to 1000);
* temporal alignment over 200 episode pairs;
* cross-embodiment retrieval in both directions (exact kNN at k = largest label count,
  capped by --r-cap).

Usage::

    python benchmarks/bench_alignment_metrics.py                       # n=20000, d=256: ~1 min on 2 cores
    python benchmarks/bench_alignment_metrics.py --n 200000 --json bench.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from metrics import distribution as dist  # noqa: E402
from metrics.pairs import matched_pairs  # noqa: E402
from metrics.paired import paired_scores  # noqa: E402
from metrics.ranking import combine_labels
from metrics.retrieval import cross_retrieval  # noqa: E402
from metrics.temporal import episode_alignment  # noqa: E402


def synthetic(n: int, d: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    frames = 100
    ep = np.arange(n) // frames
    frame = np.arange(n) % frames
    emb = np.where(ep % 2 == 0, "human", "robot")
    task = np.array(["pick", "push", "pour"])[(ep // 2) % 3]
    stage_i = frame * 4 // frames
    stage = np.array(["reach", "grasp", "lift", "place"])[stage_i]
    stage_progress = (frame - stage_i * frames / 4) / (frames / 4 - 1)
    centers = rng.normal(size=(3, 4, d)).astype(np.float32) * 2
    t_i = (ep // 2) % 3
    X = centers[t_i, stage_i] + rng.normal(size=(n, d)).astype(np.float32)
    X[emb == "robot", 0] += 1.0
    return {"X": X, "embodiment": emb, "task": task, "stage": stage, "stage_progress": np.clip(stage_progress, 0, 1),
            "episode": ep, "frame": frame}


def timed(results: dict, name: str, fn):
    t = time.perf_counter()
    out = fn()
    results[name] = round(time.perf_counter() - t, 3)
    print(f"{name:32s} {results[name]:8.3f} s")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--d", type=int, default=256)
    parser.add_argument("--r-cap", type=int, default=1000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    s = synthetic(args.n, args.d)
    X, emb = s["X"], s["embodiment"]
    P, Q = X[emb == "human"], X[emb == "robot"]
    res: dict[str, float] = {"n": args.n, "d": args.d}
    pairs = timed(res, "matched_pairs", lambda: matched_pairs(X, emb, s["task"], s["stage"], s["stage_progress"]))
    timed(res, "paired_scores", lambda: paired_scores(pairs.A, pairs.B))
    timed(res, "mmd_pvalue (2000/side, 200 perm)", lambda: dist.mmd_pvalue(P, Q, 200))
    timed(res, "frechet_distance", lambda: dist.frechet_distance(P, Q))
    timed(res, "sliced_wasserstein", lambda: dist.sliced_wasserstein(P, Q))
    timed(res, "sinkhorn_divergence (1000/side)", lambda: dist.sinkhorn_divergence(P, Q))
    timed(res, "episode_alignment (200 pairs)",
          lambda: episode_alignment(X, emb, s["task"], s["episode"], s["frame"], max_pairs=200))
    labels = combine_labels(s["task"], s["stage"])
    timed(res, "cross_retrieval", lambda: cross_retrieval(X, emb, labels, r_cap=args.r_cap))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
