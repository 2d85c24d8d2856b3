"""The import graph shows the architecture: no cycles in `app/`, pure networks, a UI that starts without torch,
an engine without Qt, torch- and Qt-free image metadata.

The graph is read from the source (every `import` statement counts: module level, inside functions, and under
`TYPE_CHECKING`), so a cycle or a forbidden import hidden in a function body is caught without running it; the
torch-free start of the UI is checked by importing every UI module in a fresh interpreter.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from functools import cache
from pathlib import Path

APP = Path(__file__).resolve().parents[1] / "app"


@cache
def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module under app/ (packages by their __init__)."""
    found = {}
    for file in APP.rglob("*.py"):
        name = ".".join(file.relative_to(APP.parent).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = file
    return found


@cache
def imported_names(module: str) -> frozenset[str]:
    """Every dotted name `module` imports (`from a.b import c` gives `a.b` and `a.b.c`), relative ones resolved."""
    file = modules()[module]
    package = module if file.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"), str(file))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return frozenset(names)


def _owner(name: str) -> str | None:
    """The app module a dotted name lives in (`app.x.y.Thing` -> `app.x.y`), or None outside app/."""
    while name:
        if name in modules():
            return name
        name = name.rpartition(".")[0]
    return None


@cache
def graph() -> dict[str, frozenset[str]]:
    """app module -> the app modules it imports (not counting its own parent packages)."""
    edges = {}
    for module in modules():
        targets = {_owner(n) for n in imported_names(module)}
        edges[module] = frozenset(
            t for t in targets if t is not None and t != module and not module.startswith(t + ".")
        )
    return edges


def find_cycles() -> list[list[str]]:
    """One cycle per strongly connected group of modules (Tarjan), each as a path a -> ... -> a."""
    g, index, low, stack, on_stack, groups = graph(), {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(g[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(g)))
    for v in sorted(g):
        if v not in index:
            visit(v)
    return [_cycle_through(sorted(group)[0], group) for group in groups]


def _cycle_through(start: str, group: set[str]) -> list[str]:
    """A shortest path start -> ... -> start inside `group` (breadth first), for a readable failure."""
    g, came_from, frontier = graph(), {start: None}, [start]
    while frontier:
        following = []
        for v in frontier:
            for w in sorted(g[v] & group):
                if w == start:
                    path = [v]
                    while came_from[path[-1]] is not None:
                        path.append(came_from[path[-1]])
                    return [*reversed(path), start]
                if w not in came_from:
                    came_from[w] = v
                    following.append(w)
        frontier = following
    return [start]


def reachable(roots: list[str]) -> set[str]:
    """The app modules `roots` import, directly or through other app modules (roots included)."""
    seen, todo = set(), list(roots)
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(graph()[module])
    return seen


def under(package: str) -> list[str]:
    return sorted(m for m in modules() if m == package or m.startswith(package + "."))


def importers_of(top_levels: set[str], package: str, *, through_app: bool) -> dict[str, list[str]]:
    """Modules (under `package`, or reached from it when `through_app`) that import one of `top_levels`."""
    scope = sorted(reachable(under(package))) if through_app else under(package)
    found = {}
    for module in scope:
        hits = sorted(n for n in imported_names(module) if n.split(".")[0] in top_levels)
        if hits:
            found[module] = hits
    return found


def imported_after(code: str, probes: tuple[str, ...]) -> set[str]:
    probe = code + f"\nimport sys\nprint(' '.join(m for m in {probes!r} if m in sys.modules))\n"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def import_all_code(package: str) -> str:
    return (
        f"import importlib, pkgutil, {package} as p\n"
        f"for m in pkgutil.walk_packages(p.__path__, '{package}.'):\n"
        "    importlib.import_module(m.name)\n"
    )


# ------------------------------------------------------------------------------------------------ the scanner


def test_the_scanner_sees_every_kind_of_import(tmp_path, monkeypatch):
    """Function-local, TYPE_CHECKING and relative imports all make edges (else the tests below prove little)."""
    pkg = tmp_path / "app" / "p"
    pkg.mkdir(parents=True)
    (tmp_path / "app" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from app.p.b import x\n")
    (pkg / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .c import y\n")
    (pkg / "c.py").write_text("from . import a\nimport safetensors.torch\n")
    monkeypatch.setattr(sys.modules[__name__], "APP", tmp_path / "app")
    for cached in (modules, imported_names, graph):
        cached.cache_clear()
    try:
        assert graph()["app.p.a"] == {"app.p.b"} and graph()["app.p.b"] == {"app.p.c"}
        assert graph()["app.p.c"] == {"app.p.a"}
        assert find_cycles() == [["app.p.a", "app.p.b", "app.p.c", "app.p.a"]]
        assert importers_of({"safetensors"}, "app.p.a", through_app=True) == {
            "app.p.c": ["safetensors.torch"]
        }
    finally:
        for cached in (modules, imported_names, graph):
            cached.cache_clear()


# ------------------------------------------------------------------------------------------------ the rules


def test_no_import_cycles_in_app():
    # The networks' purity (no file reading) is checked in tests/inference/test_engine_imports.py.
    cycles = find_cycles()
    assert not cycles, "import cycles (cut them: a module should not need what needs it):\n" + "\n".join(
        " -> ".join(c) for c in cycles
    )


def test_the_engine_never_imports_qt():
    assert (
        importers_of({"PySide6", "PyQt5", "PyQt6", "shiboken6", "qasync"}, "app.inference", through_app=True)
        == {}
    )


def test_metadata_imports_neither_torch_nor_qt():
    assert importers_of({"torch", "PySide6", "shiboken6"}, "app.metadata", through_app=True) == {}
    assert imported_after(import_all_code("app.metadata"), ("torch", "PySide6")) == set()


def test_no_ui_module_imports_torch_when_imported():
    """Every app.ui module imported in a fresh interpreter: torch stays out (the window paints before it loads)."""
    assert imported_after(import_all_code("app.ui"), ("torch", "PySide6")) == {"PySide6"}
