"""What the CLI shows the user: short summaries of where outputs went and what to run next.

Paths and commands are printed as one line each, never wrapped at the terminal's width
and never read as rich markup, so that a printed command can be copied and pasted whole
(build commands with :func:`shlex.join`, so that paths with spaces stay one argument).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from rich.console import Console
from rich.text import Text

console = Console(highlight=False)


def outputs(written: Mapping[str, str | Path], next_steps: Sequence[str] = ()) -> None:
    """Print each output's label and path, then suggested next commands, each on one unwrapped line."""
    for label, path in written.items():
        console.print(Text.assemble(("wrote", "bold green"), f" {label}: {path}"), soft_wrap=True)
    if next_steps:
        console.print("[bold]next:[/]")
        for step in next_steps:
            console.print(Text(f"  {step}"), soft_wrap=True)
