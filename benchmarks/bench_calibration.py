"""Calibration of the suite's 95% intervals (a script, not a test).

Draws many synthetic datasets from generative models of known structure and reports,
for every metric with an interval, the empirical coverage of the nominal 95% interval
and its mean width. Goal: coverage between 0.93 and 0.97.

Generative model: two embodiments x ``--tasks`` tasks x ``--stages`` stages, fixed by
design; ``--episodes`` episodes per (embodiment, task), the independent units: each
episode draws a random effect (``--episode-sd``) added to all its frames, each frame
its own noise. Stage centres are shared; the robot's latents are then ``aligned``
(unchanged), ``offset`` (shifted), ``rotated`` (a random rotation), ``partial``
(half the offset) or ``random`` (the robot's (task, stage) centres drawn independently of the
human's: no shared structure).

Target: what an interval describes is the estimate's sampling distribution, so the
target of each metric is its expected value **at the same sample size**, estimated
as the mean over ``--truth`` independent datasets (kNN metrics such as LISI depend on
n, so a value at a much larger n would be another quantity), each with its own seed as the
checked datasets have (fits and k-means restarts depend on it). Coverage is counted
against that mean (its own Monte-Carlo error is small beside the intervals' width).

Every metric gets an interval here (``MetricsConfig.all_intervals``), also those the suite
withholds because they are not calibrated (``metrics.calibration.NO_INTERVAL``): the table shows
the coverage that made them lose it. Models run in parallel processes with ``--jobs``.

``--scopes`` (``--scopes task``) also checks the per-stage (per-task) intervals, which the suite
withholds (``metrics.calibration.NO_SCOPE_INTERVAL``) but gives with ``all_intervals``: each stage's
target is the mean of that stage's value over the ``--truth`` datasets, and the table gains a row per
(metric, stage), ``metric @ s0`` ..., and one pooling every stage's hits, ``metric @ every stage``.
Only per-sample metrics have per-scope intervals (fitted ones are refitted per scope without one), e.g.

    .venv/bin/python benchmarks/bench_calibration.py --scopes --models aligned offset rotated random \
        --metrics retrieval_precision_at_1_human_to_robot,retrieval_map_at_r_human_to_robot \
        --datasets 200 --truth 200 --noise 0.8 --seed 7 --jobs 2     # 8.5 min on 2 shared cores

    .venv/bin/python benchmarks/bench_calibration.py --models aligned offset rotated random --datasets 80 \
        --truth 200 --noise 0.8 --seed 7 --jobs 2

``--fraction F`` (experimental, ``MetricsConfig.interval_fraction``) has every replicate keep the share F of each
embodiment x task cell's episodes (rounded per cell: 7 of 8 at 0.9, 6 of 8 at 0.8) instead of half, rescaled by
sqrt(f' / (1 - f')), f' the share actually kept: large-fraction subsampling, a delete-d jackknife
(benchmarks/RESULTS.md, "Large-fraction subsampling").

``--rate adaptive`` gives the ``--metrics`` the rate-adaptive scale (``MetricSpec.rate``: the rate estimated
from replicates at two subsample fractions, off in the suite) and adds, per metric, a ``metric [sqrt]`` row: the
usual sqrt(f / (1 - f)) interval from the same replicates, a baseline on the same datasets (benchmarks/RESULTS.md,
"Rate-adaptive subsampling").
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from metrics.bootstrap import centred_interval  # noqa: E402
from metrics.spec import REGISTRY, Labels, MetricsConfig, MetricValue, SuiteResult  # noqa: E402
from metrics.suite import run_suite  # noqa: E402

MODELS = ("aligned", "partial", "offset", "rotated", "random")


def _sqrt_scale(res: SuiteResult) -> float:
    f = min(0.5, res.config.bootstrap_samples / max(res.n, 1))  # the suite's subsample fraction (all rows: kNN)
    return float(np.sqrt(f / (1 - f)))


def entries(res: SuiteResult) -> dict[str, MetricValue]:
    """Every value of one run: each metric overall, and per scope as ``metric @ scope`` (``--scopes``); with
    ``--rate adaptive`` also each adaptive metric's interval at the usual sqrt(f / (1 - f)) scale from the same
    replicates, as ``metric [sqrt]`` (a baseline on the same datasets)."""
    out = dict(res.metrics)
    for scope, values in res.scopes.items():
        out.update({f"{name} @ {scope}": v for name, v in values.items()})
    for name, (reps, _) in res.replicates.items():
        if REGISTRY[name].rate == "adaptive":
            v = res.metrics[name]
            ci = centred_interval(reps, v.value, res.config.ci_level, _sqrt_scale(res), res.df, REGISTRY[name].bounds)
            out[f"{name} [sqrt]"] = MetricValue(v.value, ci.lo, ci.hi, interval="recomputed, sqrt(f / (1 - f))",
                                                 interval_note=v.interval_note)
    return out


def draw(model: str, rng: np.random.Generator, *, tasks: int, stages: int, episodes: int, frames: int, dim: int,
         episode_sd: float, noise: float, centres: np.ndarray, rotation: np.ndarray,
         robot_centres: np.ndarray | None = None) -> tuple[np.ndarray, Labels]:
    """One dataset of the generative model (centres and rotation are fixed per model, not per dataset)."""
    rows, X = [], []
    episode = 0
    for e, emb in enumerate(("human", "robot")):
        for t in range(tasks):
            for _ in range(episodes):
                effect = rng.normal(scale=episode_sd, size=dim)
                for f in range(frames):
                    s = min(f * stages // frames, stages - 1)
                    own = robot_centres if emb == "robot" and model == "random" else centres
                    x = own[t, s] + effect + rng.normal(scale=noise, size=dim)
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


def run_model(model: str, args: argparse.Namespace) -> dict:
    """Coverage and width of every metric's interval on ``args.datasets`` datasets of one model."""
    rng = np.random.default_rng([args.seed, MODELS.index(model)])  # each model its own stream (runs in parallel)
    shape = dict(tasks=args.tasks, stages=args.stages, episodes=args.episodes, frames=args.frames, dim=args.dim,
                 episode_sd=args.episode_sd, noise=args.noise)
    centres = rng.normal(scale=args.separation, size=(args.tasks, args.stages, args.dim))
    rotation, _ = np.linalg.qr(rng.normal(size=(args.dim, args.dim)))
    robot_centres = rng.normal(scale=args.separation, size=(args.tasks, args.stages, args.dim))
    common = dict(shape, centres=centres, rotation=rotation, robot_centres=robot_centres)
    # every metric gets an interval here, those declared uncalibrated included (their coverage is what says so)
    base = dict(k=args.k, null_repeats=0, permutations=0, max_samples=20_000,
                bootstrap_samples=args.bootstrap_samples, intervals=args.intervals, all_intervals=True,
                interval_fraction=args.fraction,
                by=args.scopes,
                metrics=tuple(args.metrics.split(",")) if args.metrics else None)
    if args.rate == "adaptive":  # the rate-adaptive scaling (metrics.bootstrap.rate_exponent) for these metrics
        for name in (args.metrics.split(",") if args.metrics else list(REGISTRY)):
            REGISTRY[name] = dataclasses.replace(REGISTRY[name], rate="adaptive")
    t0 = time.perf_counter()
    truth: dict[str, list[float]] = {}
    for j in range(args.truth):  # seeds as the checked datasets' (fits and k-means restarts depend on them)
        X, labels = draw(model, rng, **common)
        for name, v in entries(run_suite(X, labels, MetricsConfig(bootstrap=0, seed=j, **base))).items():
            truth.setdefault(name, []).append(v.value)
    results = []
    for i in range(args.datasets):
        X, labels = draw(model, rng, **common)
        results.append(run_suite(X, labels, MetricsConfig(bootstrap=args.bootstrap, seed=i, **base)))
    if not truth:  # no separate datasets for the target: the checked datasets' mean (slightly optimistic)
        for res in results:
            for name, v in entries(res).items():
                truth.setdefault(name, []).append(v.value)
    target = {name: float(np.nanmean(v)) for name, v in truth.items()}
    hits: dict[str, list[bool]] = {}
    widths: dict[str, list[float]] = {}
    values: dict[str, list[float]] = {}
    spreads: dict[str, list[float]] = {}
    methods: dict[str, str] = {}
    declared: dict[str, str] = {}
    for res in results:
        for name, v in entries(res).items():
            if v.interval_note:
                declared[name] = v.interval_note
            if not (np.isfinite(v.ci_lo) and np.isfinite(target.get(name.split(" [")[0], np.nan))):
                continue
            hits.setdefault(name, []).append(v.ci_lo <= target[name.split(" [")[0]] <= v.ci_hi)
            widths.setdefault(name, []).append(v.ci_hi - v.ci_lo)
            values.setdefault(name, []).append(v.value)
            if name.endswith(" [sqrt]"):  # --rate adaptive's baseline: the same replicates at the usual scale
                spreads.setdefault(name, []).append(_sqrt_scale(res) * float(np.nanstd(
                    res.replicates[name[:-7]][0], ddof=1)))
                methods[name] = "refit"
            if name in res.replicates:  # per-scope replicates are not kept: no spread ratio for scopes
                reps, scale = res.replicates[name]
                spreads.setdefault(name, []).append(scale * float(np.nanstd(reps, ddof=1)))
                methods[name] = "refit" if "recomputed" in v.interval else "subsampling" if "subsampling" in \
                    v.interval else "reweight"
    for name in [n for n in hits if " @ " in n]:  # every stage's hits of a metric pooled
        pooled = f"{name.split(' @ ')[0]} @ every {args.scopes}"
        hits.setdefault(pooled, []).extend(hits[name])
        widths.setdefault(pooled, []).extend(widths[name])
    # how much wider the estimates spread across datasets than the replicates say (1 = calibrated spread)
    table = {name: {"coverage": float(np.mean(h)), "width": float(np.mean(widths[name])), "datasets": len(h),
                    "target": target.get(name.split(" [")[0], float("nan")),
                    "target_se": float(np.nanstd(truth[name]) / np.sqrt(len(truth[name]))) if name in truth else None,
                    "spread_ratio": float(np.std(values[name], ddof=1) / max(np.mean(spreads[name]), 1e-12))
                    if name in spreads else float("nan"),
                    "method": methods.get(name.split(" @ ")[0], ""),
                    "no_interval": declared.get(name.split(" @ ")[0], "")} for name, h in hits.items()}
    lines = [f"# {model}: {time.perf_counter() - t0:.0f} s"]
    for name, row in table.items():
        flag = "" if 0.93 <= row["coverage"] <= 0.97 else "  <-- outside 0.93-0.97"
        se = np.sqrt(row["coverage"] * (1 - row["coverage"]) / row["datasets"])
        lines.append(f"{model:8s} {name:42s} {row['method']:11s} coverage {row['coverage']:.3f} (se {se:.3f}, "
                     f"n {row['datasets']}) width "
                     f"{row['width']:.4g} spread ratio {row['spread_ratio']:.2f}{flag}"
                     + ("  (reports no interval)" if row["no_interval"] else ""))
    print("\n".join(lines), flush=True)
    return table


