"""probe info: describe a store."""

from __future__ import annotations

import argparse
from pathlib import Path

from probe.console import console, outputs, print_table

NAME = "info"
HELP = "describe a latent store: samples per embodiment, tasks, stages, layers, provenance, dataset roots"
EXAMPLE = "probe info probe-demo/stores/cotrained/level-100"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", help="latent store directory")


def run(args: argparse.Namespace) -> int:
    import shlex

    from rich.markup import escape
    from rich.table import Table

    from probe import columns as C
    from probe.errors import ConfigError
    from probe.store.media import VideoPaths
    from probe.store.store import MANIFEST, names_of, open_store, stores_inside

    inside = [] if (Path(args.store) / MANIFEST).exists() else stores_inside(args.store)
    if inside:
        raise ConfigError(f"'{args.store}' is a folder of {len(inside)} stores, not a store: {names_of(inside)}; "
                          f"run {shlex.join(['probe', 'info', str(inside[-1])])} (one store at a time)")
    store = open_store(args.store)
    meta = store.meta
    console.print(f"[bold]{escape(str(store.path))}[/]  {store.n} samples, fingerprint {store.fingerprint[:12]}")
    # an episode is a (dataset, episode) pair: two datasets may both hold an episode 0
    keyed = meta.assign(_episode=C.episode_keys(meta))
    counts = keyed.groupby([C.EMBODIMENT, C.TASK]).agg(samples=(C.SAMPLE_ID, "size"),
                                                       episodes=("_episode", "nunique"))
    table = Table("embodiment", "task", "episodes", "samples")
    for (emb, task), row in counts.iterrows():
        table.add_row(str(emb), str(task), str(row["episodes"]), str(row["samples"]))
    print_table(table)
    console.print("stages: " + ", ".join(map(str, dict.fromkeys(meta[C.STAGE].tolist()))), markup=False)
    layers = Table("layer", "dim", "pooling")
    for name, info in store.manifest["layers"].items():
        layers.add_row(name, str(info["dim"]), str(info.get("pooling", "")))
    print_table(layers)
    prov = store.provenance
    if prov:
        for key in ("source", "checkpoint", "step", "adapter"):
            if key in prov:
                for line in provenance_lines(key, prov[key]):
                    console.print(line, markup=False, soft_wrap=True)
        from probe.extraction.samples import relabel_notes

        for note in relabel_notes(prov.get("datasets") or []):  # tasks given with --task
            console.print(f"task (--task): {note}", markup=False, soft_wrap=True)
    videos = VideoPaths(store)
    if videos.roots:  # the names --data-root takes, and where each dataset's videos are looked for
        datasets = Table("dataset", "root (videos are read from here; move with --data-root NAME=PATH)")
        for name, entry in videos.roots.items():
            datasets.add_row(name, str(entry.root) if entry.root is not None else "—")
        print_table(datasets)
    for line in videos.warnings:
        console.print(f"[yellow]warning:[/] {escape(str(line))}")
    for warning in store.manifest.get("warnings", []):
        console.print(f"[yellow]warning:[/] {escape(str(warning))}")
    outputs({}, [shlex.join(["probe", "metrics", str(store.path)]) + "   (how well embodiments mix, every layer)",
                 shlex.join(["probe", "serve", str(store.path)]) + "   (the joint map in the dashboard)"])
    return 0


def provenance_lines(key: str, value, indent: str = "") -> list[str]:
    """``key: value`` as readable lines: a dict one indented line per entry, a list comma-separated, numbers
    rounded; empty entries left out."""
    if isinstance(value, dict):
        lines = [f"{indent}{key}:"]
        for k, v in value.items():
            if v not in (None, "", [], {}):
                lines += provenance_lines(str(k), v, indent + "  ")
        return lines
    return [f"{indent}{key}: {_plain(value)}"]


def _plain(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_plain(v) for v in value)
    return str(value)
