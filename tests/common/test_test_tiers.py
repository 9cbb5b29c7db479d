"""The quick tier stays quick: every test that runs ``dvc repro``/``dvc exp``, a stage in a subprocess, trains a model,
or starts a browser or a server carries the ``slow`` marker, so ``pytest -m "not slow"`` (``make test-quick``) skips it.

A static check over tests/ (``ast``; nothing is run). A test is slow when its body, a function it calls (in its own
module or imported from another module of tests/), or a fixture it requests (its own module's or a conftest.py's on
its path, and the fixtures those request) shows one of these signs:

* a command list given to a call: ``["dvc", "repro" | "exp" | "queue", ...]``, or ``[..., "-m", "stages.<stage>"]``
  (a stage in a process);
* a call of one of ``SLOW_CALLS``: the helpers that run a stage, start a server (the OpenAI stand-in, the hub
  stand-in, uvicorn in a thread, sshd, moto's S3), drive Chromium, train, or spawn processes.

The signs are what this suite uses today; a new kind of server or runner needs its name added to ``SLOW_CALLS``.
"""

from __future__ import annotations

import ast
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]

# Call names (a function, class or method name) that make a test slow, with why.
SLOW_CALLS = {
    "stage_run": "runs a stage in a subprocess",
    "start_ui": "starts the UI server",
    "Background": "serves an app with uvicorn in a thread",
    "BackgroundHTTPServer": "starts an HTTP server in a thread",
    "StubOpenAI": "starts the OpenAI-compatible stand-in server",
    "HubStandIn": "starts the Hugging Face hub stand-in server",
    "LocalSSHServer": "starts sshd",
    "LocalS3Server": "starts moto's S3 server",
    "sync_playwright": "starts Chromium",
    "chromium": "starts Chromium",
    "build_trainer": "trains a model",
    "Popen": "starts a process (a server or a stage)",
    "spawn": "spawns processes",
    "start_processes": "spawns processes",
}
DVC_RUNS = {"repro": "runs `dvc repro`", "exp": "runs `dvc exp`", "queue": "runs `dvc queue`"}


@dataclass
class Function:
    name: str
    module: Path
    signs: list[str] = field(default_factory=list)  # direct signs in its own body
    calls: set[str] = field(default_factory=set)  # names it calls
    params: list[str] = field(default_factory=list)  # its arguments: fixtures, for a test or a fixture
    is_fixture: bool = False
    marked_slow: bool = False
    line: int = 0


@dataclass
class Module:
    path: Path
    functions: dict[str, Function]
    imports: dict[str, tuple[Path, str]]  # local name -> (module file in tests/, its name there)
    marked_slow: bool  # pytestmark holds pytest.mark.slow


def _is_slow_mark(node: ast.AST) -> bool:
    """``pytest.mark.slow`` (or ``mark.slow``), also inside a list or tuple."""
    if isinstance(node, (ast.List, ast.Tuple)):
        return any(_is_slow_mark(element) for element in node.elts)
    return isinstance(node, ast.Attribute) and node.attr == "slow" and (
        isinstance(node.value, ast.Attribute) and node.value.attr == "mark" or
        isinstance(node.value, ast.Name) and node.value.id == "mark")


def _is_fixture(decorator: ast.AST) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    return isinstance(target, ast.Attribute) and target.attr == "fixture" or \
        isinstance(target, ast.Name) and target.id == "fixture"


