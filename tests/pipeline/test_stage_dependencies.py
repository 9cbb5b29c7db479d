"""Every module a stage reads is one of its DVC dependencies, so editing it reruns the stage.

The walk follows imports from ``stages.lib`` transitively, including the ones inside functions
(the stages import heavy modules lazily). The only exceptions are plumbing modules that cannot
change a stage's results, and the docstring-only package ``__init__`` files.

A dependency may be a concern's folder (``stages/lib/training``) when the stage reads every module
in it; a stage that reads only some modules of a concern lists those files, so that editing the
others does not rerun it.
"""

from __future__ import annotations

import ast
from pathlib import Path

from ruamel.yaml import YAML

from tests.helpers import REPO_ROOT

# Error reporting, file writing, param parsing (the values themselves are DVC params), progress
# lines and phase timings: none of them changes what a stage writes.
PLUMBING = {"stages/lib/common/errors.py", "stages/lib/common/files.py", "stages/lib/common/params.py", "stages/lib/common/progress.py",
            "stages/lib/common/timers.py", "stages/lib/common/logs.py"}


def _is_package_init(module: str) -> bool:
    return module.endswith("/__init__.py")


def _imported_lib_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("stages.lib"):
            base = node.module.replace(".", "/")
            if (REPO_ROOT / base).is_dir():  # `from stages.lib.retrieval import vector_cache`
                found.update(f"{base}/{alias.name}.py" for alias in node.names if (REPO_ROOT / base / f"{alias.name}.py").is_file())
            else:
                found.add(base + ".py")
        elif isinstance(node, ast.Import):
            found.update(a.name.replace(".", "/") + ".py" for a in node.names if a.name.startswith("stages.lib."))
    return found


def _reads(module: str) -> set[str]:
    seen: set[str] = set()
    todo = [module]
    while todo:
        for imported in _imported_lib_modules(REPO_ROOT / todo.pop()):
            assert (REPO_ROOT / imported).is_file(), f"{imported} is imported but does not exist"
            if imported not in seen:
                seen.add(imported)
                todo.append(imported)
    return seen


def test_the_walk_sees_imports_inside_functions():
    reads = _reads("stages/train.py")
    assert "stages/lib/training/hard_negatives.py" in reads  # imported only inside a function
    assert "stages/lib/retrieval/rankers.py" in reads  # and through it


def _expand(dep: str) -> set[str]:
    """A folder dependency stands for every module in it."""
    path = REPO_ROOT / dep
    if path.is_dir():
        return {str(p.relative_to(REPO_ROOT)) for p in path.glob("*.py") if p.name != "__init__.py"}
    return {dep}


def test_every_stage_depends_on_all_the_code_it_reads():
    stages = YAML(typ="safe").load((REPO_ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    problems = []
    for name, stage in stages.items():
        module = stage["cmd"].split()[-1].replace(".", "/") + ".py"
        deps = {dep if isinstance(dep, str) else next(iter(dep)) for dep in stage.get("deps", [])}
        assert module in deps, f"stage {name}: its own module {module} is not a dependency"
        reads = {read for read in _reads(module) if not _is_package_init(read)}
        folders = [dep for dep in deps if dep.startswith("stages/") and (REPO_ROOT / dep).is_dir()]
        for folder in folders:
            if folder == "stages/lib/common":
                problems.append(f"stage {name} lists {folder}: list the plumbing it reads file by file")
            partly = sorted(_expand(folder) - reads)
            if partly:
                problems.append(f"stage {name} lists the folder {folder} but does not read {partly}: list files")
        listed_code = set().union(*(_expand(dep) for dep in deps if dep.startswith("stages/")))
        missing = sorted(reads - listed_code - PLUMBING)
        if missing:
            problems.append(f"stage {name} reads {missing} without listing them in dvc.yaml deps")
        unused = sorted(listed_code - reads - {module})
        if unused:
            problems.append(f"stage {name} lists {unused}, which it does not read")
    assert not problems, "\n".join(problems)
