"""What a frame's nearest neighbours are, in stores of human and robot latents (a measurement script, not a test)

Issue 17's world keeps human and robot latents apart (``docs/world-diversity.md``). Video frames are not
independent samples: the frames of one episode lie on a track, and a frame's nearest neighbours are often its
own episode's. This script separates that from embodiment: for each store (one checkpoint's latents, e.g.
``probe demo``'s ``stores/*/level-*``) and layer it reports

* ``same episode``: the share of a frame's k nearest neighbours (cosine) that are frames of its own episode;
* ``mixing``: the other-embodiment share of the k nearest neighbours over its chance value (the share of the
  other embodiment among all other frames), averaged over frames: 1 = mixed as by chance, 0 = separate;
* ``mixing, other episodes``: the same over the k nearest neighbours **from other episodes**, so a frame's own
  episode cannot make it look separate;
* ``mixing, centred``: ``mixing, other episodes`` after subtracting each embodiment's mean latent: how much of
  the separation an offset between the embodiments explains; ``centred per stage``: after subtracting the mean
  of each (embodiment, stage), an offset that differs from stage to stage;
* ``embodiment R2`` and ``stage R2``: the share of the latents' variance that embodiment and stage means explain;
* ``probe``: 3-fold accuracy of a strongly regularised linear probe (logistic regression, C = 0.01) for
  embodiment (chance: the larger embodiment's share).

The suite's own mixing metrics already judge against a null that shuffles whole (episode, stage) runs, which
keeps a frame's own-episode neighbours; this script says how much of the separation is within-episode
structure, offset, or neighbourhoods that differ. A larger ``--k`` (e.g. 400) asks at which scale the
embodiments mix.

    .venv/bin/python benchmarks/bench_world_neighbourhoods.py probe-demo/stores/*/level-* --layer trunk.block2 \\
        --json out/neighbourhoods.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from metrics.knn import knn  # noqa: E402
from probe.store.store import open_store  # noqa: E402

SEARCH = 200  # neighbours searched (at least 2k), from which the first k of other episodes are taken


def _mixing(indices: np.ndarray, embodiment: np.ndarray, episode: np.ndarray, k: int, other_episodes: bool) -> float:
    codes = (embodiment == embodiment[0]).astype(np.int64)
    counts = np.bincount(codes, minlength=2)
    chance = counts[1 - codes] / (len(codes) - 1)  # share of the other embodiment among all other frames
    shares = np.full(len(codes), np.nan)
    for i, row in enumerate(indices):
        row = row[row >= 0]
        if other_episodes:
            row = row[episode[row] != episode[i]]
        row = row[:k]
        if len(row):
            shares[i] = np.mean(codes[row] != codes[i])
    return float(np.nanmean(shares / chance))


def _r2(X: np.ndarray, groups: np.ndarray) -> float:
    centred = X - X.mean(0)
    between = sum((groups == g).sum() * np.square(X[groups == g].mean(0) - X.mean(0)).sum() for g in np.unique(groups))
    return float(between / np.square(centred).sum())


def measure(path: str, layer: str, k: int) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    latents = open_store(path).latents(layer)
    X, meta = np.asarray(latents.X, np.float32), latents.meta
    embodiment = meta["embodiment"].astype(str).to_numpy()
    episode = (meta["embodiment"].astype(str) + "/" + meta["dataset"].astype(str) + "/"
               + meta["episode"].astype(str)).to_numpy()
    search = min(max(SEARCH, 2 * k), len(X) - 1)
    graph = knn(X, k=search, metric="cosine").indices
    centred = {}
    stage = meta["stage"].astype(str).to_numpy()
    for name, groups in (("embodiment", embodiment), ("stage", embodiment + "/" + stage)):
        C = X.copy()
        for g in np.unique(groups):
            C[groups == g] -= C[groups == g].mean(0)
        centred[name] = knn(C, k=search, metric="cosine").indices
    same = np.mean([np.mean(episode[row[:k]] == episode[i]) for i, row in enumerate(graph)])
    probe = cross_val_score(LogisticRegression(C=0.01, max_iter=2000), X, embodiment, cv=3).mean()
    return {"store": path, "layer": layer, "n": len(X), "episodes": int(len(set(episode))),
            "same_episode": round(float(same), 3),
            "mixing": round(_mixing(graph, embodiment, episode, k, False), 3),
            "mixing_other_episodes": round(_mixing(graph, embodiment, episode, k, True), 3),
            "mixing_centred": round(_mixing(centred["embodiment"], embodiment, episode, k, True), 3),
            "mixing_centred_per_stage": round(_mixing(centred["stage"], embodiment, episode, k, True), 3),
            "embodiment_r2": round(_r2(X, embodiment), 3), "stage_r2": round(_r2(X, stage), 3),
            "probe": round(float(probe), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stores", nargs="+", help="store directories (one checkpoint's latents each)")
    parser.add_argument("--layer", default="trunk.block2")
    parser.add_argument("--k", type=int, default=15, help="neighbours per frame (the suite's kNN mixing uses 15)")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    start, rows = time.time(), []
    print(f"{'store':<40} {'n':>6} {'same episode':>12} {'mixing':>7} {'other eps':>9} {'centred':>8} "
          f"{'per stage':>9} {'emb R2':>7} {'stage R2':>8} {'probe':>6}")
    for path in args.stores:
        r = measure(path, args.layer, args.k)
        rows.append(r)
        name = "/".join(Path(path).parts[-2:])
        print(f"{name:<40} {r['n']:>6} {r['same_episode']:>12.2f} {r['mixing']:>7.2f} "
              f"{r['mixing_other_episodes']:>9.2f} {r['mixing_centred']:>8.2f} {r['mixing_centred_per_stage']:>9.2f} "
              f"{r['embodiment_r2']:>7.3f} {r['stage_r2']:>8.3f} {r['probe']:>6.2f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"k": args.k, "rows": rows, "seconds": round(time.time() - start, 1)},
                                              indent=2) + "\n")
        print(f"wrote {args.json}")
    print(f"done in {time.time() - start:.1f} s")


if __name__ == "__main__":
    main()
