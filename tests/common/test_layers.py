"""The library's layout is its architecture: concerns in layers, nothing imports upward.

``stages/lib/__init__.py`` lists the layers; a module may import from its own concern and from the
concerns before it. Imports inside functions count too (heavy modules are imported lazily).
"""

from __future__ import annotations

import ast
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
