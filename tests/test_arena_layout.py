"""The arena package's layout: one-way imports in the documented layer order, no circles.

Every import is counted, including those inside functions and ``TYPE_CHECKING`` blocks: a
lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import tinydeploy

PKG = Path(tinydeploy.__file__).parent / "arena"
# library facts -> model -> kernel sizes -> allocator replay -> prediction/measurement -> choice
LAYERS = {"library": 1, "graph": 2, "cmsis_nn": 3, "kernels": 3, "replay": 4, "host": 5,
          "predict": 5, "measure": 5, "margin": 6, "search": 6, "check": 6, "plan": 6}


def _imports(path: Path) -> set[str]:
    """Sibling modules of the arena package that ``path`` imports (anywhere in the file)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                if node.module:
                    out.add(node.module.split(".")[0])
                else:
                    out.update(a.name for a in node.names)
            elif node.level == 0 and (node.module or "").startswith("tinydeploy.arena."):
                out.add(node.module.split(".")[2])
            elif node.level == 2 and (node.module or "").startswith("arena."):
                out.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            out.update(a.name.split(".")[2] for a in node.names
                       if a.name.startswith("tinydeploy.arena."))
    return out


def _graph() -> dict[str, set[str]]:
    return {p.stem: _imports(p) for p in PKG.glob("*.py") if p.stem != "__init__"}


def test_every_module_has_a_layer_and_imports_only_lower_layers() -> None:
    graph = _graph()
    assert set(graph) == set(LAYERS), "a module was added or removed: place it in LAYERS"
    for mod, deps in graph.items():
        for dep in deps:
            assert dep in LAYERS, f"{mod} imports unknown arena module {dep}"
            same_ok = LAYERS[dep] < LAYERS[mod] or (
                LAYERS[dep] == LAYERS[mod] and dep in _order_before(mod))
            assert same_ok, f"{mod} (layer {LAYERS[mod]}) imports {dep} (layer {LAYERS[dep]})"


def _order_before(mod: str) -> set[str]:
    """Same-layer modules ``mod`` may import (listed earlier in its layer)."""
    names = [m for m in LAYERS if LAYERS[m] == LAYERS[mod]]
    return set(names[:names.index(mod)])


def test_the_import_graph_is_acyclic() -> None:
    graph = _graph()
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        if state.get(m) == 1:
            raise AssertionError("import circle: " + " -> ".join([*path, m]))
        if state.get(m) == 2:
            return
        state[m] = 1
        for d in sorted(graph.get(m, ())):
            visit(d, [*path, m])
        state[m] = 2

    for m in graph:
        visit(m, [])


def test_the_package_init_imports_nothing_eagerly_and_is_the_api_function() -> None:
    init = ast.parse((PKG / "__init__.py").read_text(encoding="utf-8"))
    top = [n for n in init.body if isinstance(n, ast.ImportFrom) and n.level]
    assert top == []
    assert callable(tinydeploy.arena)
    import tinydeploy.arena.search as search  # noqa: F401 -- rebinding must keep it callable

    assert callable(tinydeploy.arena)


def test_the_checker_finds_a_circle(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("from .b import x\n")
    (tmp_path / "b.py").write_text("def f():\n    from .a import y\n")
    assert _imports(tmp_path / "a.py") == {"b"} and _imports(tmp_path / "b.py") == {"a"}
