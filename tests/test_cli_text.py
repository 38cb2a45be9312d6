"""What the command line prints: help pages, and commands that survive being copied from a narrow terminal."""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Iterator

from probe.cli import build_parser
from probe.console import console, outputs


def _help_pages(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, str]]:
    """Every help page of ``parser`` and of its subcommands, at any depth: (command, text)."""
    yield " ".join(("probe",) + prefix), parser.format_help()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _help_pages(sub, prefix + (name,))


def test_no_help_page_shows_a_doubled_percent_sign():
    pages = dict(_help_pages(build_parser()))
    assert "probe metrics" in pages and "probe world generate" in pages
    assert "95% intervals" in pages["probe metrics"]
    assert [cmd for cmd, text in pages.items() if "%%" in text] == []


def test_printed_commands_and_paths_stay_one_line_at_a_narrow_terminal(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(console, "width", 40)
    store = tmp_path / "a folder with spaces" / "stores" / "cotrained" / "step-001200"
    argv = ["probe", "serve", "--cache", str(tmp_path / "cache"), str(store), str(store.with_name("step-000000"))]
    outputs({"report": tmp_path / "report" / "report.html"}, [shlex.join(argv), "probe info [STORE]"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"wrote report: {tmp_path / 'report' / 'report.html'}"
    assert lines[1] == "next:" and shlex.split(lines[2]) == argv
    assert lines[3].strip() == "probe info [STORE]"  # brackets are text, not markup
