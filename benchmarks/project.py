"""What benchmarks share: the judge laws, a fresh copy of the pipeline to run stages in, and the pipeline's
own DVC experiments (the commands that queue them, and their params and metrics read back from DVC).

Grids of params (the learning curve, the training variants) are DVC experiments: ``dvc exp run --queue -S ...``
(Hydra's override syntax: ``key=a,b`` is a grid, ``key=[a,b]`` a list), run by ``dvc queue start`` and read back
with ``dvc exp show --json``, so every point is listed, shared (``dvc exp push``) and reproduced (``dvc exp
apply``) by DVC itself. The copies of the pipeline below serve the benchmarks that measure what DVC does not
(throughput, latency, resume cost, per-stage time and memory).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# What the stages read from the repository itself (the rest they make).
PIPELINE_FILES = ("dvc.yaml", "params.yaml", "stages", "data/golden")
# The two bundled laws with a golden set (questions written by people): every recipe choice is judged on both.
JUDGES = {
    "securities_law": {"sample.laws": ["中华人民共和国证券法"], "evaluate.golden_sets": ["data/golden/securities_law.jsonl"]},
    "labor_contract_law": {"sample.laws": ["中华人民共和国劳动合同法"],
                           "evaluate.golden_sets": ["data/golden/labor_contract_law.jsonl"]},
}
LAW_NAMES = {law: settings["sample.laws"][0] for law, settings in JUDGES.items()}
# The prepared outputs a benchmark copies into each of its runs (see ``prepared_project``).
PREPARED = ("data/sample", "data/corpus", "data/questions", "models/base")


def copy_pipeline(folder: Path) -> None:
    for name in PIPELINE_FILES:
        source, target = REPO_ROOT / name, folder / name
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def copy_prepared(prepared: Path, project: Path, outputs: tuple[str, ...]) -> None:
    """A fresh pipeline in ``project`` holding ``outputs`` of an already prepared one (data, models/base).

    ``models/base`` is linked, not copied: train only reads it, and a link saves 470 MB per run.
    """
    copy_pipeline(project)
    for output in outputs:
        source, target = prepared / output, project / output
        if output == "models/base":
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(source.resolve(), target_is_directory=True)
        else:
            shutil.copytree(source, target)


def set_params(project: Path, changes: dict[str, object]) -> None:
    """Set dotted keys of ``project``'s params.yaml (comments and order kept)."""
    from ruamel.yaml import YAML

    yaml = YAML()
    path = project / "params.yaml"
    params = yaml.load(path.read_text(encoding="utf-8"))
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        node = params
        for key in parents:
            node = node[key]
        node[leaf] = value
    with path.open("w", encoding="utf-8") as handle:
        yaml.dump(params, handle)


def dvc(args: list[str], project: Path) -> subprocess.CompletedProcess:
    """``dvc ARGS`` in ``project``, offline; stop with its output's tail if it fails."""
    result = subprocess.run(["dvc", *args], cwd=project, env=offline_env(), capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"`dvc {' '.join(args)}` failed ({result.returncode}):\n{(result.stdout + result.stderr)[-3000:]}")
    return result


def offline_env() -> dict[str, str]:
    """This environment, offline, with this Python's folder first on PATH (dvc, and the stages' python)."""
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "HF_HUB_OFFLINE": "1",
            "PYTHONPATH": "", "DVC_NO_ANALYTICS": "1"}


def make_dvc_project(folder: Path, settings: dict[str, object] | None = None) -> None:
    """A fresh git + DVC copy of the pipeline in ``folder`` (``settings``: dotted params), reproduced with
    ``dvc repro`` up to base_model: what a benchmark of the train stage starts from."""
    copy_pipeline(folder)
    if settings:
        set_params(folder, settings)
    for command in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        subprocess.run(command, cwd=folder, env=offline_env(), check=True, capture_output=True)
    for stage in ("check_params", "sample", "corpus", "questions", "base_model"):
        dvc(["repro", "--single-item", stage], folder)


def parse_setting(text: str) -> tuple[str, object]:
    """A benchmark's ``--set KEY=VALUE`` (the value in YAML syntax) as (dotted key, value)."""
    import yaml

    key, separator, value = text.partition("=")
    if not separator or not key:
        raise SystemExit(f"--set {text!r}: write KEY=VALUE, e.g. train.epochs=3")
    return key, yaml.safe_load(value)


def run_stage_module(module: str, project: Path) -> None:
    """Run ``python -m stages.<module>`` in ``project`` offline; stop with its output's tail if it fails."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-m", f"stages.{module}"], cwd=project, capture_output=True, text=True,
                            env=env)
    if result.returncode:
        raise SystemExit(f"stage {module} failed in {project}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")


def prepared_project(law: str, root: Path) -> Path:
    """A project with this law's documents, chunks, questions and the base model, made once and reused."""
    project = root / f"prepared-{law}"
    if all((project / path).exists() for path in PREPARED):
        return project
    shutil.rmtree(project, ignore_errors=True)
    copy_pipeline(project)
    set_params(project, JUDGES[law])
    for stage in ("sample", "corpus", "questions", "base_model"):
        run_stage_module(stage, project)
    return project


