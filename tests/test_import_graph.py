"""No import cycle between any two modules of the project's packages.

import-linter's `acyclic_siblings` contract (pyproject.toml, `make lint`) finds cycles
between the children of one package; this test covers what it cannot: a cycle through
modules of different root packages (for instance between two logic packages, or through
the one import the layers contract ignores, pipeline.cli -> evaluation.cli). Imports
inside functions count, as they do for import-linter.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]


def _root_packages() -> list[str]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["tool"]["importlinter"]["root_packages"]


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (or a module importing itself)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        # iterative Tarjan: (node, iterator over its successors)
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, succ = work[-1]
            for nxt in succ:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(edges[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        m = stack.pop()
                        on_stack.discard(m)
                        comp.append(m)
                        if m == node:
                            break
                    if len(comp) > 1 or node in edges[node]:
                        found.append(sorted(comp))
    return found


def _one_cycle(component: list[str], edges: dict[str, set[str]]) -> list[str]:
    """A shortest import cycle through the first module of a component, as a path a -> ... -> a."""
    members, start = set(component), component[0]
    parent: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt_frontier = []
        for node in frontier:
            for nxt in sorted(edges[node] & members):
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return [start, *reversed(path[:-1]), start] if node != start else [start, start]
                if nxt not in parent:
                    parent[nxt] = node
                    nxt_frontier.append(nxt)
        frontier = nxt_frontier
    return component


def test_no_import_cycle_between_modules():
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    graph = grimp.build_graph(*_root_packages(), cache_dir=None)
    edges = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    cycles = _cycles(edges)
    described = []
    for comp in cycles:
        path = _one_cycle(comp, edges)
        lines = [f"{a} -> {b} (l.{', '.join(str(d['line_number']) for d in graph.get_import_details(importer=a, imported=b))})"
                 for a, b in zip(path, path[1:])]
        described.append(f"cycle among {len(comp)} module(s): " + "; ".join(lines))
    assert not cycles, "import cycles:\n" + "\n".join(described)


def test_cycle_finder_finds_a_cycle():
    edges = {"a.x": {"b.y"}, "b.y": {"c.z"}, "c.z": {"a.x"}, "d": {"a.x"}, "e": {"e"}}
    assert sorted(_cycles(edges)) == [["a.x", "b.y", "c.z"], ["e"]]
    assert _one_cycle(["a.x", "b.y", "c.z"], edges) == ["a.x", "b.y", "c.z", "a.x"]
