"""What the CLI shows the user: short summaries of where outputs went and what to run next."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from rich.console import Console

console = Console(highlight=False)


def outputs(written: Mapping[str, str | Path], next_steps: Sequence[str] = ()) -> None:
    """Print each output's label and path, then suggested next commands."""
    for label, path in written.items():
        console.print(f"[bold green]wrote[/] {label}: {path}")
    if next_steps:
        console.print("[bold]next:[/]")
        for step in next_steps:
            console.print(f"  {step}")
