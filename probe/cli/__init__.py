"""The ``probe`` command line: one module per subcommand, each a thin adapter over a function.

A subcommand module defines ``NAME``, ``HELP`` (one line), ``EXAMPLE``,
``add_arguments(parser)`` and ``run(args) -> int``. Errors from :mod:`probe.errors`
print one line and exit with code 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import re
import sys
from collections.abc import Sequence
from typing import NoReturn

from probe.errors import ProbeError

# Subcommand modules in the order ``probe --help`` lists them.
COMMANDS: tuple[str, ...] = (
    "demo",
    "world",
    "layers",
    "extract",
    "import_",
    "info",
    "metrics",
    "index",
    "retrieve",
    "coverage",
    "serve",
    "report",
    "export",
    "cache",
)


class Parser(argparse.ArgumentParser):
    """The parser of ``probe`` and of every subcommand (``add_subparsers`` makes its sub-parsers of the same
    class, ``probe world``'s actions included): an argument error is one line naming the command whose
    ``--help`` to read, exit code 2, no usage block."""

    def error(self, message: str) -> NoReturn:
        line = " ".join(message.split())
        self.exit(2, f"{self.prog}: error: {line}; see {self.prog} --help\n")

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        parsed, extra = super().parse_known_args(args, namespace)
        if not hasattr(parsed, "_parser"):  # the innermost parser that read the command line sets it first
            parsed._parser = self
        return parsed, extra

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        # Unrecognized arguments are found by the top parser; the sub-parser that read the command line
        # names them, so that the error points to its --help (not to 'probe --help').
        parsed, extra = self.parse_known_args(args, namespace)
        if extra:
            parsed._parser.error(f"unrecognized arguments: {' '.join(extra)}{parsed._parser.did_you_mean(extra)}")
        return parsed

    def did_you_mean(self, extra: Sequence[str]) -> str:
        """`` (did you mean --layer?)`` for unrecognized arguments that look like options (``--layr``,
        ``-layer``, ``--layr=x``): this command's closest long options, compared without their dashes (which
        every option shares, so that they do not make unrelated names look close); "" when none is close."""
        import difflib

        options = {o.lstrip("-"): o for a in self._actions if a.help != argparse.SUPPRESS
                   for o in a.option_strings if o.startswith("--")}
        near: list[str] = []
        for arg in extra:
            name = arg.split("=", 1)[0]
            if len(name) > 2 and name.startswith("-") and not _is_number(name):
                found = difflib.get_close_matches(name.lstrip("-"), list(options), n=3, cutoff=0.6)
                near += [options[o] for o in found if options[o] not in near]
        return f" (did you mean {' or '.join(near)}?)" if near else ""


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="probe",
        description="Look inside robot models co-trained on human and robot data: extract latents, "
        "measure how well embodiments share one embedding space, retrieve human clips for robot states.",
        epilog="Run 'probe COMMAND --help' for a command's options and an example. Start with 'probe demo'.",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for module_name in COMMANDS:
        module = importlib.import_module(f"probe.cli.{module_name}")
        p = sub.add_parser(
            module.NAME,
            help=module.HELP,
            description=module.HELP.replace("%%", "%"),  # help= is %-formatted, a raw description is not
            epilog=f"example:\n  {module.EXAMPLE}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show full tracebacks on errors")
        module.add_arguments(p)
        p.set_defaults(_run=module.run, _cache_root=getattr(module, "cache_root", None))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``probe`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    use_numba_cache_of(args)
    try:
        return int(args._run(args) or 0)
    except ProbeError as exc:
        if args.debug:
            raise
        print(f"error: {cli_message(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:  # a path the checks could not foresee (removed, made read-only, a full disk meanwhile)
        if args.debug:
            raise
        print(f"error: {os_error_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; no half-written output was left in place (probe extract keeps the rows it staged: "
              "rerun it with --resume to continue)", file=sys.stderr)
        return 130


def use_numba_cache_of(args: argparse.Namespace) -> None:
    """numba's compiled code goes to ``numba/`` in the cache directory the command uses (the command's
    ``cache_root(args)``, its ``--cache`` / ``--cache-dir``, else the default), never beside the installed
    sources; a ``$NUMBA_CACHE_DIR`` of the user's is kept. Before any command imports numba."""
    from pathlib import Path

    from probe.cache.directory import default_cache_dir, use_numba_cache

    root_of = getattr(args, "_cache_root", None)
    root = root_of(args) if root_of else (getattr(args, "cache", None) or getattr(args, "cache_dir", None))
    use_numba_cache(Path(root) if root else default_cache_dir())


# the library's hint for Python callers beside a flag: "--overwrite (overwrite=True in Python)",
# "--b NAME (b= in Python)"
_PYTHON_HINT = re.compile(r" \(\w+=[^()\s]* in Python\)")


def cli_message(exc: ProbeError) -> str:
    """An error's message as the CLI shows it: the flag to pass, without the hint for Python callers
    (``(overwrite=True in Python)``) that the library's message adds beside it."""
    return _PYTHON_HINT.sub("", str(exc))


def os_error_line(exc: OSError) -> str:
    """One line for an operating-system error: what failed, on which path, and what to check."""
    import errno

    what = (exc.strerror or str(exc) or type(exc).__name__).splitlines()[0]
    paths = " -> ".join(f"'{p}'" for p in (exc.filename, exc.filename2) if p is not None)
    fix = ("free some disk space or write elsewhere" if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
           else "check the path and permissions")
    return f"{what}{': ' + paths if paths else ''}; {fix}"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
