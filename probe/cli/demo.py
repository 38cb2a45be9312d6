"""probe demo: the whole pipeline on the built-in co-training world."""

from __future__ import annotations

import argparse

NAME = "demo"
HELP = "run the whole pipeline on the built-in co-training world (generate, train, extract, measure, report, serve)"
EXAMPLE = "probe demo --out probe-demo --no-serve"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="probe-demo", help="directory for datasets, checkpoints, stores and reports")
    p.add_argument("--no-serve", action="store_true", help="do not start the dashboard at the end")
    p.add_argument("--size", default="default", choices=["tiny", "small", "default"],
                   help="world size: tiny is for tests, default for the real demo")
    p.add_argument("--overwrite", action="store_true", help="regenerate cached outputs")
    p.add_argument("--port", type=int, default=8050, help="dashboard port on 127.0.0.1 (default 8050); checked first")


def run(args: argparse.Namespace) -> int:
    from probe.demo.run import run_demo

    return run_demo(args)
