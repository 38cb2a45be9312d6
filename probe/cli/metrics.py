"""probe metrics: alignment metrics of stores (mixing of embodiments, conservation of stages ...)."""

from __future__ import annotations

import argparse
import math
import os
import shlex

from rich.text import Text

from probe.console import console, outputs, print_table

NAME = "metrics"
HELP = "alignment metrics of latent stores: embodiment mixing, stage conservation, with 95%% intervals and nulls"
# the metrics declared in metrics.calibration.NO_INTERVAL (not imported here: the help stays light; a test
# checks that the two lists agree)
NO_INTERVAL_HELP = ", ".join((
    "ilisi", "kbet", "silhouette_embodiment", "bras", "knn_embodiment_mixing", "embodiment_probe_acc", "clisi",
    "silhouette_stage", "stage_transfer_acc_robot_to_human", "stage_transfer_acc_human_to_robot", "cka_linear",
    "cka_debiased", "mutual_knn", "mmd_rbf", "frechet_distance", "sliced_wasserstein", "sinkhorn_divergence",
    "retrieval_precision_at_1_robot_to_human", "retrieval_map_at_r_robot_to_human", "retrieval_mrr_robot_to_human",
    "retrieval_recall_at_5_robot_to_human", "retrieval_recall_at_10_robot_to_human", "retrieval_mrr_human_to_robot",
    "retrieval_recall_at_5_human_to_robot", "retrieval_recall_at_10_human_to_robot", "cycle_consistency", "stage_ari",
    "svcca", "kendall_tau"))
EXAMPLE = "probe metrics probe-demo/stores/cotrained/level-100 --layer trunk.block2 --by stage --out metrics.json"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("stores", nargs="+", metavar="STORE", help="latent store directories (several: compare them)")
    p.add_argument("--layer", default="all", help="layer name, or 'all' (default) for every layer of each store")
    p.add_argument("--by", choices=["stage", "task"], default=None,
                   help="also report every metric per stage or task: values and nulls, no intervals (per-stage "
                        "intervals miss 0.93-0.97 coverage in benchmarks/bench_calibration.py --scopes)")
    p.add_argument("--k", type=int, default=90, help="neighbours of the one kNN graph (default 90; LISI perplexity k/3)")
    p.add_argument("--metric", choices=["cosine", "l2"], default="cosine", help="distance (default cosine)")
    p.add_argument("--bootstrap", type=int, default=30,
                   help="replicates for the 95%% intervals (default 30; 0: none). Each replicate keeps a share f of the episodes "
                        "of every embodiment x task (without replacement; f = 0.5, less on large stores) and "
                        "recomputes every metric there, kNN graph included; the interval is the estimate +- t x "
                        "the replicates' standard deviation rescaled by sqrt(f/(1-f)), t at the degrees of freedom "
                        "of the episodes (episodes - cells) and replicates, clipped to the metric's range (a "
                        "precision stays in [0, 1]). The JSON names each metric's method "
                        "under 'interval'. Metrics whose intervals miss 0.93-0.97 coverage in "
                        "benchmarks/bench_calibration.py report none (their 'interval_note' says why): "
                        f"{NO_INTERVAL_HELP}")
    p.add_argument("--intervals", choices=["refit", "reweight"], default="refit",
                   help="refit (default, described above) or reweight: per-sample values reweighted by an episode "
                        "bootstrap on the fixed graph, fitted metrics refitted on subsamples (faster, narrower than "
                        "the estimate's real spread)")
    p.add_argument("--nulls", type=int, default=3,
                   help="label permutations per null baseline (default 3; 0: none)")
    p.add_argument("--permutations", type=int, default=99,
                   help="permutations behind the p-values of ilisi, kbet, knn_embodiment_mixing and clisi "
                        "(default 99; smallest p 0.01; 0: none)")
    p.add_argument("--max-samples", type=int, default=20_000,
                   help="rows above which O(n^2) and fitted metrics use a stratified subsample (default 20000)")
    p.add_argument("--families", default=None,
                   help="comma-separated families to compute (mixing, conservation, paired, distribution, temporal, "
                        "retrieval; default all)")
    p.add_argument("--metrics", default=None, help="comma-separated metric names to compute (default all)")
    p.add_argument("--index", choices=["exact", "ivf", "hnsw"], default="exact",
                   help="kNN search: exact (default), or approximate IVF-flat / HNSW for millions of samples "
                        "(their recall against exact search on 1,000 sampled rows is noted)")
    p.add_argument("--compare", choices=["previous", "first", "none"], default="previous",
                   help="with several stores: the difference of each metric with an interval from the previous store "
                        "(default) or the first (a baseline), with a 95%% interval (paired when the stores share "
                        "data: the same resampled episodes), p-values and Holm-Bonferroni correction over all "
                        "differences; '*' marks adjusted p < 0.05")
    p.add_argument("--scales", default=None, metavar="K,K,...",
                   help="comma-separated neighbourhood sizes (e.g. 15,50,150,400): also print knn_embodiment_mixing "
                        "at each k with its null and their ratio (JSON 'scale_profile'), to see at which scale the "
                        "embodiments share the space (a ratio rising with k: shared coarse structure, separate close "
                        "neighbourhoods); a view only: metrics, verdicts and gates still use the headline metrics")
    p.add_argument("--human", default="human", help="name of the human embodiment (default 'human')")
    p.add_argument("--embodiments", default=None, metavar="NAME,NAME,...",
                   help="measure only these embodiments (at least two, the human among them unless no selected "
                        "metric compares with it, e.g. --families mixing), e.g. human,robot_b: every metric, kNN graph, null and interval uses "
                        "their samples only; paired and distribution metrics compare the human with the first "
                        "other embodiment, so keep two to choose which (default: every embodiment; the JSON "
                        "records the selection under 'embodiments')")
    p.add_argument("--seed", type=int, default=0, help="seed of subsampling, bootstrap and nulls (default 0)")
    p.add_argument("--out", default=None, help="write the metrics as JSON here")
    p.add_argument("--csv", default=None, help="write the long-form table (one row per metric and scope) as CSV here")
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing --out / --csv files (only ones probe metrics wrote)")