def _text(node: ast.AST) -> str | None:
    """A string constant, or the leading constant text of an f-string."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
        return str(node.values[0].value)
    return None


def _signs(body: ast.AST) -> tuple[list[str], set[str]]:
    signs, calls = [], set()
    for node in ast.walk(body):
        if not isinstance(node, ast.Call):
            continue
        name = node.func.id if isinstance(node.func, ast.Name) else \
            node.func.attr if isinstance(node.func, ast.Attribute) else None
        if name:
            calls.add(name)
            if name in SLOW_CALLS:
                signs.append(SLOW_CALLS[name])
        # A command given to a call (run, subprocess.run, Popen): a list written out there, not one compared with.
        for argument in [*node.args, *(keyword.value for keyword in node.keywords)]:
            if not isinstance(argument, (ast.List, ast.Tuple)):
                continue
            texts = [_text(element) for element in argument.elts]
            if len(texts) >= 2 and texts[0] == "dvc" and texts[1] in DVC_RUNS:
                signs.append(DVC_RUNS[texts[1]])
            for first, second in zip(texts, texts[1:], strict=False):
                if first == "-m" and second and second.startswith("stages."):
                    signs.append(f"runs {second} in a subprocess")
    return signs, calls


def _module_file(dotted: str, root: Path) -> Path | None:
    """tests.helpers -> <root>/helpers.py (only modules of tests/ are followed)."""
    if not dotted.startswith("tests."):
        return None
    path = root.parent / (dotted.replace(".", "/") + ".py")
    return path if path.is_file() else None


def parse_module(path: Path, root: Path) -> Module:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    functions, imports, marked = {}, {}, False
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            signs, calls = _signs(node)
            functions[node.name] = Function(
                node.name, path, signs, calls, [a.arg for a in node.args.args + node.args.kwonlyargs],
                any(_is_fixture(d) for d in node.decorator_list), any(_is_slow_mark(d) for d in node.decorator_list),
                node.lineno)
        elif isinstance(node, ast.ClassDef):  # a helper class (a server, a page): its methods' signs are its own
            signs, calls = _signs(node)
            functions[node.name] = Function(node.name, path, signs, calls, line=node.lineno)
        elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets):
            marked = marked or _is_slow_mark(node.value)
        elif isinstance(node, ast.ImportFrom) and node.module and (source := _module_file(node.module, root)):
            for alias in node.names:
                imports[alias.asname or alias.name] = (source, alias.name)
    return Module(path, functions, imports, marked)


class Suite:
    """Every module of tests/, with each function's reasons to be slow, found through calls and fixtures."""

    def __init__(self, root: Path = TESTS) -> None:
        self.root = root
        self.modules = {path: parse_module(path, root) for path in sorted(root.rglob("*.py"))}
        self._reasons: dict[tuple[Path, str], list[str]] = {}

    def _conftests(self, module: Path) -> list[Module]:
        """conftest.py files that apply to ``module``, nearest first."""
        found = []
        for folder in [module.parent, *module.parent.parents]:
            if (conftest := self.modules.get(folder / "conftest.py")) is not None:
                found.append(conftest)
            if folder == self.root:
                break
        return found

    def _fixture(self, module: Module, name: str) -> Function | None:
        for candidate in [module, *self._conftests(module.path)]:
            function = candidate.functions.get(name)
            if function is not None and function.is_fixture:
                return function
        return None

    def reasons(self, function: Function, seen: frozenset = frozenset()) -> list[str]:
        """Why ``function`` is slow (empty when it is not): its own signs, then those of what it calls and requests."""
        key = (function.module, function.name)
        if key in self._reasons:
            return self._reasons[key]
        if key in seen:
            return []
        seen = seen | {key}
        module = self.modules[function.module]
        reasons = list(function.signs)
        for called in sorted(function.calls):
            if called in module.functions and called != function.name:
                target = module.functions[called]
            elif called in module.imports and (source := self.modules.get(module.imports[called][0])):
                target = source.functions.get(module.imports[called][1])
            else:
                continue
            if target is not None:
                reasons += [f"{called}() {why}" for why in self.reasons(target, seen)[:1]]
        for param in function.params:
            fixture = self._fixture(module, param)
            if fixture is not None and fixture is not function:
                reasons += [f"fixture {param} {why}" for why in self.reasons(fixture, seen)[:1]]
        self._reasons[key] = reasons
        return reasons

    def unmarked_slow_tests(self) -> list[str]:
        problems = []
        for path, module in self.modules.items():
            if not path.name.startswith("test_") or module.marked_slow:
                continue
            for function in module.functions.values():
                if function.name.startswith("test_") and not function.marked_slow and (why := self.reasons(function)):
                    problems.append(f"{path.relative_to(self.root.parent)}::{function.name} (line {function.line}): {why[0]}")
        return problems


