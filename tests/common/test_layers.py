"""The library's layout is its architecture: concerns in layers, nothing imports upward.

``stages/lib/__init__.py`` lists the layers; a module may import from its own concern and from the
concerns before it. Imports inside functions count too (heavy modules are imported lazily).
"""

from __future__ import annotations

import ast
from itertools import pairwise
from pathlib import Path

from stages.lib import LAYERS
from tests.helpers import REPO_ROOT

LIB = REPO_ROOT / "stages" / "lib"


def _lib_imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("stages"):
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names if alias.name.startswith("stages"))
    return found


def test_every_module_lives_in_a_concern_of_the_layer_list():
    top_level = sorted(p.name for p in LIB.glob("*.py") if p.name != "__init__.py")
    assert not top_level, f"modules outside any concern: {top_level}"
    folders = sorted(p.name for p in LIB.iterdir() if p.is_dir() and (p / "__init__.py").is_file())
    assert sorted(LAYERS) == folders


def test_nothing_imports_upward():
    problems = []
    for concern in LAYERS:
        allowed = set(LAYERS[: LAYERS.index(concern) + 1])
        for path in sorted((LIB / concern).glob("*.py")):
            for line, module in _lib_imports(path):
                parts = module.split(".")
                if parts[:2] != ["stages", "lib"] or len(parts) < 4:
                    problems.append(f"{path.relative_to(REPO_ROOT)}:{line} imports {module}: import a module of a concern")
                elif parts[2] not in allowed:
                    problems.append(f"{path.relative_to(REPO_ROOT)}:{line} ({concern}) imports {module} ({parts[2]})")
    assert not problems, "\n".join(problems)


def test_each_concern_says_what_it_owns_and_may_import():
    for concern in LAYERS:
        tree = ast.parse((LIB / concern / "__init__.py").read_text(encoding="utf-8"))
        docstring = ast.get_docstring(tree) or ""
        assert "May import:" in docstring, f"stages/lib/{concern}/__init__.py: no 'May import:' line"
        # Code in a package __init__ runs on every import of the concern and hides in the layout.
        assert len(tree.body) == 1, f"stages/lib/{concern}/__init__.py holds code besides its docstring"
        earlier = LAYERS[: LAYERS.index(concern)]
        named = [layer for layer in LAYERS if f"``{layer}``" in docstring.split("May import:")[1]]
        assert set(named) <= set(earlier), f"{concern} claims it may import {named}, later than itself"


def test_each_concern_imports_only_what_its_may_import_line_names():
    # The line is a contract, not a comment: retrieval, serving and the UI never reach into training, for example,
    # though the layer order alone would let the later two.
    problems = []
    for concern in LAYERS:
        line = (ast.get_docstring(ast.parse((LIB / concern / "__init__.py").read_text(encoding="utf-8"))) or "").split(
            "May import:")[1]
        earlier = LAYERS[: LAYERS.index(concern)]
        allowed = {concern, *(earlier if "every other concern" in line else [c for c in earlier if f"``{c}``" in line])}
        for path in sorted((LIB / concern).glob("*.py")):
            for number, module in _lib_imports(path):
                parts = module.split(".")
                if len(parts) >= 4 and parts[2] not in allowed:
                    problems.append(f"{path.relative_to(REPO_ROOT)}:{number} imports {module}; its May import line: {line.strip()}")
    assert not problems, "\n".join(problems)


def test_the_walk_sees_imports_inside_functions(tmp_path):
    # The walk must see imports inside functions, where the heavy ones live.
    source = "def f():\n    from stages.lib.training.trainer import build_trainer\n"
    module = tmp_path / "probe.py"
    module.write_text(source, encoding="utf-8")
    assert _lib_imports(module) == [(2, "stages.lib.training.trainer")]


def import_graph(package: Path) -> dict[str, dict[str, int]]:
    """Every module under ``package`` (a folder) -> the modules under it that it imports, each with the line of the
    first such import. Imports inside functions count; ``from package import module`` names the module, not the
    package; relative imports are resolved."""
    root = package.parent
    modules = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_package else parts)
        modules[name] = (path, name if is_package else name.rpartition(".")[0])
    graph: dict[str, dict[str, int]] = {}
    for name, (path, home) in modules.items():
        edges = graph.setdefault(name, {})
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # from . import x / from ..lib import y
                    anchor = home.split(".")[: len(home.split(".")) - (node.level - 1)]
                    base = ".".join([*anchor, *([base] if base else [])])
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
            else:
                continue
            for target in targets:
                if target in modules and target != name:
                    edges.setdefault(target, node.lineno)
    return graph


def import_circles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One circle per strongly connected group of modules (Tarjan), as ``[a, b, ..., a]``, shortest from its first
    module in name order: a group of modules that import each other, directly or through others."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:  # recursion depth is bounded by the number of modules (a few hundred)
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    circles = []
    for group in sorted(groups):
        start, members = group[0], set(group)
        paths = {start: [start]}
        queue = [start]
        while queue:  # breadth first: the shortest way back to the start
            node = queue.pop(0)
            for target in sorted(graph[node]):
                if target == start:
                    circles.append([*paths[node], start])
                    queue = []
                    break
                if target in members and target not in paths:
                    paths[target] = [*paths[node], target]
                    queue.append(target)
    return circles


def _describe(circle: list[str], graph: dict[str, dict[str, int]]) -> str:
    return " -> ".join(f"{a} (line {graph[a][b]})" for a, b in pairwise(circle)) + f" -> {circle[-1]}"


def test_no_module_imports_itself_through_others():
    # A circle makes import order matter (a name missing while its module is half-initialised) and ties two modules
    # into one: split out what both need. Over every stage module and the whole library, function imports included.
    graph = import_graph(REPO_ROOT / "stages")
    circles = import_circles(graph)
    assert not circles, "import circles:\n" + "\n".join(_describe(circle, graph) for circle in circles)


def test_the_circle_check_finds_a_circle_of_three_through_a_function_import(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    for name, source in {
        "__init__.py": "",
        "a.py": "from pkg.sub import b\n",
        "sub/__init__.py": "",
        "sub/b.py": "import pkg.c\n",
        "sub/d.py": "from . import b\nfrom ..a import thing\n",  # relative: d -> b and d -> a
        "c.py": "def later():\n    from pkg.a import thing\n",
        "e.py": "from pkg import a\n",  # imports into the circle, but is not in it
    }.items():
        (package / name).write_text(source, encoding="utf-8")
    graph = import_graph(package)
    assert graph["pkg.sub.d"] == {"pkg.sub.b": 1, "pkg.a": 2}
    assert import_circles(graph) == [["pkg.a", "pkg.sub.b", "pkg.c", "pkg.a"]]
    assert _describe(import_circles(graph)[0], graph) == "pkg.a (line 1) -> pkg.sub.b (line 1) -> pkg.c (line 2) -> pkg.a"
    (package / "c.py").write_text("def later():\n    from pkg.e import thing\n", encoding="utf-8")  # e is no circle
    (package / "e.py").write_text("x = 1\n", encoding="utf-8")
    assert import_circles(import_graph(package)) == []
