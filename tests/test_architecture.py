"""The package's import rules, read from the source with ``ast`` (nothing is imported).

Every import counts, at module level and inside functions (a function-level import is a
runtime dependency that merely loads late); only ``if TYPE_CHECKING:`` blocks are skipped.
The rules: no import cycle between modules; ``merge/`` never imports ``run/``; the lower
rooms (``project/``, ``store/``, ``workspace/``, ``gsd/``) import none of ``run/``,
``merge/``, ``commands/`` or ``views/``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import gsd_parallel_plugin

PACKAGE = Path(gsd_parallel_plugin.__file__).parent
NAME = "gsd_parallel_plugin"


def module_name(path: Path) -> str:
    parts = [NAME, *path.relative_to(PACKAGE).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node except those under ``if TYPE_CHECKING:`` (its ``else:`` runs, so it counts)."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package modules ``name`` imports at run time, relative imports resolved."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()

    def add(target: str) -> None:
        # the longest prefix that is a module of ours: ``a.b.func`` -> ``a.b``
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)

    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(NAME):
                    add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            if not source.startswith(NAME):
                continue
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                add(sub if sub in modules else source)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def room(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 else None


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), as sorted lists."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    cycles: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_the_graph_sees_relative_module_and_function_level_imports() -> None:
    """The checks below mean something only if the graph is right: spot checks of known edges."""
    graph = import_graph()
    assert f"{NAME}.run.workers" in graph[f"{NAME}.run.worker_control"]  # ``from . import workers``
    supervisor = graph[f"{NAME}.run.supervisor"]
    assert f"{NAME}.processes" in supervisor  # ``from .. import processes``
    assert f"{NAME}.store" in supervisor  # a package's ``__init__``
    assert f"{NAME}.run.automerge" in supervisor  # imported inside a method
    assert f"{NAME}.run.budget" not in graph[f"{NAME}.run.core"]  # TYPE_CHECKING only


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle() -> None:
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles (break them or move the import under TYPE_CHECKING):\n" + (
        "\n".join(" <-> ".join(c) for c in cycles)
    )


@pytest.mark.parametrize(
    ("rooms", "forbidden"),
    [
        ({"merge"}, {"run"}),
        ({"project", "store", "workspace", "gsd"}, {"run", "merge", "commands", "views"}),
    ],
)
def test_lower_rooms_do_not_import_upper_ones(rooms: set[str], forbidden: set[str]) -> None:
    graph = import_graph()
    bad = sorted(
        f"{module} imports {target}"
        for module, targets in graph.items()
        if room(module) in rooms
        for target in targets
        if room(target) in forbidden
    )
    assert not bad, "\n".join(bad)
