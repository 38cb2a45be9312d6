"""probe report: the alignment report of one or more stores (HTML, metrics.json, summary.md)."""

from __future__ import annotations

import argparse

from probe.console import console, outputs

NAME = "report"
HELP = "write the alignment report (report.html, metrics.json, summary.md) of one or more stores; gate with --fail-under"
EXAMPLE = ("probe report probe-demo/stores/cotrained/step-* --layer all --out reports/cotrained "
           "--fail-under ilisi=1.5")


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
    p.add_argument("--overwrite", action="store_true", help="replace an existing output directory")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from probe.projection.layout import ProjectionConfig
    from probe.report.config import ReportConfig, parse_fail_under
    from probe.report.build import build_report
    from probe.measure.suite import default_eval_config, known_metric_names

    fail_under = parse_fail_under(args.fail_under)
    metrics = None
    if args.metrics:
        metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] + [name for name, _ in fail_under]
    layers = None
    if args.layer and not (len(args.layer) == 1 and args.layer[0] == "all"):
        layers = tuple(args.layer)
    config = ReportConfig(
        layers=layers, headline_layer=args.headline_layer, fail_under=fail_under,
        projection=ProjectionConfig(method=args.projection, max_points=args.max_points),
        cache_dir=Path(args.cache) if args.cache else None, overwrite=args.overwrite,
        eval_config=default_eval_config(args.bootstrap, metrics) if known_metric_names() else None,
    )
    result = build_report(args.stores, args.out, config, progress=True)
    out = Path(args.out)
    outputs({"report": out / "report.html", "metrics": out / "metrics.json", "summary": out / "summary.md"},
            [f"open {out / 'report.html'} in a browser", f"probe serve {' '.join(args.stores[:1])}"])
    for line in result.data.notes:
        console.print(f"[yellow]note:[/] {line}")
    if result.failed:
        for f in result.failures:
            value = "missing" if f["value"] is None else f"{f['value']:.4g}"
            console.print(f"[bold red]FAIL[/] {f['metric']} = {value} < {f['threshold']:g} "
                          f"({f['checkpoint']}, layer {f['layer']})")
        return 1
    return 0
