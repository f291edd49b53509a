"""Package layout: the import graph (every ``import``, also those inside functions; not
those under ``if TYPE_CHECKING:``) of the whole package has no circle, and the report
package imports one way."""

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


def _own(a: str, b: str) -> bool:
    """Is one of ``a``, ``b`` a package and the other one of its submodules? (A package's
    ``__init__`` importing its submodules, and a submodule importing its package, is how
    a package works, not a circle between layers.)"""
    return a.startswith(b + ".") or b.startswith(a + ".")


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle ``[m1, m2, ..., m1]`` in ``graph`` (package <-> own-submodule edges
    ignored), or None when there is none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in sorted(graph):
        if root in state:
            continue
        path, todo = [root], [iter(sorted(graph[root]))]
        state[root] = 1
        while todo:
            nxt = next((m for m in todo[-1] if not _own(path[-1], m)), None)
            if nxt is None:
                state[path.pop()] = 2
                todo.pop()
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                todo.append(iter(sorted(graph.get(nxt, ()))))
    return None


def test_find_cycle_sees_circles() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"p": {"p.x"}, "p.x": {"p"}}) is None  # a package and its submodule
    assert find_cycle({"p.x": {"q"}, "q": {"p"}, "p": {"p.x"}}) is None
    assert find_cycle({"p.x": {"q"}, "q": {"p.y"}, "p.y": {"p.x"}, "p": set()}) \
        == ["p.x", "q", "p.y", "p.x"]


def test_whole_package_has_no_import_circle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize("low,high", [
    ("tinydeploy.cruntime.codegen", "tinydeploy.arena.search"),  # caller passes the estimate
    ("tinydeploy.cruntime.graph", "tinydeploy.cruntime.emit"),
    ("tinydeploy.arena.measure", "tinydeploy.render"),
    ("tinydeploy.arena.measure", "tinydeploy.device.qemu"),
    ("tinydeploy.device.tflm_build", "tinydeploy.render"),
    ("tinydeploy.arena.host", "tinydeploy.hostref"),
])
def test_layers_import_downward(low: str, high: str) -> None:
    assert not reaches(import_graph(), low, high), f"{low} reaches {high}"


def test_type_checking_imports_are_not_edges() -> None:
    graph = import_graph()  # tflm_libraries imports boards only for the type checker
    assert "tinydeploy.boards" not in graph["tinydeploy.tflm_libraries"]
    assert "tinydeploy.tflm_libraries" in graph["tinydeploy.boards"]


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
