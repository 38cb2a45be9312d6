"""The house's one-way data flow, checked on the source and in a fresh interpreter."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN_IN_METRICS = {"torch", "probe", "dashboard"}
PACKAGES = ("probe", "metrics", "dashboard")

# The house plan (README, "Layout"): each unit sits on a floor and imports only its own unit and lower floors.
# A unit is a subpackage of probe/, "ground" (the modules directly in probe/), metrics/ or dashboard/.
FLOORS = {
    "metrics": 0,
    "ground": 1,
    "cache": 2, "store": 2,
    "readers": 3,
    "model": 4, "measure": 4, "projection": 4,
    "extraction": 5, "retrieval": 5,
    "report": 6, "world": 6,
    "dashboard": 7, "demo": 7,
    "cli": 8,
}


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


# -- the floors -------------------------------------------------------------------------------------------------


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = path
    return mods


MODULES = _modules()


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _edges(module: str) -> list[tuple[str, str, int]]:
    """``(imported module, imported name or '', line)`` for every import of the three packages, at any depth
    (imports inside functions count: they run too)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, "", node.lineno) for a in node.names if a.name.split(".")[0] in PACKAGES]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            if base.split(".")[0] not in PACKAGES:
                continue
            for a in node.names:
                sub = f"{base}.{a.name}"
                out.append((sub, "", node.lineno) if sub in MODULES else (base, a.name, node.lineno))
    return [(_resolve(m), name, line) for m, name, line in out if _resolve(m) not in (None, module)]


def unit_of(module: str) -> str:
    parts = module.split(".")
    if parts[-1] == "__main__":  # ``python -m probe``: an entry point, as the CLI
        return "cli"
    if parts[0] != "probe":
        return parts[0]
    if len(parts) == 1 or (ROOT / "probe" / f"{parts[1]}.py").exists():
        return "ground"
    return parts[1]


def test_every_unit_has_a_floor():
    units = {unit_of(m) for m in MODULES}
    assert units <= set(FLOORS), f"units without a floor (add them to FLOORS and the README): {units - set(FLOORS)}"


def test_imports_go_down_the_floors():
    wrong = []
    for module in MODULES:
        here = unit_of(module)
        for target, _name, line in _edges(module):
            there = unit_of(target)
            if there != here and FLOORS[there] >= FLOORS[here]:
                wrong.append(f"{MODULES[module].relative_to(ROOT)}:{line} ({here}, floor {FLOORS[here]}) imports "
                             f"{target} ({there}, floor {FLOORS[there]})")
    assert not wrong, "imports that do not go down the floors:\n" + "\n".join(wrong)


def _circles() -> list[list[str]]:
    graph = {m: sorted({t for t, _, _ in _edges(m) if t != "probe"}) for m in MODULES}  # the lazy package face
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_circles():
    assert not _circles(), f"import circles: {_circles()}"


def test_no_private_name_crosses_a_module():
    crossing = [f"{MODULES[m].relative_to(ROOT)}:{line} imports {name} from {target}"
                for m in MODULES for target, name, line in _edges(m)
                if name.startswith("_") and not name.startswith("__")]
    assert not crossing, "\n".join(crossing)


def test_no_module_re_exports_names():
    """A name is importable from one place, the module that defines it: no module imports a name of the
    three packages without using it (``probe``'s lazy public face imports nothing; ``import x as _x`` marks an
    import for its side effect, e.g. registering metrics)."""
    found = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text())
        used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        used |= {n.value.id for n in ast.walk(tree) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)}
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] in PACKAGES:
                found += [f"{path.relative_to(ROOT)}: {a.asname or a.name}" for a in node.names
                          if (a.asname or a.name) not in used and not (a.asname or "").startswith("_")]
    assert not found, "re-exported names (import them from their own modules):\n" + "\n".join(found)


def test_modules_stay_small():
    large = {str(p.relative_to(ROOT)): n for p in MODULES.values()
             if (n := len(p.read_text().splitlines())) > 420}
    assert not large, f"modules over ~400 lines (split them by what they hold): {large}"
