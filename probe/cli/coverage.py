"""probe coverage: where human data fails to cover robot states, and which human clips carry the transfer."""

from __future__ import annotations

import argparse
import sys

from probe.console import console, outputs, print_table

NAME = "coverage"
HELP = "rank robot stages by how poorly human data covers them, and human clips by how much transfer they carry"
EXAMPLE = "probe coverage probe-demo/stores/cotrained/level-100 --layer trunk.block2 --out coverage.json --csv"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", help="latent store directory")
    p.add_argument("--layer", help="layer (default: the store's last layer, said in one line)")
    p.add_argument("--metric", default="cosine", choices=["cosine", "l2"], help="distance (default: cosine)")
    p.add_argument("--a", default="human", help="covering embodiment (default: human)")
    p.add_argument("--b", default=None, help="covered embodiment (default: robot if the store holds it, else its one "
                   "embodiment besides --a; with several, name one)")
    p.add_argument("--quantile", type=float, default=0.95,
                   help="threshold = this quantile of human-to-other-human-episode NN distances (default 0.95)")
    p.add_argument("--top", type=int, default=10, help="rows shown per table (default 10)")
    p.add_argument("--out", help="write the result as JSON here")
    p.add_argument("--samples", action="store_true", help="include the per-sample table in the JSON")
    p.add_argument("--csv", action="store_true",
                   help="also write the tables as CSV next to --out (<stem>.stages.csv ...); without --out, "
                        "print the stage table as CSV")
    p.add_argument("--json", action="store_true", help="print the JSON instead of tables")
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing --out / --csv files (only ones probe coverage wrote)")


def run(args: argparse.Namespace) -> int:
    from probe.atomic import json_text
    import shlex
    from pathlib import Path

    from rich.markup import escape
    from rich.table import Table

    from probe import columns as C
    from probe.atomic import write_json, write_text
    from probe.measure.coverage import COVERAGE_JSON, COVERAGE_TABLES, coverage
    from probe.errors import ConfigError
    from probe.store.series import store_layer
    from probe.store.store import open_store

    if args.top < 1:
        raise ConfigError(f"--top must be a positive number of rows, got {args.top}")
    if not 0.0 < args.quantile <= 1.0:
        raise ConfigError(f"--quantile must lie in (0, 1], got {args.quantile}")
    if args.out:  # every output checked before any work
        from probe.validate import check_output_path

        out = Path(args.out)
        check_output_path(out, args.overwrite, kind=COVERAGE_JSON)
        for name, kind in COVERAGE_TABLES.items() if args.csv else ():
            check_output_path(out.with_name(f"{out.stem}.{name}.csv"), args.overwrite, kind=kind)
    store = open_store(args.store)
    layer, note = store_layer(store, args.layer)
    if note and (args.json or (args.csv and not args.out)):
        print(note, file=sys.stderr)  # stdout carries the JSON or CSV
    elif note:
        console.print(note, markup=False, soft_wrap=True)
    result = coverage(store.latents(layer), a=args.a, b=args.b, metric=args.metric, quantile=args.quantile)
    payload = {"store": str(store.path), "fingerprint": store.fingerprint, **result.to_dict(samples=args.samples)}
    written: dict[str, Path] = {}
    if args.out:
        out = Path(args.out)
        written["coverage"] = write_json(out, payload, overwrite=args.overwrite, kind=COVERAGE_JSON)
        if args.csv:
            tables = {"stages": result.stages, "tasks": result.tasks, "episodes": result.episodes,
                      "clips": result.clips, "samples": result.samples}
            for name, table in tables.items():
                written[f"{name} csv"] = write_text(out.with_name(f"{out.stem}.{name}.csv"), table.to_csv(index=False),
                                                    overwrite=args.overwrite, kind=COVERAGE_TABLES[name])
    elif args.csv:
        print(result.stages.to_csv(index=False), end="")
        return 0
    if args.json:
        print(json_text(payload, default=str))
        return 0
    a, b = result.a, result.b
    console.print(f"[bold]{escape(str(store.path))}[/] layer '{escape(layer)}': {len(result.samples)} {escape(b)} "
                  f"states, threshold {result.threshold:.4f} ({result.quantile:.0%} quantile of {escape(a)}-to-other-"
                  f"{escape(a)}-episode NN {result.metric.value} distance); {result.share_beyond:.0%} of {escape(b)} "
                  "states lie beyond it")
    stages = Table(title=f"where {a} data is missing: {b} stages, worst covered first")
    for col in ("#", "task", "stage", f"{b}", f"{a}", "median dist", "beyond", "NN same stage"):
        stages.add_column(col)
    for _, r in result.stages.head(args.top).iterrows():
        style = "bold red" if r["reference_samples"] == 0 else ("yellow" if r["share_beyond"] > 0.5 else "")
        stages.add_row(str(r["rank"]), str(r[C.TASK]), str(r[C.STAGE]), str(r["samples"]),
                       str(r["reference_samples"]), f"{r['median_distance']:.4f}", f"{r['share_beyond']:.0%}",
                       f"{r['nn_same_stage']:.0%}", style=style)
    print_table(stages)
    clips = Table(title=f"{a} clips carrying the most transfer (nearest {a} clip to covered {b} states)")
    for col in ("#", "episode", "task", "stage", "clip (s)", f"{b} states", "share"):
        clips.add_column(col)
    has_video = C.VIDEO in result.clips.columns
    if has_video:
        clips.add_column("video (file @ s)", overflow="fold")
    for _, r in result.clips[result.clips["nearest_to"] > 0].head(args.top).iterrows():  # clips that carry some
        cells = [str(r["rank"]), C.episode_key(r[C.DATASET], r[C.EPISODE]), str(r[C.TASK]), str(r[C.STAGE]),
                 f"{r['start']:.2f}-{r['end']:.2f}", str(r["nearest_to"]), f"{r['share']:.1%}"]
        if has_video:
            cells.append(f"{str(r[C.VIDEO]).rsplit('/', 1)[-1]} @ {r['video_start']:.2f}-{r['video_end']:.2f}"
                         if isinstance(r[C.VIDEO], str) else "-")
        clips.add_row(*cells)
    print_table(clips)
    for line in result.advice():
        console.print(f"- {line}", markup=False)
    steps = [] if args.out else [shlex.join(["probe", "coverage", str(store.path), "--layer", layer, "--out",
                                             "coverage.json", "--csv"]) + "   (every table, as JSON and CSV)"]
    steps += [shlex.join(["probe", "index", str(store.path), "--layer", layer, "--embodiment", a,
                          "--out", f"indexes/{store.path.name}-{a}-{layer}"])
              + f"   (then probe retrieve: the nearest {a} clips of any {b} state)",
              shlex.join(["probe", "serve", "--start-layer", layer, str(store.path)])
              + "   (the map and the nearest clips in the dashboard)"]
    outputs(written, steps)
    return 0
