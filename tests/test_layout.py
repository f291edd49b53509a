"""Package layout: the import graph (every ``import``, also those inside functions) has no
circle among the modules this test names, and the report package imports one way."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "tinydeploy"


def _modules() -> dict[str, Path]:
    mods = {}
    for p in ROOT.rglob("*.py"):
        parts = p.relative_to(ROOT.parent).with_suffix("").parts
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return mods


def _is_type_checking(test: ast.expr) -> bool:
    """``TYPE_CHECKING`` or ``typing.TYPE_CHECKING``: the block never runs."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of ``tree`` (function bodies included) except the body of an
    ``if TYPE_CHECKING:`` block, whose imports are for the type checker only."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            todo += node.orelse
            continue
        todo += ast.iter_child_nodes(node)


def import_graph() -> dict[str, set[str]]:
    """Module -> the tinydeploy modules it imports anywhere in its source (also inside
    functions; not under ``if TYPE_CHECKING:``)."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    target = sub if sub in mods else base
                    if target in mods and target != name:
                        graph[name].add(target)
            elif isinstance(node, ast.Import):
                graph[name].update(a.name for a in node.names if a.name in mods)
    return graph


def reaches(graph: dict[str, set[str]], start: str, goal: str) -> bool:
    """Is there an import path from ``start`` to ``goal``?"""
    seen, todo = set(), [start]
    while todo:
        m = todo.pop()
        if m == goal:
            return True
        if m not in seen:
            seen.add(m)
            todo += graph.get(m, ())
    return False


def test_graph_sees_imports_inside_functions() -> None:
    graph = import_graph()  # validation imports report.page inside write_html()
    assert "tinydeploy.report.page" in graph["tinydeploy.validation"]
    assert reaches(graph, "tinydeploy.validation", "tinydeploy.boards")


@pytest.mark.parametrize("a,b", [
    ("tinydeploy.device.building", "tinydeploy.device.flashing"),
    ("tinydeploy.training", "tinydeploy.quantization"),
])
def test_no_import_circle(a: str, b: str) -> None:
    graph = import_graph()
    assert not (reaches(graph, a, b) and reaches(graph, b, a)), f"{a} <-> {b}"


def test_report_package_imports_one_way() -> None:
    graph = import_graph()
    report = [m for m in graph if m.startswith("tinydeploy.report")]
    assert {"tinydeploy.report.facts", "tinydeploy.report.page",
            "tinydeploy.report.plots", "tinydeploy.report.sections"} <= set(report)
    assert not (ROOT / "report.py").exists() and not list(ROOT.glob("report_*.py"))
    for m in report:
        assert not reaches(graph, m, "tinydeploy.validation"), m
        assert not reaches(graph, m, "tinydeploy.pipeline"), m
    for a in report:
        for b in report:
            if a < b:
                assert not (reaches(graph, a, b) and reaches(graph, b, a)), f"{a} <-> {b}"
