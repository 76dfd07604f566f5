"""The package's import graph has no circle: every import counts, at module level or inside a
function, and so does a module the table of layers names for importlib (`run = "module:function"`)."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

from llmpyramid import layers
from llmpyramid.config import PROJECT_ROOT

SRC = PROJECT_ROOT / "src"
PACKAGE = "llmpyramid"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Every project module `path` imports, anywhere in it (a `from pkg import name` counts as pkg.name
    when that is a module, else as pkg)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                      for a in node.names}  # fmt: skip
    return {name for name in found if name in modules}


def import_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports (a package's __init__ importing its own submodules is
    how packages work, not a circle, so those edges are left out)."""
    files = {_module_name(p): p for p in (SRC / PACKAGE).rglob("*.py")}
    graph = {name: {d for d in _imports(path, set(files)) if d != name and not d.startswith(name + ".")}
             for name, path in files.items()}  # fmt: skip
    # importlib edges: the executor loads each layer's runner by the name in the table
    for layer in layers.LAYERS:
        if layer.run:
            graph["llmpyramid.suites"].add(layer.run.partition(":")[0])
    return graph


def _reaches(graph: dict[str, set[str]], start: str, goal: str) -> bool:
    seen, todo = set(), [start]
    while todo:
        node = todo.pop()
        if node == goal:
            return True
        if node not in seen:
            seen.add(node)
            todo.extend(graph.get(node, ()))
    return False


def test_the_import_graph_has_no_circle():
    try:
        graphlib.TopologicalSorter(import_graph()).prepare()
    except graphlib.CycleError as exc:
        raise AssertionError(f"import circle: {' -> '.join(exc.args[1])}") from None


def test_the_target_rule_sits_below_the_stack_and_the_executor():
    graph = import_graph()
    assert not _reaches(graph, "llmpyramid.target", "llmpyramid.stack.embedded")
    assert not _reaches(graph, "llmpyramid.runs", "llmpyramid.suites")
    for layer in layers.LAYERS:
        if layer.run:
            assert not _reaches(graph, layer.run.partition(":")[0], "llmpyramid.suites"), layer.name
