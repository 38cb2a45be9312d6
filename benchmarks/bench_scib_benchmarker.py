"""End-to-end comparison with scib-metrics' ``Benchmarker`` on the metrics both compute (a script, not a test).

Same synthetic latents as ``bench_metrics.py`` (2 embodiments = the batch, 3 tasks x
5 stages; the label is task + stage by default), L2-normalised once for cosine (our
suite's default) and handed to both sides, so that Euclidean distances (scib's LISI,
k-means) and cosine distances (silhouettes, BRAS) mean the same on both. Our side:
``run_suite`` restricted to the shared metrics, no bootstrap, no nulls, no permutation
p-values (its exact FAISS graph included). scib's side, in its own interpreter: ``Benchmarker(...)``,
``.prepare(neighbor_computer=exact FAISS)``, ``.benchmark()`` with the metrics only
scib computes (isolated labels, graph connectivity, PCR comparison, Leiden) turned
off; its prepare (the graph) is also reported alone. Both sides get the same thread
limit. A warm-up Benchmarker run on 1,000 points comes first, which removes the
one-time costs (JAX backend start, numba compilation of UMAP's connectivities); JAX
still compiles again for every new array shape, so scib's time at a size includes
that size's compilation unless ``--scib-warm-same-size`` warms up on the size itself.

Reported per size: time per side, the ratio scib / ours (goal: >= 5x), and each pair
of values with its absolute difference (goal: within 1e-3). Per metric, on the four
same-definition metrics: our median over ``--repeat`` suite runs; scib's time inside the
Benchmarker (cold: it includes JAX compiling for this size) and the median of
``--repeat`` further calls with the Benchmarker's own arguments (warm: nothing left to
compile). Above ``max_samples``, where our suite subsamples the silhouettes, our
silhouette label and BRAS are also run (timed, values compared) on the full data. Values are compared only
at sizes where neither side subsamples (ours runs silhouettes and k-means on a
stratified subsample above ``max_samples`` = 20,000; scib never does); times at every
size. Pairs whose definitions differ are marked so, with the reason.

    .venv/bin/python benchmarks/bench_scib_benchmarker.py --sizes 5000 20000 100000 --threads 2 --out scib.json
    .venv/bin/python benchmarks/bench_scib_benchmarker.py --sizes 3000 --scib-warm-same-size
    .venv/bin/python benchmarks/bench_scib_benchmarker.py --sizes 20000 --label stage --metric l2
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import statistics
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_metrics import synthetic  # noqa: E402
from metrics import suite  # noqa: E402
from metrics.conservation import silhouette_stage  # noqa: E402
from metrics.knn import normalize_rows  # noqa: E402
from metrics.lisi import lisi_samples  # noqa: E402
from metrics.mixing import bras  # noqa: E402
from metrics.spec import REGISTRY, Kind, Labels, MetricsConfig
from metrics.suite import run_suite  # noqa: E402

TOLERANCE = 1e-3
GOAL_RATIO = 5.0
WARMUP_N = 1000


class Pair(NamedTuple):
    """One of our metrics and the Benchmarker column it is compared with."""

    ours: str
    scib: str  # the Benchmarker's clean column name
    scib_fn: str  # the scib_metrics function the Benchmarker calls
    same: bool  # same definition (values must agree within TOLERANCE)
    note: str


PAIRS = (
    Pair("ilisi", "iLISI", "ilisi_knn", True,
         "scib slices 90 graph columns including self (self masked: 89 neighbours), ours 90 without self; "
         "perplexity 30 on both"),
    Pair("kbet", "KBET", "kbet_per_label", False,
         "different definition: the Benchmarker runs kbet_per_label (kBET within each label on a diffusion-map "
         "kNN graph, k0 from the label's size, averaged over labels); ours is one global kBET on the 50-NN graph "
         "(scib's kbet(); see the untimed cross-check row). scib's value also varies between runs (ARPACK eigsh "
         "random start, pynndescent on the diffusion map)"),
    Pair("bras", "BRAS", "bras", True,
         "scib 0.5.10's BatchCorrection has bras, not silhouette_batch; with 2 embodiments it equals our "
         "silhouette_embodiment under the same distance"),
    Pair("clisi", "cLISI", "clisi_knn", True, "as iLISI"),
    Pair("silhouette_stage", "Silhouette label", "silhouette_label", True, "rescaled (s + 1) / 2 on both"),
    Pair("stage_nmi", "KMeans NMI", "nmi_ari_cluster_labels_kmeans", False,
         "different definition: k-means by scikit-learn (k-means++, 3 inits, our seed) vs scib's JAX k-means "
         "(k-means++, 1 init, seed 0); the partitions, hence the values, may differ"),
    Pair("stage_ari", "KMeans ARI", "nmi_ari_cluster_labels_kmeans", False, "as KMeans NMI"),
)

SCIB_SIDE = Path(__file__).resolve().parent / "scib_side.py"  # run by scib's interpreter


# ---------------------------------------------------------------------------- our side


@contextlib.contextmanager
def timed_suite(names: list[str], seconds: dict[str, float], kept: dict[str, Any]) -> Iterator[None]:
    """Time the graph and each selected metric inside one ``run_suite`` call (no extra work).

    Prepares shared by several metrics stay shared (one wrapper per prepare function);
    their time goes to the first metric that uses them, in registry order. The graph
    the suite built is kept in ``kept["graph"]``.
    """
    saved_registry, saved_graph = dict(REGISTRY), suite.build_graph

    def clock(key: str, fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                kept[key] = fn(*args, **kwargs)
                return kept[key]
            finally:
                seconds[key] = seconds.get(key, 0.0) + time.perf_counter() - t
        return wrapper

    prepares: dict[Any, Any] = {}
    for name in [n for n in REGISTRY if n in names]:
        spec = REGISTRY[name]
        if spec.prepare not in prepares:
            prepares[spec.prepare] = clock(name, spec.prepare)
        REGISTRY[name] = dataclasses.replace(spec, prepare=prepares[spec.prepare], score=clock(name, spec.score))
    suite.build_graph = clock("graph", saved_graph)
    try:
        yield
    finally:
        REGISTRY.clear()
        REGISTRY.update(saved_registry)
        suite.build_graph = saved_graph


def run_ours(X: np.ndarray, labels: Labels, config: MetricsConfig, repeat: int = 1) -> dict[str, Any]:
    """Our suite on the shared metrics, ``repeat`` times: median total, graph and per-metric seconds, values.

    Untimed, after the suite: the mean per-sample (unscaled) LISI of embodiments and of
    labels on the suite's own graph, a finer check than the medians when they saturate.
    Above ``config.max_samples`` (the suite subsamples the silhouettes), our silhouette
    label and BRAS run on the full data too: ``full_s`` (median) and ``full_values``.
    """
    runs = []
    for _ in range(max(1, repeat)):
        seconds: dict[str, float] = {}
        kept: dict[str, Any] = {}
        with timed_suite(list(config.metrics), seconds, kept):
            t = time.perf_counter()
            result = run_suite(X, labels, config)
            seconds["total"] = time.perf_counter() - t
        runs.append(seconds)
    med = {key: statistics.median(r.get(key, 0.0) for r in runs) for key in runs[0]}
    lisi_mean = {key: float(np.nanmean(lisi_samples(kept["graph"], values)))
                 for key, values in (("batch", labels.embodiment), ("label", labels.stage))}
    out = {"total_s": med.pop("total"), "graph_s": med.pop("graph", float("nan")), "metric_s": med,
           "metric_s_runs": runs, "values": {name: v.value for name, v in result.metrics.items()},
           "subsampled": result.subsampled, "lisi_mean": lisi_mean}
    if len(X) > config.max_samples:
        full = {"silhouette_stage": lambda: silhouette_stage(X, labels.stage, config.metric),
                "bras": lambda: bras(X, labels.embodiment, labels.stage, config.metric)}
        out["full_s"], out["full_values"] = {}, {}
        for name, fn in full.items():
            times = []
            for _ in range(max(1, repeat)):
                t = time.perf_counter()
                out["full_values"][name] = float(fn())
                times.append(time.perf_counter() - t)
            out["full_s"][name] = statistics.median(times)
    return out


# ---------------------------------------------------------------------------- scib's side


def scib_env(threads: int) -> dict[str, str]:
    """The subprocess environment: the same thread limit for BLAS, OpenMP, numba and XLA (JAX on CPU)."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[var] = str(threads)
    env["XLA_FLAGS"] = f"--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads={threads}"
    env["JAX_PLATFORMS"] = "cpu"
    return env


