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


# -- tables that hide no value, at any width ------------------------------------------------------------------


def _table_text(table, width, monkeypatch, capsys, key_columns=0) -> list[str]:
    from probe.console import print_table

    monkeypatch.setattr(console, "width", width)
    print_table(table, key_columns=key_columns)
    return capsys.readouterr().out.splitlines()


def test_a_narrow_table_keeps_every_word_whole_and_fits(monkeypatch, capsys):
    from rich.table import Table

    def table():
        t = Table(title="where human data is missing")
        for name in ("#", "task", "stage", "median dist", "beyond", "NN same stage", "clip (s)"):
            t.add_column(name, no_wrap=name == "#")
        for i in range(3):
            t.add_row(str(i + 1), "pick the cup and place it on the plate", "release", "0.0732", "76%", "81%",
                      "11.10-11.90")
        return t

    for width in (70, 80, 100):  # Rich alone cut these to 'rel…', '0.0…', '11.1…' at 80 columns
        lines = _table_text(table(), width, monkeypatch, capsys)
        text = "\n".join(lines)
        assert "…" not in text and max(len(line) for line in lines) <= width
        for word in ("release", "0.0732", "76%", "81%", "11.10-11.90", "plate"):
            assert text.count(word) == 3, (width, word)
    # narrower than the words: printed whole and uncropped (the terminal wraps the lines)
    text = "\n".join(_table_text(table(), 40, monkeypatch, capsys))
    assert "…" not in text and text.count("11.10-11.90") == 3 and text.count("release") == 3


def test_a_wide_table_is_split_into_parts_that_repeat_the_row_labels(monkeypatch, capsys):
    from rich.table import Table

    stages = [f"stage{i}" for i in range(10)]
    table = Table("metric", *stages, title="per stage")
    table.add_row("retrieval_recall_at_10_robot_to_human", *[f"{i}.123" for i in range(9)], "2576.782")
    table.add_row("ilisi", *["0.5"] * 10)
    lines = _table_text(table, 80, monkeypatch, capsys, key_columns=1)
    text = "\n".join(lines)
    assert "…" not in text and max(len(line) for line in lines) <= 80
    assert all(s in text for s in stages) and "2576.782" in text and text.count("ilisi") >= 2
    assert text.count("per stage") == 1


def test_output_that_is_not_a_terminal_is_wide_unless_columns_says_otherwise(monkeypatch):
    import io

    from probe import console as printing

    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.setattr("sys.stdout", io.StringIO())
    assert printing._width() == printing.WIDE == 160
    monkeypatch.setenv("COLUMNS", "100")
    assert printing._width() is None  # Rich reads $COLUMNS itself


def test_demo_headline_table_explains_its_brackets_and_names_checkpoints_whole(monkeypatch, capsys):
    from probe.demo.run import _print_metrics

    entry = {"value": 0.031, "null": 0.712}
    records = [{"store": f"probe-demo/stores/{recipe}/level-{level:03d}", "layer": "trunk.block2",
                "metrics": {m: entry for m in ("ilisi", "kbet", "knn_embodiment_mixing", "silhouette_embodiment",
                                               "embodiment_probe_acc", "clisi", "silhouette_stage")}}
               for recipe in ("cotrained", "robot-only") for level in (0, 100)]
    monkeypatch.setattr(console, "width", 80)
    _print_metrics(records)
    lines = capsys.readouterr().out.splitlines()
    text = "\n".join(lines)
    assert "value [null baseline]" in lines[0] and "…" not in text and max(map(len, lines)) <= 80
    assert "robot-only" in text and "level-100" in text and "[0.71]" in text


# -- help pages: defaults, examples a demo user can paste ------------------------------------------------------


def _options(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, prefix + (name,))
        elif action.option_strings:
            yield " ".join(("probe",) + prefix), parser, action


# options whose help states the default in its own words
DEFAULT_IN_OWN_WORDS = {"--frame-cache", "--compare", "--kind"}


def test_every_option_with_a_default_states_it():
    import re

    missing = []
    for command, parser, action in _options(build_parser()):
        default = action.default
        if default is None or default is False or default is argparse.SUPPRESS or default == [] \
                or action.dest == "help" or set(action.option_strings) & DEFAULT_IN_OWN_WORDS:
            continue
        value = default[0] if isinstance(default, list) and len(default) == 1 else default
        value = re.escape(f"{value:g}" if isinstance(value, float) else str(value))
        text = parser._get_formatter()._expand_help(action) if action.help else ""
        if not re.search(r"default\W{0,3}'?" + value, text) and not re.search(value + r"\W{0,3}\(?default", text):
            missing.append(f"{command} {action.option_strings[0]} (default {default!r})")
    assert missing == []


def test_world_actions_have_a_description_an_example_and_debug():
    pages = dict(_help_pages(build_parser()))
    for action in ("generate", "train", "sweep", "build"):
        page = pages[f"probe world {action}"]
        usage_end = page.index("\n\n")
        assert page[usage_end:].lstrip().split("\n")[0] and "example:\n  probe world " + action in page, action
        assert "--debug" in page, action
    assert build_parser().parse_args(["world", "sweep", "w", "--debug"]).debug is True
    assert "(default: 0)" in pages["probe world build"] and "(default: default)" in pages["probe world build"]


def test_every_example_parses_and_names_what_the_demo_makes():
    import importlib
    import re

    from probe.cli import COMMANDS
    from probe.demo.run import DEMO_LAYERS
    from probe.report.gates import parse_thresholds

    demo_paths = re.compile(r"probe-demo/(stores/(cotrained|robot-only)/level-(\d{3}|\*)"
                            r"|world/sweep/(cotrained|robot-only|pretrained)/level-\d{3}|world/datasets/(human|robot))$")
    for name in COMMANDS:
        example = importlib.import_module(f"probe.cli.{name}").EXAMPLE
        for command in example.split(" && "):
            argv = shlex.split(command)[1:]
            if "*" not in command:
                build_parser().parse_args(argv)
            for word in argv:
                path = word.split("=", 1)[-1]
                if path.startswith("probe-demo/"):
                    assert demo_paths.match(path), (name, path)
            layers = [argv[i + 1] for i, w in enumerate(argv[:-1]) if w == "--layer" and argv[i + 1] != "all"]
            assert set(layers) <= set(DEMO_LAYERS), (name, layers)
            gates = [argv[i + 1] for i, w in enumerate(argv[:-1]) if w == "--fail-under"]
            parse_thresholds(gates, "--fail-under")  # a gate that can pass: its value lies in the metric's range


def test_a_table_value_that_is_not_markup_is_printed_as_written(capsys):
    """A task or stage name such as "lift [/] it" or "[bold]grasp[/bold]" is not Rich markup: the table shows it
    as written instead of failing or styling it."""
    from rich.table import Table

    from probe.console import print_table

    table = Table("task", "stage")
    table.add_row("lift [/] it", "[bold]grasp[/bold]")
    print_table(table)
    out = capsys.readouterr().out
    assert "lift [/] it" in out and "[bold]grasp[/bold]" in out