def _config(args: argparse.Namespace):
    from metrics.spec import MetricInputError, MetricsConfig
    from probe.errors import ConfigError

    split = (lambda s: tuple(x.strip() for x in s.split(",") if x.strip()) if s else None)
    if args.metrics:  # before any store is opened, with the nearest names (as the report's gates do)
        from probe.measure.suite import check_metric_names

        check_metric_names(list(split(args.metrics) or ()), "--metrics")
    try:
        return MetricsConfig(k=args.k, metric=args.metric, bootstrap=args.bootstrap, null_repeats=args.nulls,
                             max_samples=args.max_samples, seed=args.seed, by=args.by, permutations=args.permutations,
                             intervals=args.intervals,
                             families=split(args.families), metrics=split(args.metrics), index=args.index,
                             human=args.human)
    except (MetricInputError, ValueError) as exc:
        raise ConfigError(f"invalid metrics option: {exc}") from exc


def parse_scales(text: str | None) -> tuple[int, ...] | None:
    """``--scales 15,50,150``: the neighbourhood sizes, each a whole number >= 1; None without the flag."""
    import re

    from probe.errors import ConfigError

    if text is None:
        return None
    parts = [part.strip() for part in text.split(",")]
    for part in parts:
        if not re.fullmatch(r"[0-9]+", part) or int(part) < 1:
            raise ConfigError(f"--scales takes comma-separated whole numbers of neighbours >= 1 (e.g. 15,50,150,400), "
                              f"got {text!r} ({part!r} is not one)")
    return tuple(int(part) for part in parts)


