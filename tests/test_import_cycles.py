"""No import cycles between mmrobot modules: the import arrows point one way (STYLE.md).

The graph is read from the source with :mod:`ast`, without importing anything. Edges:

- ``import mmrobot.a.b`` and ``from mmrobot.a import b`` (``b`` a module) go to ``mmrobot.a.b``;
  ``from mmrobot.a import name`` goes to ``mmrobot.a``, whose node is ``mmrobot/a/__init__.py``.
- Relative imports are resolved against the importing module's package.
- Imports under ``if TYPE_CHECKING:`` do not count: they never run, and they are the usual
  way to name a type from a module above without depending on it.
- Only module-level imports count (including those in ``if``/``try`` blocks and class bodies,
  which run on import), not imports inside functions. A function-level import that closes a
  loop is still a runtime dependency both ways, but one remains on purpose:
  ``mmrobot.drivers.rig.parse_rig`` imports ``mmrobot.drivers`` so that the built-in kinds are
  registered, and ``mmrobot.drivers`` re-exports the rig API. ``import_edges(..., nested=True)``
  shows such cycles; run it when moving code between modules (it also shows the
  ``drivers.base`` -> ``drivers._serial`` function-level import that used to close a cycle).

Dynamic imports (``importlib.import_module`` with a string) are not seen.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "mmrobot"


@dataclass(frozen=True)
class ImportEdge:
    """``importer`` imports ``imported`` at ``line`` of its source file."""

    importer: str
    imported: str
    line: int


def module_names(package_dir: Path) -> dict[str, Path]:
    """Dotted name of every module under ``package_dir`` (a package is named by its ``__init__``)."""
    root = package_dir.parent
    names = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _is_type_checking_block(node: ast.AST) -> bool:
    """``if TYPE_CHECKING:`` or ``if typing.TYPE_CHECKING:``."""
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(tree: ast.AST, *, nested: bool) -> Iterable[ast.Import | ast.ImportFrom]:
    """Import statements outside ``if TYPE_CHECKING:``; inside functions too when ``nested``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If) and _is_type_checking_block(node):
            stack.extend(node.orelse)  # the ``else:`` branch does run
        elif nested or not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            stack.extend(ast.iter_child_nodes(node))


def _known_module(name: str, modules: Mapping[str, Path]) -> str | None:
    """``name`` or its closest enclosing module that exists under the package, if any."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def import_edges(modules: Mapping[str, Path], *, nested: bool = False) -> list[ImportEdge]:
    """The imports between ``modules`` (module docstring); ``nested``: imports in functions too."""
    edges = []
    for importer, path in modules.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in _runtime_imports(tree, nested=nested):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    package = importer if is_package else importer.rpartition(".")[0]
                    for _ in range(node.level - 1):
                        package = package.rpartition(".")[0]
                    base = f"{package}.{node.module}" if node.module else package
                else:
                    base = node.module or ""
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                    for alias in node.names
                ]
            for target in targets:
                imported = _known_module(target, modules)
                if imported is not None and imported != importer:
                    edges.append(ImportEdge(importer, imported, node.lineno))
    return edges


def strongly_connected_components(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative; each component sorted, components in discovery order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    successors = {node: sorted(set(targets)) for node, targets in graph.items()}
    for targets in list(successors.values()):
        for target in targets:
            successors.setdefault(target, [])

    for root in sorted(successors):
        if root in index:
            continue
        work = [(root, iter(successors[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(successors[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def find_cycle(graph: Mapping[str, Iterable[str]], component: Iterable[str]) -> list[str]:
    """One cycle through the component's first module, as ``[a, b, ..., a]`` (shortest)."""
    members = set(component)
    start = min(members)
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        next_frontier = []
        for node in frontier:
            for child in sorted(set(graph.get(node, ()))):
                if child not in members:
                    continue
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [*reversed(path), start]
                if child not in came_from:
                    came_from[child] = node
                    next_frontier.append(child)
        frontier = next_frontier
    raise ValueError(f"{sorted(members)} is not a cycle")


def cycle_report(edges: Iterable[ImportEdge]) -> list[str]:
    """One line per import cycle: the modules in order, each arrow with its import's line."""
    edges = list(edges)
    graph: dict[str, set[str]] = {}
    where: dict[tuple[str, str], int] = {}
    for edge in edges:
        graph.setdefault(edge.importer, set()).add(edge.imported)
        where.setdefault((edge.importer, edge.imported), edge.line)
    lines = []
    for component in strongly_connected_components(graph):
        if len(component) < 2:
            continue
        cycle = find_cycle(graph, component)
        arrows = " -> ".join(f"{a} (line {where[a, b]})" for a, b in zip(cycle, cycle[1:]))
        lines.append(f"{arrows} -> {cycle[-1]}  [component: {', '.join(component)}]")
    return lines


# --------------------------------------------------------------------------- the tests


def test_mmrobot_has_no_import_cycles():
    modules = module_names(PACKAGE_DIR)
    assert "mmrobot.drivers.base" in modules  # the walk found the package
    cycles = cycle_report(import_edges(modules))
    assert not cycles, "import cycles between mmrobot modules:\n" + "\n".join(cycles)


def test_cycle_finder_reports_a_cycle_in_order():
    graph = {"a": ["b"], "b": ["c"], "c": ["a", "d"], "d": [], "e": ["e"]}
    components = strongly_connected_components(graph)
    assert ["a", "b", "c"] in components
    assert ["d"] in components and ["e"] in components
    assert find_cycle(graph, ["a", "b", "c"]) == ["a", "b", "c", "a"]
    edges = [ImportEdge(a, b, line) for line, (a, b) in enumerate([("x", "y"), ("y", "x")], 1)]
    assert cycle_report(edges) == ["x (line 1) -> y (line 2) -> x  [component: x, y]"]
    assert cycle_report([ImportEdge("x", "y", 1)]) == []


def test_edges_from_a_synthetic_package(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "from pkg.sub import mod\n",
        "sub/__init__.py": "",
        "sub/mod.py": (
            "from typing import TYPE_CHECKING\n"
            "from .helper import VALUE\n"
            "if TYPE_CHECKING:\n"
            "    from pkg import other\n"
            "def f():\n"
            "    from .. import leaf\n"
            "    from . import helper\n"
        ),
        "sub/helper.py": "from pkg.leaf import NAME\nVALUE = NAME\n",
        "leaf.py": "import pkg.sub\nNAME = 1\ndef g():\n    import pkg\n",
        "other.py": "from pkg.sub.mod import f\n",
    }
    for name, text in files.items():
        (pkg / name).write_text(text)
    modules = module_names(pkg)

    top_level = import_edges(modules)
    assert {(e.importer, e.imported) for e in top_level} == {
        ("pkg", "pkg.sub.mod"),
        ("pkg.sub.mod", "pkg.sub.helper"),
        ("pkg.sub.helper", "pkg.leaf"),
        ("pkg.leaf", "pkg.sub"),
        ("pkg.other", "pkg.sub.mod"),
    }
    assert cycle_report(top_level) == []  # other -> mod -> other only under TYPE_CHECKING

    nested = import_edges(modules, nested=True)
    assert {(e.importer, e.imported) for e in nested} - {
        (e.importer, e.imported) for e in top_level
    } == {
        ("pkg.sub.mod", "pkg.leaf"),
        ("pkg.leaf", "pkg"),
    }
    assert cycle_report(nested) == [
        "pkg (line 1) -> pkg.sub.mod (line 6) -> pkg.leaf (line 4) -> pkg  "
        "[component: pkg, pkg.leaf, pkg.sub.helper, pkg.sub.mod]"
    ]
