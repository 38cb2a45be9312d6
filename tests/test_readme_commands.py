"""Every concrete `probe ...` command the README and docs/*.md show parses with the CLI as written (a command a
user copies must run: options renamed or required since the page was written are caught here)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from probe.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = (README, *sorted((ROOT / "docs").glob("*.md")))
USAGE_SYNTAX = ("[", "|", "<", "...")  # synopsis lines (optional parts, choices, placeholders) are not commands


def readme_commands(page: Path = README) -> list[str]:
    """A page's `probe` command lines, continuation lines joined, trailing comments dropped."""
    commands, current = [], ""
    for raw in page.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if current:
            current += " " + line
        elif line.startswith("probe "):
            current = line
        else:
            continue
        if current.endswith("\\"):
            current = current[:-1].rstrip()
            continue
        command = current.split("  #")[0].split("   (")[0].strip()
        current = ""
        if not any(mark in command for mark in USAGE_SYNTAX):
            commands.append(command)
    return commands


def test_the_readme_shows_commands():
    assert len(readme_commands()) >= 15


@pytest.mark.parametrize("command", sorted({c for page in PAGES for c in readme_commands(page)}))
def test_readme_command_parses(command):
    parser = build_parser()
    try:
        parser.parse_args(shlex.split(command)[1:])
    except SystemExit as exc:
        pytest.fail(f"the README's command does not parse (exit {exc.code}): {command}")


def _commands(parser, prefix: str = "probe"):
    """``(command, parser)`` for every subcommand, nested ones (``probe world sweep``) included."""
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield f"{prefix} {name}", sub
                yield from _commands(sub, f"{prefix} {name}")


def test_every_long_option_of_every_command_is_in_the_readme():
    """A user reads the README, not only --help: an option added to a command without a word there is caught."""
    import re

    text = README.read_text(encoding="utf-8")
    missing = sorted({f"{command} {option}" for command, sub in _commands(build_parser())
                      for action in sub._actions for option in action.option_strings
                      if option.startswith("--") and option not in ("--help", "--debug")
                      and not re.search(re.escape(option) + r"(?![\w-])", text)})
    assert not missing, f"options the README never mentions: {missing}"