def _fmt(v) -> str:
    """Three decimals; a value below 0.01 keeps two significant digits (a Fréchet distance of 0.00093
    is not shown as 0.000, nor a tiny negative as -0.000)."""
    if v is None:
        return "—"
    v = float(v)
    if v == 0 or not math.isfinite(v) or abs(v) >= 0.01:
        return f"{v + 0.0:.3f}"  # + 0.0: -0.0 prints as 0.000
    return f"{v:.2g}"


def _label(record: dict) -> str:
    """The record's checkpoint label, as the report names it (``cotrained diversity 100%``, ``step 400``)."""
    from pathlib import Path

    return record.get("checkpoint") or Path(record["store"]).name or record["store"]


def print_records(records: list[dict]) -> None:
    """A readable table: metric, value, 95% interval, null baseline, which direction is better."""
    from rich.table import Table

    from probe.measure.suite import better_arrow

    several = len(records) > 1
    table = Table(*(["store", "layer", "step"] if several else []), "metric", "value", "95% interval", "null",
                  "p", "better", title=None if several else f"{records[0]['store']}  layer {records[0]['layer']}  "
                                                       f"n={records[0]['n']}")
    for rec in records:
        for name, v in rec["metrics"].items():
            ci = v["ci"]
            cells = [name, _fmt(v["value"]), f"[{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else "—", _fmt(v["null"]),
                     f"{v['p']:.2g}" if v.get("p") is not None else "—", better_arrow(name)]
            if several:
                cells = [_label(rec), rec["layer"], "" if rec.get("step") is None else str(rec["step"])] + cells
            table.add_row(*cells)
    print_table(table)
    for key in ("per_stage", "per_task"):
        for rec in records:
            if key not in rec:
                continue
            scopes = list(rec[key])
            names = list(rec["metrics"])
            sub = Table("metric", *scopes, title=f"{key.replace('_', ' ')}: {_label(rec)}, layer {rec['layer']}")
            for name in names:
                sub.add_row(name, *[_fmt(rec[key][s].get(name, {}).get("value")) for s in scopes])
            print_table(sub, key_columns=1)
    for note, where in _shared_notes(records):
        console.print(Text.assemble(("note", "dim"), f" ({where}): {note}"), soft_wrap=True)


def print_scale_profiles(records: list[dict]) -> None:
    """The records' ``scale_profile`` as one table (k, mixing, null, ratio; store and layer with several
    records), then its notes, each once."""
    from rich.table import Table

    several = len(records) > 1
    heading = "embodiment mixing by neighbourhood size"
    if not several:
        heading += f": {_label(records[0])}, layer {records[0]['layer']}"
    console.print(Text(heading, style="bold"), soft_wrap=True)
    table = Table(*(["store", "layer"] if several else []), "k", "mixing", "null", "ratio")
    for rec in records:
        for point in rec["scale_profile"]:
            cells = [str(point["k"]), _fmt(point["value"]), _fmt(point["null"]), _fmt(point["ratio"])]
            table.add_row(*([_label(rec), rec["layer"]] if several else []), *cells)
        if several and rec is not records[-1]:
            table.add_section()
    print_table(table, key_columns=3 if several else 1)
    console.print(Text("mixing: knn_embodiment_mixing on the k nearest neighbours (1 = chance); null: the same with "
                       "embodiment labels shuffled between (episode, stage) runs; ratio = mixing / null, comparable "
                       "across k (about 1 at every k: mixed; rising with k: shared coarse structure, separate close "
                       "neighbourhoods)", style="dim"), soft_wrap=True)
    for note, where in _shared_notes(records, "scale_profile_notes"):
        console.print(Text.assemble(("note", "dim"), f" (scale profile, {where}): {note}"), soft_wrap=True)


