"""The parts of transferkit import one way: no cycle between its subpackages and top-level modules.

Imports inside functions count too: a function-local import hides a cycle from Python, not from a
reader. The checker parses every module with `ast` (nothing is imported), so it also runs on a
synthetic package, which tests the checker itself.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "src" / "transferkit"
#: The public face: the package's own __init__.py, which may import every part.
FACE = "__init__"


def module_names(root: Path) -> dict[str, Path]:
    """Every module of the package at `root`, as a dotted name ("pkg.sub.mod") -> its file."""
    package = root.name
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def imported_modules(path: Path, module: str, modules: dict[str, Path]) -> set[str]:
    """The package's modules that `module` imports anywhere in its file (function bodies included)."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, module, is_package)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import submodule`
    return {name for name in found if name in modules}


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    anchor = module.split(".")
    anchor = anchor if is_package else anchor[:-1]
    anchor = anchor[: len(anchor) - (node.level - 1)]
    return ".".join([*anchor, *([node.module] if node.module else [])])


def part_of(module: str) -> str:
    """The part a module belongs to: its subpackage or top-level module under the package (FACE for the root)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else FACE


def part_graph(root: Path) -> dict[str, dict[str, set[str]]]:
    """{part: {imported part: {"importing.module -> imported.module", ...}}}, edges between different parts."""
    modules = module_names(root)
    graph: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for module, path in modules.items():
        for target in imported_modules(path, module, modules):
            source_part, target_part = part_of(module), part_of(target)
            if source_part != target_part and target != root.name:  # `import pkg` alone names no part
                graph[source_part][target_part].add(f"{module} -> {target}")
    return graph


def find_cycle(graph: dict[str, dict[str, set[str]]]) -> list[str] | None:
    """One cycle of parts (first part repeated at the end), or None when the parts import one way."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(part: str) -> list[str] | None:
        state[part] = 1
        path.append(part)
        for nxt in sorted(graph.get(part, {})):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[part] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def describe(cycle: list[str], graph) -> str:
    steps = [f"{a} -> {b} ({sorted(graph[a][b])[0]})" for a, b in zip(cycle, cycle[1:])]
    return "import cycle between parts: " + "; ".join(steps)


# ---- the package itself ----------------------------------------------------------------------------------------

def test_transferkit_parts_import_one_way():
    graph = part_graph(PACKAGE_ROOT)
    cycle = find_cycle(graph)
    assert cycle is None, describe(cycle, graph)


def test_nothing_below_the_public_face_imports_it():
    """Only the CLI (and __main__) sit above api; no part imports the package root or the API module."""
    graph = part_graph(PACKAGE_ROOT)
    above = {"cli", "__main__", FACE, "api"}
    offenders = sorted(edge for part, targets in graph.items() if part not in above
                       for target, edges in targets.items() if target in ("api", "cli") for edge in edges)
    assert not offenders, offenders


# ---- the checker, on a synthetic package ------------------------------------------------------------------------

def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pkg"
    for name, text in {"__init__.py": "", **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_checker_accepts_a_one_way_package(tmp_path):
    root = _package(tmp_path, {"low.py": "import os\n", "mid/__init__.py": "from pkg import low\n",
                               "mid/impl.py": "from ..low import x\n", "top.py": "import pkg.mid.impl\n"})
    graph = part_graph(root)
    assert set(graph["top"]) == {"mid"} and set(graph["mid"]) == {"low"}
    assert find_cycle(graph) is None


def test_checker_finds_a_cycle_hidden_in_a_function(tmp_path):
    root = _package(tmp_path, {
        "low.py": "def late():\n    from pkg.top import thing\n    return thing\n",
        "mid/__init__.py": "", "mid/impl.py": "from pkg.low import late\n",
        "top.py": "from pkg.mid import impl\nthing = 1\n"})
    cycle = find_cycle(part_graph(root))
    assert cycle is not None and cycle[0] == cycle[-1] and set(cycle) == {"low", "mid", "top"}


def test_checker_resolves_relative_and_submodule_imports(tmp_path):
    root = _package(tmp_path, {"a/__init__.py": "", "a/x.py": "from .. import b\n",
                               "b/__init__.py": "", "b/y.py": "from ..a import x\n"})
    assert find_cycle(part_graph(root)) == ["a", "b", "a"]


@pytest.mark.parametrize("injected", ["training/plan.py", "strategies/base.py", "data/sources.py"])
def test_checker_fails_on_a_cycle_injected_into_transferkit(tmp_path, injected):
    """A copy of the real package with one upward import added inside a function is refused."""
    import shutil

    root = tmp_path / "transferkit"
    shutil.copytree(PACKAGE_ROOT, root, ignore=shutil.ignore_patterns("__pycache__"))
    target = root / injected
    if not target.is_file():
        pytest.skip(f"{injected} does not exist in this layout")
    target.write_text(target.read_text() + "\n\ndef _upward():\n    from transferkit.api import fit\n    return fit\n")
    cycle = find_cycle(part_graph(root))
    assert cycle is not None and "api" in cycle
