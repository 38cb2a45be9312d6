"""probe demo: the whole pipeline on the built-in co-training world."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "demo"
HELP = "run the whole pipeline on the built-in co-training world (generate, train, extract, measure, report, serve)"
EXAMPLE = "probe demo --out probe-demo --no-serve"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="probe-demo",
                   help="directory for datasets, checkpoints, stores and reports (default: probe-demo)")
    p.add_argument("--no-serve", action="store_true", help="do not start the dashboard at the end")
    p.add_argument("--size", default="default", choices=["tiny", "small", "default", "large"],
                   help="world and sweep size: tiny is for tests, default for the real demo (4 diversity levels, "
                        "about 6 minutes on 2 cores), large for the full curve (5 levels, longer training); "
                        "default: %(default)s")
    p.add_argument("--overwrite", action="store_true", help="regenerate cached outputs")
    p.add_argument("--port", type=int, default=8050, help="dashboard port on 127.0.0.1 (default 8050); checked first")


def cache_root(args: argparse.Namespace) -> Path:
    """The demo's cache directory, ``--out``/cache: numba's compiled code goes there too."""
    from probe.demo.run import demo_cache

    return demo_cache(args.out)


def serve_command(stores: list[Path], cache: Path, layer: str) -> list[str]:
    """The ``probe serve`` command line that opens ``stores`` at ``layer`` (the others in the layer menu) with the
    demo's cache (as argv)."""
    return ["probe", "serve", "--cache", str(cache), "--start-layer", layer, *(str(p) for p in stores)]


def _cache_files(root: Path) -> set[str]:
    """The files under the cache directory ``root``. Cached results are written once, under a key, and only touched
    when read again (their recency), so a run that adds none computed nothing there."""
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()} if root.is_dir() else set()


def run(args: argparse.Namespace) -> int:
    import shlex

    from rich.markup import escape
    from rich.text import Text

    from probe.cli.serve import check_port, launch, warm
    from probe.console import console, outputs
    from probe.demo.run import HEADLINE_LAYER, DemoConfig, run_demo

    if not args.no_serve:
        check_port("127.0.0.1", args.port)  # before minutes of work, not after
    cache_before = _cache_files(cache_root(args))
    done = run_demo(DemoConfig(out=args.out, size=args.size, overwrite=args.overwrite))
    console.print("[bold]6/6[/] dashboard: the first map, its nearest-clip index, metrics and coverage, cached in "
                  f"{escape(str(done.cache))} (the dashboard prepares the other maps in the background)")
    # what `probe serve` computes before it answers, computed now into the demo's cache (the same keys:
    # the same defaults as the printed command), so that the command below answers in seconds
    warm([str(p) for p in done.dashboard], cache=done.cache, progress=True, lazy=True, start=HEADLINE_LAYER)
    reused = done.reused | ({"cache"} if cache_before and _cache_files(done.cache) <= cache_before else set())
    for label, path in {"world": done.world, "sweep": done.sweep, "stores": Path(args.out) / "stores",
                        "metrics": done.metrics, "index": done.index, "clips": done.clips, "report": done.report,
                        "cache": done.cache}.items():
        if label in reused:  # found from an earlier run and left as it was
            console.print(Text.assemble(("reused", "bold"), f" {label}: {path}"), soft_wrap=True)
        else:
            outputs({label: path})
    outputs({}, [shlex.join(["open", str(done.report)]),
                 shlex.join(serve_command(done.dashboard, done.cache, HEADLINE_LAYER))])
    if args.no_serve:
        return 0
    check_port("127.0.0.1", args.port)
    launch([str(p) for p in done.dashboard], cache=done.cache, port=args.port, start=HEADLINE_LAYER)
    return 0