def _shared_notes(records: list[dict], key: str = "notes") -> list[tuple[str, str]]:
    """Each distinct note (of ``key``) once, in order of first appearance, with the stores and layers it is
    about (``all 8 stores, trunk.block2`` when every record has it); a record's notes on undefined metrics are
    first grouped into one line per reason (:func:`metrics.notes.group_notes`)."""
    from metrics.notes import group_notes

    holders: dict[str, list[dict]] = {}
    for rec in records:
        for note in group_notes(list(rec.get(key, ()))):
            holders.setdefault(note, []).append(rec)
    out = []
    for note, recs in holders.items():
        layers = ", ".join(dict.fromkeys(str(r["layer"]) for r in recs))
        if len(recs) > 1 and len(recs) == len(records):
            stores = len({r["store"] for r in recs})
            out.append((note, f"all {stores} stores, {layers}" if stores > 1 else f"{_label(recs[0])}, {layers}"))
        else:
            out.append((note, "; ".join(f"{_label(r)}, {r['layer']}" for r in recs)))
    return out


def comparisons(records: list[dict], against: str) -> list[dict]:
    """Differences between stores (consecutive, or each against the first), added to each later record
    under ``compared_to``; returns them all."""
    from probe.measure.compare import against_first, compare_records, consecutive

    labels = [_label(r) for r in records]
    pairs = against_first(records, labels) if against == "first" else consecutive(records, labels)
    rows = compare_records(pairs)
    for label_a, _, label_b, rec in pairs:
        mine = {r["metric"]: {k: r[k] for k in ("delta", "ci", "p", "p_holm", "paired", "significant", "direction")}
                for r in rows if r["from"] == label_a and r["to"] == label_b and r["layer"] == rec["layer"]}
        rec["compared_to"] = {"store": label_a, "correction": "Holm-Bonferroni", "metrics": mine}
    return rows


def print_comparisons(rows: list[dict]) -> None:
    from rich.table import Table

    table = Table("layer", "from", "to", "metric", "difference", "95% interval", "p (Holm)", "paired",
                  title="changes (* adjusted p < 0.05; Holm-Bonferroni over all differences shown)")
    for r in rows:
        mark = "*" if r["significant"] else ""
        style = {"better": "green", "worse": "red"}.get(r["direction"], "")
        table.add_row(str(r["layer"]), r["from"], r["to"], r["metric"], f"{r['delta']:+.3f}{mark}",
                      f"[{r['ci'][0]:+.3f}, {r['ci'][1]:+.3f}]", f"{r['p_holm']:.2g}", "yes" if r["paired"] else "no",
                      style=style)
    print_table(table)


def run(args: argparse.Namespace) -> int:
    from probe.errors import ConfigError
    from probe.measure.selection import parse_embodiments
    from probe.measure.suite import METRICS_CSV, METRICS_JSON, evaluate, write_metrics_csv, write_metrics_json
    from probe.validate import check_output_path

    if args.out and args.csv and os.path.abspath(args.out) == os.path.abspath(args.csv):
        raise ConfigError(f"--out and --csv are the same file '{args.out}'; give each its own path")
    for path, kind in ((args.out, METRICS_JSON), (args.csv, METRICS_CSV)):
        if path:  # before the metrics are computed, not after
            check_output_path(path, args.overwrite, kind=kind)
    scales = parse_scales(args.scales)
    config = _config(args)
    records = evaluate(args.stores, layers=args.layer, config=config, progress=True, scales=scales,
                       embodiments=parse_embodiments(args.embodiments))
    print_records(records)
    if scales:
        print_scale_profiles(records)
    if len(args.stores) > 1 and args.compare != "none":
        rows = comparisons(records, args.compare)
        if rows:
            print_comparisons(rows)
    written = {}
    if args.out:
        written["metrics JSON"] = write_metrics_json(args.out, records, overwrite=args.overwrite)
    if args.csv:
        written["metrics table"] = write_metrics_csv(args.csv, records, overwrite=args.overwrite)
    outputs(written, [] if args.by else [shlex.join(["probe", "metrics", args.stores[0], "--by", "stage"])
                                         + "   (per-stage values)"])
    return 0
