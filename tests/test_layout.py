"""The package's import graph has no cycle.

Every ``import`` and ``from ... import`` in ``src/curlora`` counts, at module level or
inside a function, and inside ``if TYPE_CHECKING:`` too: a cycle that only type checkers
see still means two modules that cannot be understood (or moved) one without the other.
An edge goes to the deepest ``curlora`` module an import names (``from curlora.run import
atomic`` is an edge to ``curlora.run.atomic``). Importing a submodule also runs its
package's ``__init__``; that implicit edge is not counted (a package ``__init__`` that
imported a submodule importing the package back would show up as an explicit cycle).
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted((SRC / "curlora").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """module -> the curlora modules it imports (see the module docstring)."""
    known = modules()

    def deepest(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in known}
    for module, path in known.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from .x import y
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            else:
                continue
            for name in names:
                target = deepest(name) if name.startswith("curlora") else None
                if target and target != module:
                    graph[module].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
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
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_planted_cycle() -> None:
    # a -> b -> c -> a is one cycle; d -> a hangs off it; e imports itself only by name.
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_function_local_and_type_checking_imports() -> None:
    graph = import_graph()
    # loop.py imports the evaluation cache at module level.
    assert "curlora.run.evaluation_cache" in graph["curlora.loop"]
    # grid/guard.py imports the lock helper inside its functions only.
    assert "curlora.run.file_lock" in graph["curlora.grid.guard"]
    # data/sources/offline.py imports TaskSpec under TYPE_CHECKING only.
    assert "curlora.data.tasks" in graph["curlora.data.sources.offline"]


def test_no_import_cycle() -> None:
    found = cycles(import_graph())
    assert not found, (
        f"import cycles in src/curlora: {found}; move what both modules need into a lower "
        "module, or pass the object in instead of importing it"
    )
