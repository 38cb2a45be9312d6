"""The house's one-way data flow, checked on the source and in a fresh interpreter."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN_IN_METRICS = {"torch", "probe", "dashboard"}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_metrics_source_never_imports_torch_probe_or_dashboard():
    for path in (ROOT / "metrics").rglob("*.py"):
        assert not (_imports(path) & FORBIDDEN_IN_METRICS), f"{path} imports {_imports(path) & FORBIDDEN_IN_METRICS}"


def test_importing_metrics_loads_no_torch():
    code = ("import sys, importlib, pkgutil, metrics\n"
            "for m in pkgutil.walk_packages(metrics.__path__, 'metrics.'): importlib.import_module(m.name)\n"
            "bad = [m for m in ('torch', 'probe', 'dashboard') if m in sys.modules]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


DASHBOARD_LAUNCHER = ROOT / "probe" / "cli" / "serve.py"  # the one edge that starts the app


def test_nothing_imports_dashboard_but_its_launcher():
    for pkg in ("probe", "metrics"):
        for path in (ROOT / pkg).rglob("*.py"):
            if path != DASHBOARD_LAUNCHER:
                assert "dashboard" not in _imports(path), f"{path} imports dashboard"
    assert "dashboard" in _imports(DASHBOARD_LAUNCHER)


def test_cli_import_is_light():
    code = "import sys, probe.cli; probe.cli.build_parser(); assert 'torch' not in sys.modules, 'torch at CLI start'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


@pytest.mark.parametrize("argv", [["--help"]] + [[name, "--help"] for name in
                                                  ("demo", "world", "layers", "extract", "import", "info", "metrics",
                                                   "index", "retrieve", "coverage", "serve", "report", "export")])
def test_every_help_page_renders(argv: list[str], capsys) -> None:
    from probe.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 0
    assert "usage: probe" in capsys.readouterr().out


def test_python_dash_m_runs_the_cli() -> None:
    done = subprocess.run([sys.executable, "-m", "probe.cli", "--help"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "demo" in done.stdout