def run(args: argparse.Namespace) -> dict:
    out: dict = {"settings": vars(args), "models": {}}
    if args.jobs > 1 and len(args.models) > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(min(args.jobs, len(args.models))) as pool:
            for model, table in zip(args.models, pool.map(run_model, args.models, [args] * len(args.models))):
                out["models"][model] = table
    else:
        for model in args.models:
            out["models"][model] = run_model(model, args)
    return out


def markdown(result: dict) -> str:
    """The table for RESULTS.md: coverage per metric and model (bold outside 0.93-0.97), width, and whether
    the metric reports an interval (never per scope: ``metrics.calibration.NO_SCOPE_INTERVAL``)."""
    models = list(result["models"])
    names = list(dict.fromkeys(n for t in result["models"].values() for n in t))
    head = "| metric | " + " | ".join(models) + f" | mean width ({models[0]}) | interval reported |"
    rows = [head, "|" + "---|" * (len(models) + 3)]
    for name in names:
        cells = []
        for m in models:
            row = result["models"][m].get(name)
            c = row["coverage"] if row else float("nan")
            cells.append("—" if not row else f"{c:.3f}" if 0.93 <= c <= 0.97 else f"**{c:.3f}**")
        first = result["models"][models[0]].get(name)
        note = next((t[name]["no_interval"] for t in result["models"].values() if t.get(name, {}).get("no_interval")),
                    "")
        rows.append(f"| `{name}` | " + " | ".join(cells) + f" | {first['width']:.3g} | "
                    + ("no" if note or " @ " in name else "yes") + " |" if first else "")  # no per-scope ones
    return "\n".join(rows)


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
    p.add_argument("--rate", choices=["sqrt", "adaptive"], default="sqrt",
                   help="adaptive: the --metrics get the rate-adaptive scale (metrics.spec.MetricSpec.rate), and a "
                        "'metric [sqrt]' row with the usual scale from the same replicates")
    p.add_argument("--fraction", type=float, default=None,
                   help="experimental: the share of each embodiment x task cell's episodes every replicate keeps "
                        "(MetricsConfig.interval_fraction, 0 < f < 1; default: the suite's min(0.5, "
                        "bootstrap_samples / n)), e.g. 0.8 or 0.9: large-fraction subsampling (delete-d jackknife)")
    p.add_argument("--jobs", type=int, default=1, help="models run in parallel processes")
    p.add_argument("--metrics", default=None, help="comma-separated metrics to check (default: every default metric)")
    p.add_argument("--scopes", nargs="?", const="stage", default=None, choices=["stage", "task"],
                   help="also check the per-stage (or per-task) intervals")
    p.add_argument("--out", default=None, help="write the table as JSON here")
    args = p.parse_args()
    if args.fraction is not None:
        if args.rate == "adaptive":
            p.error("--fraction and --rate adaptive cannot be combined (the [sqrt] baseline assumes the default "
                    "fraction)")
        try:
            MetricsConfig(interval_fraction=args.fraction, intervals=args.intervals)
        except ValueError as exc:
            p.error(str(exc))
    result = run(args)
    print(markdown(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
