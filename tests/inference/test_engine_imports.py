"""The engine's import graph, read from the source (every import statement, function-local and TYPE_CHECKING
ones included): no cycles inside `app/inference`, and the networks are pure modules that read no files."""

from __future__ import annotations

import ast
from pathlib import Path

import app.inference

ENGINE = Path(app.inference.__file__).parent
ROOT = ENGINE.parent.parent  # the directory holding `app/`


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_names(source: str, package: str) -> set[str]:
    """Every dotted name an import statement anywhere in `source` names (`from a import b` gives `a` and
    `a.b`); relative imports resolve against `package`."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _engine_graph() -> dict[str, set[str]]:
    """{engine module: engine modules it imports}."""
    modules = {_module_name(p): p for p in ENGINE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for imported in _imported_names(path.read_text(encoding="utf-8"), package):
            while imported and imported not in modules:  # `pkg.mod.Class` -> `pkg.mod`
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                targets.add(imported)
        graph[name] = targets
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                component.append(w)
            if component:
                found.append(sorted([v, *component]))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_scan_sees_a_cycle():
    # the check itself: a two-module loop and a self-contained chain
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_the_scan_reads_function_local_type_checking_and_relative_imports():
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from app.x import T\n"
        "def f():\n    import app.y\n    from .z import w\n"
    )
    names = _imported_names(source, "app.pkg")
    assert {"app.x.T", "app.y", "app.pkg.z.w"} <= names
    graph = _engine_graph()
    assert "app.inference.networks.mmdit" in graph["app.inference.sampling.guidance"]


def test_no_import_cycles_in_the_engine():
    assert _cycles(_engine_graph()) == []
