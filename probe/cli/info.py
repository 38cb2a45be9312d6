"""probe info: describe a store."""

from __future__ import annotations

import argparse

from probe.console import console

NAME = "info"
HELP = "describe a latent store: samples per embodiment, tasks, stages, layers, provenance, dataset roots"
EXAMPLE = "probe info probe-demo/stores/cotrained/step-000400"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", help="latent store directory")


def run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from probe import columns as C
    from probe.store.media import VideoPaths
    from probe.store.store import open_store

    store = open_store(args.store)
    meta = store.meta
    console.print(f"[bold]{store.path}[/]  {store.n} samples, fingerprint {store.fingerprint[:12]}")
    counts = meta.groupby([C.EMBODIMENT, C.TASK]).agg(samples=(C.SAMPLE_ID, "size"),
                                                      episodes=(C.EPISODE, "nunique"))
    table = Table("embodiment", "task", "episodes", "samples")
    for (emb, task), row in counts.iterrows():
        table.add_row(str(emb), str(task), str(row["episodes"]), str(row["samples"]))
    console.print(table)
    console.print("stages: " + ", ".join(dict.fromkeys(meta[C.STAGE].tolist())))
    layers = Table("layer", "dim", "pooling")
    for name, info in store.manifest["layers"].items():
        layers.add_row(name, str(info["dim"]), str(info.get("pooling", "")))
    console.print(layers)
    prov = store.provenance
    if prov:
        for key in ("source", "checkpoint", "step", "adapter"):
            if key in prov:
                console.print(f"{key}: {prov[key]}")
    videos = VideoPaths(store)
    if videos.roots:  # the names --data-root takes, and where each dataset's videos are looked for
        datasets = Table("dataset", "root (videos are read from here; move with --data-root NAME=PATH)")
        for name, entry in videos.roots.items():
            datasets.add_row(name, str(entry.root) if entry.root is not None else "—")
        console.print(datasets)
    for line in videos.warnings:
        console.print(f"[yellow]warning:[/] {line}")
    for warning in store.manifest.get("warnings", []):
        console.print(f"[yellow]warning:[/] {warning}")
    return 0
