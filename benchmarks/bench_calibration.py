"""Calibration of the suite's 95% intervals (a script, not a test).

Draws many synthetic datasets from generative models of known structure and reports,
for every metric with an interval, the empirical coverage of the nominal 95% interval
and its mean width. Goal: coverage between 0.93 and 0.97.

Generative model: two embodiments x ``--tasks`` tasks x ``--stages`` stages, fixed by
design; ``--episodes`` episodes per (embodiment, task), the independent units: each
episode draws a random effect (``--episode-sd``) added to all its frames, each frame
its own noise. Stage centres are shared; the robot's latents are then ``aligned``
(unchanged), ``offset`` (shifted), ``rotated`` (a random rotation) or ``partial``
(half the offset).

Target: what an interval describes is the estimate's sampling distribution, so the
target of each metric is its expected value **at the same sample size**, estimated
as the mean over ``--truth`` independent datasets (kNN metrics such as LISI depend on
n, so a value at a much larger n would be another quantity). Coverage is counted
against that mean (its own Monte-Carlo error is small beside the intervals' width).

    .venv/bin/python benchmarks/bench_calibration.py --datasets 200 --truth 200
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from metrics.spec import Labels, MetricsConfig  # noqa: E402
from metrics.suite import run_suite  # noqa: E402

MODELS = ("aligned", "partial", "offset", "rotated")


def draw(model: str, rng: np.random.Generator, *, tasks: int, stages: int, episodes: int, frames: int, dim: int,
         episode_sd: float, noise: float, centres: np.ndarray, rotation: np.ndarray) -> tuple[np.ndarray, Labels]:
    """One dataset of the generative model (centres and rotation are fixed per model, not per dataset)."""
    rows, X = [], []
    episode = 0
    for e, emb in enumerate(("human", "robot")):
        for t in range(tasks):
            for _ in range(episodes):
                effect = rng.normal(scale=episode_sd, size=dim)
                for f in range(frames):
                    s = min(f * stages // frames, stages - 1)
                    x = centres[t, s] + effect + rng.normal(scale=noise, size=dim)
                    if emb == "robot":
                        if model in ("offset", "partial"):
                            x = x + (1.5 if model == "offset" else 0.75)
                        elif model == "rotated":
                            x = x @ rotation
                    X.append(x)
                    rows.append((emb, f"t{t}", f"s{s}", episode, f, f / (frames - 1)))
                episode += 1
    emb, task, stage, ep, frame, progress = (np.array(c) for c in zip(*rows))
    # position within the stage run (frames are in stage order within each episode)
    run_len = frames / stages
    stage_progress = np.clip((frame - np.floor(frame / run_len) * run_len) / max(run_len - 1, 1), 0, 1)
    labels = Labels(embodiment=emb, task=task, stage=stage, episode=ep.astype(np.int64), frame=frame.astype(np.int64),
                    progress=progress.astype(np.float64), stage_progress=stage_progress.astype(np.float64))
    return np.asarray(X, dtype=np.float32), labels


def run(args: argparse.Namespace) -> dict:
    rng = np.random.default_rng(args.seed)
    shape = dict(tasks=args.tasks, stages=args.stages, episodes=args.episodes, frames=args.frames, dim=args.dim,
                 episode_sd=args.episode_sd, noise=args.noise)
    out: dict = {"settings": vars(args), "models": {}}
    for model in args.models:
        centres = rng.normal(scale=args.separation, size=(args.tasks, args.stages, args.dim))
        rotation, _ = np.linalg.qr(rng.normal(size=(args.dim, args.dim)))
        common = dict(shape, centres=centres, rotation=rotation)
        base = dict(k=args.k, null_repeats=0, permutations=0, seed=0, max_samples=20_000,
                    bootstrap_samples=args.bootstrap_samples, intervals=args.intervals)
        t0 = time.perf_counter()
        truth: dict[str, list[float]] = {}
        for _ in range(args.truth):
            X, labels = draw(model, rng, **common)
            for name, v in run_suite(X, labels, MetricsConfig(bootstrap=0, **base)).metrics.items():
                truth.setdefault(name, []).append(v.value)
        results = []
        for i in range(args.datasets):
            X, labels = draw(model, rng, **common)
            results.append(run_suite(X, labels, MetricsConfig(bootstrap=args.bootstrap, **dict(base, seed=i))))
        if not truth:  # no separate datasets for the target: the checked datasets' mean (slightly optimistic)
            for res in results:
                for name, v in res.metrics.items():
                    truth.setdefault(name, []).append(v.value)
        target = {name: float(np.nanmean(v)) for name, v in truth.items()}
        hits: dict[str, list[bool]] = {}
        widths: dict[str, list[float]] = {}
        values: dict[str, list[float]] = {}
        spreads: dict[str, list[float]] = {}
        methods: dict[str, str] = {}
        for res in results:
            for name, v in res.metrics.items():
                if not (np.isfinite(v.ci_lo) and np.isfinite(target.get(name, np.nan))):
                    continue
                hits.setdefault(name, []).append(v.ci_lo <= target[name] <= v.ci_hi)
                widths.setdefault(name, []).append(v.ci_hi - v.ci_lo)
                values.setdefault(name, []).append(v.value)
                reps, scale = res.replicates[name]
                spreads.setdefault(name, []).append(scale * float(np.nanstd(reps, ddof=1)))
                methods[name] = "refit" if "recomputed" in v.interval else "subsampling" if "subsampling" in v.interval \
                    else "reweight"
        # how much wider the estimates spread across datasets than the replicates say (1 = calibrated spread)
        table = {name: {"coverage": float(np.mean(h)), "width": float(np.mean(widths[name])), "datasets": len(h),
                        "target": target[name], "target_se": float(np.nanstd(truth[name]) / np.sqrt(len(truth[name]))),
                        "spread_ratio": float(np.std(values[name], ddof=1) / max(np.mean(spreads[name]), 1e-12)),
                        "method": methods[name]} for name, h in hits.items()}
        out["models"][model] = table
        print(f"# {model}: {time.perf_counter() - t0:.0f} s", flush=True)
        for name, row in table.items():
            flag = "" if 0.93 <= row["coverage"] <= 0.97 else "  <-- outside 0.93-0.97"
            print(f"{model:8s} {name:42s} {row['method']:11s} coverage {row['coverage']:.3f} "
                  f"width {row['width']:.4g} spread ratio {row['spread_ratio']:.2f}{flag}", flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--datasets", type=int, default=200, help="datasets whose intervals are checked per model")
    p.add_argument("--truth", type=int, default=200, help="datasets averaged into each metric's target")
    p.add_argument("--bootstrap", type=int, default=30, help="replicates per interval (the suite's default)")
    p.add_argument("--bootstrap-samples", type=int, default=4000)
    p.add_argument("--tasks", type=int, default=2)
    p.add_argument("--stages", type=int, default=3)
    p.add_argument("--episodes", type=int, default=8, help="episodes per (embodiment, task)")
    p.add_argument("--frames", type=int, default=12)
    p.add_argument("--dim", type=int, default=16)
    p.add_argument("--k", type=int, default=30)
    p.add_argument("--separation", type=float, default=1.0, help="sd of the (task, stage) centres")
    p.add_argument("--episode-sd", type=float, default=0.3)
    p.add_argument("--noise", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--intervals", choices=["refit", "reweight"], default="refit", help="the suite's interval mode")
    p.add_argument("--out", default=None, help="write the table as JSON here")
    args = p.parse_args()
    result = run(args)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