def write_result(path: Path | None, result: dict | list) -> None:
    """Write a benchmark's result as JSON to ``path`` (relative paths from the repository root); None: nothing."""
    if path is None:
        return
    target = path if path.is_absolute() else REPO_ROOT / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


# --- DVC experiments ---------------------------------------------------------------------------------------------


# Unquoted, Hydra reads these as booleans, null or floats.
HYDRA_WORDS = {"true", "false", "null", "nan", "inf"}


@dataclass(frozen=True)
class Sweep:
    """Several values of one param: ``dvc exp run --queue`` queues one experiment per value (per combination,
    with several sweeps)."""

    values: tuple


def override(key: str, value: object) -> str:
    """One ``-S`` argument in Hydra's override syntax, which ``dvc exp run`` parses. Strings other than plain
    identifiers are quoted (Hydra refuses unquoted CJK), lists are ``[a,b]``, mappings ``{k:v}``, a ``Sweep`` is ``a,b`` (a grid)."""
    if isinstance(value, Sweep):
        return f"{key}={','.join(_hydra_value(item) for item in value.values)}"
    return f"{key}={_hydra_value(value)}"


def _hydra_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)  # 2e-05 is a float to Hydra (and DVC writes it so; the params loader coerces it)
    if isinstance(value, str):
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value) and value.lower() not in HYDRA_WORDS:
            return value
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_hydra_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{key}:{_hydra_value(item)}" for key, item in value.items()) + "}"
    raise TypeError(f"no Hydra override for {value!r} ({type(value).__name__})")


def exp_run_command(settings: dict[str, object], name: str | None = None) -> list[str]:
    """``dvc exp run --queue`` with one ``-S`` per setting; with a ``Sweep`` among them, one experiment per
    combination (DVC names them ``<name>-1``, ``<name>-2``, ...)."""
    command = ["dvc", "exp", "run", "--queue"]
    if name:
        command += ["--name", name]
    for key, value in settings.items():
        command += ["-S", override(key, value)]
    return command


def shell_line(command: list[str]) -> str:
    return shlex.join(command)


def queue_commands(commands: list[list[str]], project: Path, dry_run: bool) -> None:
    """Print each command; run it in ``project`` unless ``dry_run`` (``dvc queue start`` then runs them)."""
    for command in commands:
        print(shell_line(command), flush=True)
        if not dry_run:
            subprocess.run(command, cwd=project, check=True)
    if not dry_run:
        print("queued; run them with `dvc queue start` (one worker per core is too many for training: -j 1), "
              "watch with `dvc queue status` and `dvc queue logs <name>`", flush=True)


@dataclass(frozen=True)
class Experiment:
    """One DVC experiment (or the baseline commit): its name, git revision, params.yaml and metrics files."""

    name: str
    rev: str
    params: dict = field(default_factory=dict)
    metrics: dict[str, dict] = field(default_factory=dict)  # metrics file -> its content

    def param(self, dotted: str, default: object = None) -> object:
        node: object = self.params
        for key in dotted.split("."):
            if not isinstance(node, dict) or key not in node:
                return default
            node = node[key]
        return node

    def metric(self, path: str) -> dict:
        """A metrics file's content; {} when the experiment has none (e.g. from before the file existed)."""
        return self.metrics.get(path, {})


def parse_exp_show(shown: list[dict]) -> list[Experiment]:
    """The experiments of ``dvc exp show --json`` that finished (queued, running and failed ones are left out),
    newest first as DVC lists them; baselines (commits) are not experiments and are left out too."""
    found = []
    for baseline in shown:
        for group in baseline.get("experiments") or []:
            executor = group.get("executor") or {}
            if executor.get("state") not in (None, "success"):
                continue
            for revision in group.get("revs") or []:
                data = revision.get("data") or {}
                if revision.get("error") or not data.get("metrics"):
                    continue
                found.append(Experiment(
                    name=revision.get("name") or revision["rev"][:7], rev=revision["rev"],
                    params=(data.get("params", {}).get("params.yaml") or {}).get("data") or {},
                    metrics={path: (content or {}).get("data") or {} for path, content in data["metrics"].items()},
                ))
    return found


def show_experiments(project: Path = REPO_ROOT, all_commits: bool = False) -> list[Experiment]:
    """Every finished experiment of ``project`` based on HEAD (or on any commit), read from ``dvc exp show --json``."""
    command = ["dvc", "exp", "show", "--json", *(["--all-commits"] if all_commits else [])]
    result = subprocess.run(command, cwd=project, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"`{shell_line(command)}` failed in {project}:\n{result.stderr[-2000:]}")
    return parse_exp_show(json.loads(result.stdout))