def check_scib(python: str) -> str:
    """scib_metrics' version in ``python``; exits with a clear message when it is missing."""
    try:
        proc = subprocess.run([python, "-c", "import importlib.metadata as m; print(m.version('scib-metrics'))"],
                              capture_output=True, text=True)
    except OSError as exc:
        sys.exit(f"error: cannot run --scib-python {python!r} ({exc}); give a Python interpreter that has "
                 "scib-metrics 0.5.10 installed (e.g. /tmp/scibenv/bin/python)")
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        sys.exit(f"error: {python} has no scib_metrics ({last}); install it "
                 f"there ('{python} -m pip install scib-metrics==0.5.10 faiss-cpu') or pass --scib-python")
    return proc.stdout.strip()


def run_scib(python: str, X: np.ndarray, labels: Labels, warm: tuple[np.ndarray, Labels], metric: str,
             threads: int, kbet_k: int, warm_same_size: bool, repeat: int = 0) -> dict[str, Any]:
    """The Benchmarker on the same latents and labels, in scib's interpreter (data through a .npz file)."""
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data.npz"
        np.savez(data, X=X, batch=labels.embodiment, label=labels.stage, X_warm=warm[0],
                 batch_warm=warm[1].embodiment, label_warm=warm[1].stage, threads=threads,
                 metric="cosine" if metric == "cosine" else "euclidean", kbet_k=kbet_k,
                 warm_same_size=warm_same_size, repeat=repeat)
        proc = subprocess.run([python, str(SCIB_SIDE), str(data)], capture_output=True, text=True,
                              env=scib_env(threads))
    if proc.returncode != 0:
        sys.exit(f"error: the scib-metrics Benchmarker run failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["function_warm_median_s"] = {fn: statistics.median(t) for fn, t in out.get("function_warm_s", {}).items()}
    return out


# ---------------------------------------------------------------------------- comparison


def with_label(labels: Labels, label: str) -> Labels:
    """Labels whose ``stage`` is the comparison's label: the stage, or task + stage."""
    if label == "stage":
        return labels
    return labels.replace(stage=np.char.add(np.char.add(labels.task.astype(str), "/"), labels.stage.astype(str)))


def compare(ours: dict[str, Any], scib: dict[str, Any], comparable: bool) -> list[dict[str, Any]]:
    """One row per metric pair: both values, their difference and whether they agree."""
    rows = []
    for pair in PAIRS:
        a, b = ours["values"].get(pair.ours, float("nan")), scib["values"].get(pair.scib, float("nan"))
        diff = abs(a - b)
        if not comparable and REGISTRY[pair.ours].kind is not Kind.GRAPH:
            status = "not compared (ours on a subsample)"
        elif not pair.same:
            status = "different definition" + (" (agrees here)" if diff <= TOLERANCE else "")
        else:
            status = "match" if diff <= TOLERANCE else "MISMATCH"
        rows.append({"ours": pair.ours, "scib": pair.scib, "ours_value": a, "scib_value": b, "abs_diff": diff,
                     "same_definition": pair.same, "status": status, "note": pair.note})
    if "kbet_plain" in scib:
        a, b = ours["values"].get("kbet", float("nan")), scib["kbet_plain"]
        rows.append({"ours": "kbet", "scib": "kbet() [untimed cross-check]", "ours_value": a, "scib_value": b,
                     "abs_diff": abs(a - b), "same_definition": True,
                     "status": "match" if abs(a - b) <= TOLERANCE else "MISMATCH",
                     "note": "scib's plain kbet() on the same 50 non-self neighbours our kbet uses"})
    for key, name in (("batch", "ilisi"), ("label", "clisi")):
        a, b = ours["lisi_mean"][key], scib["lisi_mean"][key]
        rows.append({"ours": f"{name} mean LISI", "scib": "lisi_knn() mean [untimed]", "ours_value": a,
                     "scib_value": b, "abs_diff": abs(a - b), "same_definition": True,
                     "status": "match" if abs(a - b) <= TOLERANCE else "MISMATCH",
                     "note": "mean of unscaled per-sample LISI (1..#labels), not the median the metric reports; "
                             "ours 90 neighbours, scib 89 + self"})
    return rows


def same_definition_times(ours: dict[str, Any], scib: dict[str, Any]) -> list[dict[str, Any]]:
    """Seconds per same-definition metric: ours (suite median; on the full data where the suite subsamples)
    and scib's, cold (inside the Benchmarker, with this size's JAX compilation) and warm (median of repeats)."""
    rows = []
    for pair in (pair for pair in PAIRS if pair.same):
        ours_s = ours.get("full_s", {}).get(pair.ours, ours["metric_s"].get(pair.ours, float("nan")))
        cold = scib["function_s"].get(pair.scib_fn, float("nan"))
        warm = scib.get("function_warm_median_s", {}).get(pair.scib_fn, float("nan"))
        rows.append({"metric": pair.ours, "scib_fn": pair.scib_fn, "ours_s": ours_s,
                     "ours_suite_s": ours["metric_s"].get(pair.ours, float("nan")), "scib_cold_s": cold,
                     "scib_warm_s": warm, "ratio_warm": warm / ours_s, "ratio_cold": cold / ours_s})
    return rows


def same_definition_ratio(rows: list[dict[str, Any]], key: str = "scib_warm_s") -> float:
    """scib / our seconds summed over the pairs with the same definition only (no graph, no kBET, no k-means)."""
    ours_s = sum(r["ours_s"] for r in rows)
    return sum(r[key] for r in rows) / ours_s if ours_s > 0 else float("nan")


def print_size(entry: dict[str, Any]) -> None:
    ours, scib = entry["ours"], entry["scib"]
    print(f"\n== n={entry['n']} d={entry['dim']} label={entry['label']} metric={entry['metric']} "
          f"threads={entry['threads']}")
    if not entry["values_compared"]:
        print(f"   values not compared: ours runs silhouettes and k-means on a {ours['subsampled']}-sample "
              "subsample (graph metrics still compared)")
    print(f"{'ours':>22s} {'scib':>28s} {'ours':>9s} {'scib':>9s} {'|diff|':>9s}  status")
    for r in entry["pairs"]:
        print(f"{r['ours']:>22s} {r['scib']:>28s} {r['ours_value']:9.4f} {r['scib_value']:9.4f} "
              f"{r['abs_diff']:9.2e}  {r['status']}")
    t = entry["times"]
    print(f"time ours: {t['ours_total_s']:.2f} s (graph {t['ours_graph_s']:.2f} s) | scib: {t['scib_total_s']:.2f} s "
          f"(prepare/graph {t['scib_prepare_s']:.2f} s, benchmark {t['scib_benchmark_s']:.2f} s)")
    print(f"ratio scib / ours: {t['ratio']:.2f}x end to end, {t['ratio_metrics_only']:.2f}x without the graph "
          f"(goal >= {GOAL_RATIO:.0f}x: {'met' if t['ratio'] >= GOAL_RATIO else 'not met'}); "
          f"on the same-definition metrics alone (iLISI, cLISI, BRAS, silhouette label) "
          f"{t['ratio_same_definition']:.2f}x against scib warm, {t['ratio_same_definition_cold']:.2f}x cold")
    print(f"{'same definition':>18s} {'ours s':>9s} {'scib warm':>10s} {'scib cold':>10s} {'warm/ours':>10s} "
          f"{'cold/ours':>10s}")
    for r in entry["same_definition"]:
        where = " (full data; suite subsample {:.3f} s)".format(r["ours_suite_s"]) \
            if r["ours_s"] != r["ours_suite_s"] else ""
        print(f"{r['metric']:>18s} {r['ours_s']:9.3f} {r['scib_warm_s']:10.3f} {r['scib_cold_s']:10.3f} "
              f"{r['ratio_warm']:9.1f}x {r['ratio_cold']:9.1f}x{where}")
    for name, value in ours.get("full_values", {}).items():
        pair = next(pair for pair in PAIRS if pair.ours == name)
        b = scib["values"].get(pair.scib, float("nan"))
        print(f"   {name} on the full data: ours {value:.6f}, scib {b:.6f}, |diff| {abs(value - b):.2e} "
              f"({'match' if abs(value - b) <= TOLERANCE else 'MISMATCH'})")
    groups = {"ilisi_knn": ("ilisi",), "clisi_knn": ("clisi",), "kbet_per_label": ("kbet",), "bras": ("bras",),
              "silhouette_label": ("silhouette_stage",), "nmi_ari_cluster_labels_kmeans": ("stage_nmi", "stage_ari")}
    print("per metric (s):  " + "  ".join(
        f"{fn} {scib['function_s'].get(fn, float('nan')):.2f}/{sum(ours['metric_s'].get(m, 0.0) for m in ms):.3f}"
        for fn, ms in groups.items()) + "   (scib/ours)")
    if "warmup_same_size_s" in scib:
        print(f"scib warmed up on this size first ({scib['warmup_same_size_s']:.2f} s, includes compilation): "
              "its time above excludes all JAX compilation")
    else:
        print(f"scib warmed up on {scib['warmup_n']} points ({scib['warmup_s']:.2f} s); JAX still compiled for this "
              "size's shapes inside the timed run")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[5_000, 20_000, 100_000])
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--label", choices=["task_stage", "stage"], default="task_stage",
                   help="scib's label_key and our 'stage' labels: task + stage (default) or the stage alone")
    p.add_argument("--metric", choices=["cosine", "l2"], default="cosine",
                   help="our suite's distance; cosine L2-normalises the latents for both sides")
    p.add_argument("--scib-python", default="/tmp/scibenv/bin/python",
                   help="a Python interpreter with scib-metrics 0.5.10, faiss-cpu and anndata")
    p.add_argument("--scib-warm-same-size", action="store_true",
                   help="warm scib up on each measured size (excludes all JAX compilation; doubles scib's run)")
    p.add_argument("--repeat", type=int, default=3,
                   help="our suite runs and scib's warm calls of the same-definition metrics; medians reported")
    p.add_argument("--out", default=None, help="write every number as JSON here")
    args = p.parse_args()

    import faiss
    import numba
    from threadpoolctl import threadpool_limits

    version = check_scib(args.scib_python)
    faiss.omp_set_num_threads(args.threads)
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))  # our compiled LISI kernels
    threadpool_limits(args.threads)
    names = sorted({pair.ours for pair in PAIRS}, key=list(REGISTRY).index)
    # values only, as scib: no intervals, no null baselines, no permutation p-values
    no_p = {"permutations": 0} if "permutations" in {f.name for f in dataclasses.fields(MetricsConfig)} else {}
    config = MetricsConfig(metric=args.metric, bootstrap=0, null_repeats=0, metrics=tuple(names), seed=args.seed,
                           **no_p)

    def data(n: int, seed: int) -> tuple[np.ndarray, Labels]:
        X, labels = synthetic(n, args.dim, seed)
        X = normalize_rows(X) if args.metric == "cosine" else X
        return X, with_label(labels, args.label)

    warm = data(WARMUP_N, args.seed + 1)
    run_ours(*warm, config)  # our warm-up: imports and first-call costs, as scib's
    print(f"scib-metrics {version} via {args.scib_python}; {args.threads} threads on both sides "
          f"(machine: {os.cpu_count()} cores); latents {'L2-normalised, ' if args.metric == 'cosine' else ''}"
          f"our metric {args.metric}, scib Euclidean graph/k-means and {args.metric} silhouettes/BRAS")
    report = {"scib_metrics": version, "scib_python": args.scib_python, "threads": args.threads,
              "machine_cores": os.cpu_count(), "machine": platform.platform(), "tolerance": TOLERANCE,
              "goal_ratio": GOAL_RATIO, "max_samples": config.max_samples, "sizes": []}
    for n in args.sizes:
        X, labels = data(n, args.seed)
        comparable = len(X) <= config.max_samples
        ours = run_ours(X, labels, config, args.repeat)
        scib = run_scib(args.scib_python, X, labels, warm, args.metric, args.threads, config.kbet_k,
                        warm_same_size=args.scib_warm_same_size, repeat=args.repeat)
        same = same_definition_times(ours, scib)
        scib_total = scib["prepare_s"] + scib["benchmark_s"]
        times = {"ours_total_s": ours["total_s"], "ours_graph_s": ours["graph_s"],
                 "scib_total_s": scib_total, "scib_prepare_s": scib["prepare_s"],
                 "scib_benchmark_s": scib["benchmark_s"], "ratio": scib_total / ours["total_s"],
                 "ratio_metrics_only": scib["benchmark_s"] / (ours["total_s"] - ours["graph_s"]),
                 "ratio_same_definition": same_definition_ratio(same),
                 "ratio_same_definition_cold": same_definition_ratio(same, "scib_cold_s")}
        entry = {"n": len(X), "dim": args.dim, "label": args.label, "metric": args.metric, "threads": args.threads,
                 "values_compared": comparable, "pairs": compare(ours, scib, comparable), "times": times,
                 "same_definition": same,
                 "ours": ours, "scib": scib}
        print_size(entry)
        report["sizes"].append(entry)
    if args.out:
        from probe.atomic import write_json

        write_json(args.out, report)
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
