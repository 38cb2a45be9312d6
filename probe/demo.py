"""The demo pipeline: each stage that exists runs in order and says where its outputs went."""

from __future__ import annotations

import argparse
from pathlib import Path

from probe.cli.output import console


def run_demo(args: argparse.Namespace) -> int:
    """Run every available stage of the pipeline into ``args.out``."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    console.print(f"[bold]probe demo[/] -> {out}")
    console.print("the built-in co-training world is not part of this build yet; nothing else to run")
    return 0
