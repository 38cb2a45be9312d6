"""probe report: the alignment report of one or more stores (HTML, metrics.json, summary.md)."""

from __future__ import annotations

import argparse
import shlex

from probe.console import console, outputs

NAME = "report"
HELP = ("write the alignment report (report.html, metrics.json, summary.md) of one or more stores; gate CI with "
        "--fail-under or --baseline/--max-drop (exit 0: passed, 1: a gate failed, 2: bad input)")
EXAMPLE = ("probe report probe-demo/stores/cotrained/level-* --layer all --headline-layer trunk.block2 "
           "--out reports/cotrained --fail-under clisi=0.8")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("stores", nargs="+", metavar="STORE", help="latent store directories (checkpoints)")
    p.add_argument("--layer", action="append", default=None, metavar="L",
                   help="layer to report (repeatable), or 'all' for every layer the stores share (default: all)")
    p.add_argument("--headline-layer", default=None, metavar="L",
                   help="layer drawn per checkpoint and gated by --fail-under (default: the last selected layer)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (must not exist unless --overwrite)")
    p.add_argument("--fail-under", action="append", default=[], metavar="METRIC=VALUE",
                   help="exit with code 1 (after writing the report) when METRIC at the headline layer is worse "
                        "than VALUE for any store: below it, or above it for lower-is-better metrics such as "
                        "embodiment_probe_acc (repeatable)")
    p.add_argument("--gate", choices=["value", "bound"], default="value",
                   help="what --fail-under judges: the estimate (value, default) or the pessimistic end of its 95%% "
                        "interval (bound: the lower end, the upper for lower-is-better metrics), so that only a "
                        "metric better than VALUE beyond noise passes")
    p.add_argument("--baseline", default=None, metavar="OLD/metrics.json",
                   help="an earlier report (its metrics.json or directory) to compare the last checkpoint with")
    p.add_argument("--max-drop", action="append", default=[], metavar="METRIC=D",
                   help="with --baseline: exit with code 1 when METRIC at the headline layer got worse than the "
                        "baseline's by more than D beyond noise (the whole 95%% interval of the change; paired when "
                        "both runs resampled the same episodes) (repeatable)")
    p.add_argument("--max-points", type=int, default=5000, metavar="N",
                   help="points per layout; larger stores are sampled by embodiment, task and stage (default 5000)")
    p.add_argument("--projection", choices=["umap", "pca"], default="umap", help="layout method (default umap)")
    p.add_argument("--cache", default=None, metavar="DIR",
                   help="cache directory for layouts (default $PROBE_CACHE_DIR or ~/.cache/embodiment-probe)")
    p.add_argument("--bootstrap", type=int, default=None, metavar="N",
                   help="bootstrap replicates for the 95%% intervals (default: the suite's; 0 = no intervals, fastest)")
    p.add_argument("--metrics", default=None, metavar="NAMES",
                   help="comma-separated metrics to compute (default: the whole suite; --fail-under metrics are "
                        "always added)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the metrics' subsampling, intervals and nulls (default 0)")
    p.add_argument("--embodiments", default=None, metavar="NAME,NAME,...",
                   help="the metrics of every store measure only these embodiments (as probe metrics "
                        "--embodiments; e.g. human,robot_b); layouts and examples still show all (default: all)")
    p.add_argument("--detail", default=None, metavar="STORE",
                   help="the store measured at every layer, whose retrieval examples and coverage gaps the report "
                        "shows (one of the STOREs; default: the last checkpoint, series then step or level)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    p.add_argument("--data-root", action="append", default=[], metavar="NAME=PATH",
                   help="dataset NAME (a value of the store's 'dataset' column) now lives in PATH: the retrieval "
                        "examples read their frames from there (repeatable)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from probe.projection.layout import ProjectionConfig
    from probe.report.config import ReportConfig
    from probe.report.gates import gate_sentence, gate_summary, read_thresholds
    from probe.report.build import build_report
    from probe.measure.suite import default_eval_config, known_metric_names
    from probe.measure.selection import parse_embodiments
    from probe.store.media import parse_data_roots

    fail_under = read_thresholds(args.fail_under, "--fail-under")  # ranges: checked once by build_report
    max_drop = read_thresholds(args.max_drop, "--max-drop")
    metrics = None
    if args.metrics:
        metrics = ([m.strip() for m in args.metrics.split(",") if m.strip()] + [name for name, _ in fail_under]
                   + [name for name, _ in max_drop])
    layers = None
    if args.layer and not (len(args.layer) == 1 and args.layer[0] == "all"):
        layers = tuple(args.layer)
    config = ReportConfig(
        layers=layers, headline_layer=args.headline_layer, fail_under=fail_under, gate=args.gate,
        baseline=Path(args.baseline) if args.baseline else None, max_drop=max_drop,
        projection=ProjectionConfig(method=args.projection, max_points=args.max_points),
        cache_dir=Path(args.cache) if args.cache else None, overwrite=args.overwrite,
        eval_config=default_eval_config(args.bootstrap, metrics, args.seed) if known_metric_names() else None,
        data_roots=tuple((name, str(path)) for name, path in parse_data_roots(args.data_root).items()),
        embodiments=parse_embodiments(args.embodiments), detail=Path(args.detail) if args.detail else None,
    )
    result = build_report(args.stores, args.out, config, progress=True)
    out = Path(args.out)
    outputs({"report": out / "report.html", "metrics": out / "metrics.json", "summary": out / "summary.md"},
            [f"{shlex.join(['open', str(out / 'report.html')])}   (or open it in any browser)",
             shlex.join(["probe", "serve", *(["--cache", args.cache] if args.cache else []),
                         "--start-layer", result.data.headline,
                         *args.stores])])
    from rich.markup import escape

    for line in result.data.notes:
        console.print(f"[yellow]note:[/] {escape(str(line))}", soft_wrap=True)
    for line in gate_summary(result.data.checks):  # every gate, passed or not, one line each
        console.print(line, markup=False, soft_wrap=True)
    if result.failed:
        for f in result.failures:  # one line each, whatever the console's width (CI logs grep them)
            console.print(f"[bold red]FAIL[/] {escape(gate_sentence(f))}", soft_wrap=True)
        return 1
    return 0
