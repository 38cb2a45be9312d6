"""probe cache: show what the cache directory holds, and clear it."""

from __future__ import annotations

import argparse

from probe.console import console, print_table

NAME = "cache"
HELP = "show the cache directory (decoded frames, kNN graphs, layouts ...) and its size; --clear empties it"
EXAMPLE = "probe cache --clear frames"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache-dir", default=None,
                   help="the cache directory (default $PROBE_CACHE_DIR or ~/.cache/embodiment-probe)")
    p.add_argument("--clear", nargs="*", metavar="PART", default=None,
                   help="delete these parts (e.g. frames graphs), or everything when none is named")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rich.markup import escape
    from rich.table import Table

    from probe.sizes import format_bytes as _size
    from probe.cache.directory import cache_usage, clear_cache, default_cache_dir

    root = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    if args.clear is not None:
        freed = clear_cache(args.clear or None, root)
        console.print(f"cleared {', '.join(args.clear) if args.clear else 'everything'} under {root}: "
                      f"{_size(freed)} freed", markup=False)
    usage = cache_usage(root)
    table = Table("part", "files", "size", "holds")
    for u in usage:
        table.add_row(u.kind, str(u.files), _size(u.bytes), u.what)
    console.print(f"[bold]{escape(str(root))}[/]  {_size(sum(u.bytes for u in usage))} in all")
    print_table(table)
    console.print("Anything here may be deleted; it is computed again when needed. "
                  "Move it with $PROBE_CACHE_DIR.")
    return 0
