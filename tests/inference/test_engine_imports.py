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


FILE_READING_CALLS = {
    "open",
    "load",
    "load_file",
    "safe_open",
    "read_text",
    "read_bytes",
    "iterdir",
    "is_file",
}


def _calls(source: str) -> set[str]:
    """Names of the functions and methods `source` calls (`torch.load(...)` gives `load`)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            func = node.func
            names.add(func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", ""))
    return names


def test_the_file_reading_scan_sees_reads():
    assert _calls("import torch\nstate = torch.load(p)\n") >= {"load"}
    assert _calls("with open(p) as f:\n    f.read()\n") >= {"open"}
    assert "read_text" in _calls("from pathlib import Path\nPath(p).read_text()\n")


def test_networks_are_pure_modules_that_read_no_files():
    """networks/ builds modules from configs; the files are read by checkpoints/*_loading.py."""
    graph = _engine_graph()
    networks = {name: path for name, path in
                ((_module_name(p), p) for p in (ENGINE / "networks").rglob("*.py"))}  # fmt: skip
    assert "app.inference.networks.text_encoders" in networks and len(networks) >= 8
    for name, path in networks.items():
        source = path.read_text(encoding="utf-8")
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        imported = _imported_names(source, package)
        assert not any(n.split(".")[0] == "safetensors" for n in imported), name
        engine_deps = {m for m in graph[name] if m != "app.inference"}
        outside = {
            m for m in engine_deps if not m.startswith(("app.inference.networks", "app.inference.api"))
        }
        assert not outside, f"{name} imports {sorted(outside)}: networks may use only networks/ and api/"
        assert not _calls(source) & FILE_READING_CALLS, (
            f"{name} reads files: {_calls(source) & FILE_READING_CALLS}"
        )