def test_every_test_that_runs_the_pipeline_a_browser_or_a_server_is_marked_slow():
    problems = Suite().unmarked_slow_tests()
    assert not problems, ("These tests are slow but lack the `slow` marker, so `make test-quick` would run them: add "
                          "`@pytest.mark.slow` above each (or `pytestmark = pytest.mark.slow` at the top of a module "
                          "where every test is slow):\n  " + "\n  ".join(problems))


def test_the_slow_marker_is_registered_and_unknown_markers_are_errors():
    options = tomllib.loads((TESTS.parent / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["pytest"]["ini_options"]
    assert any(line.startswith("slow:") for line in options["markers"])
    assert "--strict-markers" in options["addopts"]  # a typo such as @pytest.mark.slwo fails instead of running quick


# -- the check itself can fail ---------------------------------------------------------------------------------------

CONFTEST = '''
import pytest
from tests.helpers import run

@pytest.fixture
def reproduced(tmp_path):
    run(["dvc", "repro"], tmp_path)
    return tmp_path
'''
HELPERS = '''
import subprocess, sys

def run(args, cwd):
    return subprocess.run(args, cwd=cwd)

def start(cwd):
    return subprocess.Popen([sys.executable, "-m", "http.server"], cwd=cwd)
'''
TEST_MODULE = '''
import sys
import pytest
from tests.helpers import run, start

def test_quick():
    assert run(["git", "status"], ".")
    assert ["dvc", "exp", "run"] != ["dvc", "repro"]  # lists compared, not run

def test_uses_the_pipeline(reproduced):
    assert reproduced

def test_runs_a_stage(tmp_path):
    run([sys.executable, "-m", "stages.corpus"], tmp_path)

def test_starts_a_server(tmp_path):
    _helper(tmp_path)

def _helper(path):
    return start(path)

def test_runs_an_experiment(tmp_path):
    run(["dvc", "exp", "run"], tmp_path)

@pytest.mark.slow
def test_marked(reproduced):
    assert reproduced
'''


def _suite(tmp_path: Path, test_module: str) -> Suite:
    """A tests/ folder in ``tmp_path`` as the suite lays them out: a conftest, helpers, one test module."""
    root = tmp_path / "tests"
    (root / "pipeline").mkdir(parents=True)
    (root / "conftest.py").write_text(CONFTEST, encoding="utf-8")
    (root / "helpers.py").write_text(HELPERS, encoding="utf-8")
    (root / "pipeline" / "test_example.py").write_text(test_module, encoding="utf-8")
    return Suite(root)  # `from tests.helpers import ...` resolves inside the example


def test_unmarked_slow_tests_are_found_through_fixtures_helpers_and_command_lists(tmp_path):
    found = _suite(tmp_path, TEST_MODULE).unmarked_slow_tests()
    named = {line.split("::")[1].split(" ")[0]: line for line in found}
    assert sorted(named) == ["test_runs_a_stage", "test_runs_an_experiment", "test_starts_a_server", "test_uses_the_pipeline"]
    assert "fixture reproduced runs `dvc repro`" in named["test_uses_the_pipeline"]
    assert "runs stages.corpus in a subprocess" in named["test_runs_a_stage"]
    assert "_helper() start() starts a process" in named["test_starts_a_server"]


@pytest.mark.parametrize("mark", ["pytestmark = pytest.mark.slow", "pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings('x')]"])
def test_a_module_marked_slow_is_left_alone(tmp_path, mark):
    module = TEST_MODULE.replace("import pytest\n", f"import pytest\n{mark}\n", 1)
    assert _suite(tmp_path, module).unmarked_slow_tests() == []
