"""What the CLI shows the user: short summaries of where outputs went and what to run next, and tables.

Paths and commands are printed as one line each, never wrapped at the terminal's width
and never read as rich markup, so that a printed command can be copied and pasted whole
(build commands with :func:`shlex.join`, so that paths with spaces stay one argument).

Tables go through :func:`print_table`, which shows every string in a table (title, headers, cells: task and
stage names, paths) as written, never as markup, and never hides a value behind an ellipsis: a column
is never narrower than its longest word, a wide table is split into parts, and output that is not
a terminal (CI logs, files, pipes) is :data:`WIDE` columns wide unless ``$COLUMNS`` says otherwise
(Rich would use 80).
"""

from __future__ import annotations

import copy
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from rich.cells import cell_len
from rich.console import Console
from rich.errors import MarkupError
from rich.style import Style
from rich.table import Table
from rich.text import Text

WIDE = 160  # columns of output that is not a terminal, without $COLUMNS
# a longer word (a long path) may fold across lines in a narrow column; every metric name (39 characters at most:
# retrieval_precision_at_1_robot_to_human) is shorter, so metric names stay whole
LONGEST_WORD = 48


def _width() -> int | None:
    """``None`` (Rich's own: the terminal's, or ``$COLUMNS``) at a terminal or with ``$COLUMNS``; else WIDE."""
    if os.environ.get("COLUMNS", "").strip().isdigit():
        return None
    try:
        return None if sys.stdout.isatty() else WIDE
    except (AttributeError, ValueError):  # no stdout, or a closed one
        return WIDE


console = Console(highlight=False, width=_width())


def outputs(written: Mapping[str, str | Path], next_steps: Sequence[str] = ()) -> None:
    """Print each output's label and path, then suggested next commands, each on one unwrapped line."""
    for label, path in written.items():
        console.print(Text.assemble(("wrote", "bold green"), f" {label}: {path}"), soft_wrap=True)
    if next_steps:
        console.print("[bold]next:[/]")
        for step in next_steps:
            console.print(Text(f"  {step}"), soft_wrap=True)


def _plain(cell: object) -> str:
    if isinstance(cell, Text):
        return cell.plain
    if not isinstance(cell, str):
        return ""
    try:
        return console.render_str(cell).plain
    except MarkupError:  # a value that is not valid markup (e.g. "[/]" in a name): measure it as written
        return cell


def _as_text(value: object, style: str | Style = "") -> object:
    """A string as a plain :class:`Text` (shown as written: "[run1]" in a path is not markup); else ``value``."""
    return Text(value, style=style) if isinstance(value, str) else value


def _keep_whole(table: Table) -> None:
    """Give every column a minimum width that keeps its words whole (its cells, when it does not wrap),
    and fold what is longer than LONGEST_WORD instead of cutting it with an ellipsis."""
    for column in table.columns:
        cells = [_plain(c) for c in (column.header, *column.cells)]
        if column.no_wrap:
            need = max((cell_len(line) for c in cells for line in c.splitlines()), default=1)
        else:
            need = min(LONGEST_WORD, max((cell_len(w) for c in cells for w in c.split()), default=1))
        column.min_width = max(column.min_width or 0, need)
        if column.overflow == "ellipsis":
            column.overflow = "fold"


def _fit(table: Table, width: int) -> None:
    """When ``table`` is wider than ``width`` but its words fit, fix each column's width: its minimum, then
    the room left shared out: columns that lack little get their natural width, the others share the rest
    in proportion to what they lack (Rich's own squeeze can cut below a minimum, or overshoot the width
    when it restores one)."""
    columns = table.columns
    if not columns or any(c.width is not None for c in columns):
        return
    low = [c.min_width or 1 for c in columns]
    high = [max(lo, max((cell_len(line) for cell in (c.header, *c.cells) for line in _plain(cell).splitlines()),
                        default=1)) for lo, c in zip(low, columns)]
    room = width - table._extra_width - sum(table._get_padding_width(i) for i in range(len(columns)))
    if sum(high) <= room or sum(low) > room:
        return
    widths, left = list(low), room - sum(low)
    pending = sorted(range(len(columns)), key=lambda i: high[i] - low[i])
    while pending and high[pending[0]] - low[pending[0]] <= left // len(pending):
        i = pending.pop(0)
        widths[i], left = high[i], left - (high[i] - low[i])
    lack = sum(high[i] - low[i] for i in pending)
    for i in pending:
        widths[i] += left * (high[i] - low[i]) // lack
    for i in sorted(pending, key=lambda i: widths[i] - high[i])[:room - sum(widths)]:
        widths[i] += 1  # the rounding's remainder, to the columns that lack most
    for column, w in zip(columns, widths):
        column.width = w


def _sizes(table: Table) -> list[int]:
    """The narrowest each column can be drawn, with its padding and one rule."""
    return [(c.min_width or 1) + 3 for c in table.columns]


def _parts(table: Table, key_columns: int, width: int) -> list[Table]:
    """``table`` split into tables that each repeat the first ``key_columns`` columns and fit ``width``."""
    size = _sizes(table)
    key, rest = list(range(key_columns)), list(range(key_columns, len(table.columns)))
    groups: list[list[int]] = [[]]
    for i in rest:
        if groups[-1] and 1 + sum(size[k] for k in key + groups[-1]) + size[i] > width:
            groups.append([])
        groups[-1].append(i)
    parts = []
    for n, group in enumerate(groups):
        part = copy.copy(table)
        part.columns = [copy.copy(table.columns[i]) for i in key + group]
        for index, column in enumerate(part.columns):
            column._index = index
        part.title = table.title if n == 0 else None
        part.caption = table.caption if n == len(groups) - 1 else None
        parts.append(part)
    return parts


def print_table(table: Table, key_columns: int = 0) -> None:
    """Print ``table`` so that no value is hidden at any width: its strings are shown as written (style a cell with
    a :class:`Text`, or a row with ``add_row(..., style=)``), words stay whole (columns fold only words
    longer than LONGEST_WORD), a table wider than the console is printed in parts that repeat its first
    ``key_columns`` columns (row labels), and a table still wider is printed uncropped (the terminal wraps it)."""
    table.title = _as_text(table.title, Style.pick_first(table.title_style, "table.title"))
    table.caption = _as_text(table.caption, Style.pick_first(table.caption_style, "table.caption"))
    try:  # names and paths in cells ("pick [left] cup", "[/]") are shown as written, never read as markup
        for column in table.columns:
            column.header = _as_text(column.header)
            column._cells = [_as_text(cell) for cell in column._cells]
    except AttributeError:
        pass
    _keep_whole(table)
    tables = [table]
    try:  # splitting and fitting read Rich's table internals (rich 13-15); without them, Rich lays it out
        if key_columns and 1 + sum(_sizes(table)) > console.width:
            tables = _parts(table, key_columns, console.width)
        for part in tables:
            _fit(part, console.width)
    except AttributeError:
        tables = [table]
    for part in tables:
        console.print(part, crop=False)
