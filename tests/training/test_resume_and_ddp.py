"""Training where users train: a real `kill -9` mid-run, then `dvc repro` resumes; two data-parallel
processes (gloo on the CPU) through `dvc repro`.

Both start from a copy of the session's reproduced tiny pipeline, whose
uninterrupted single-process run is the reference.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from tests.helpers import command_env, copy_project, run, update_params

pytestmark = pytest.mark.slow  # runs the pipeline, a stage, a browser or a server: not in `make test-quick`

WEIGHTS = "models/trained/model.safetensors"
CURVES = Path("metrics/train_live/plots/metrics")  # DVCLive's series, one tsv per metric


def read_curve(project: Path, name: str) -> list[tuple[int, float]]:
    """(step, value) rows of a DVCLive series, e.g. ``train/loss``."""
    header, *rows = (project / CURVES / f"{name}.tsv").read_text(encoding="utf-8").splitlines()
    assert header.split("\t") == ["step", name.rsplit("/", 1)[-1]]
    return [(int(step), float(value)) for step, value in (row.split("\t") for row in rows)]


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def complete_checkpoint_steps(project: Path) -> list[int]:
    return sorted(int(p.parent.name.split("-")[-1]) for p in project.glob("models/.train-work/*/checkpoint-*/trainer_state.json"))


def training_processes(dvc: subprocess.Popen) -> list[psutil.Process]:
    """Every process under dvc that runs the train stage: the shell dvc starts may wrap the Python process."""
    found = []
    for child in psutil.Process(dvc.pid).children(recursive=True):
        try:
            if "stages.train" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


@pytest.fixture(scope="module")
def reference(tiny_pipeline):
    train = read_json(tiny_pipeline.path / "metrics/train.json")
    assert train["steps"] >= 10, "the tiny run must be long enough to be killed in the middle"
    return tiny_pipeline.path, train


def test_kill_9_mid_training_then_repro_resumes_to_the_same_model(reference, tmp_path):
    source, train = reference
    project = copy_project(source, tmp_path / "project")
    total = train["steps"]
    dvc = subprocess.Popen(["dvc", "repro", "--force", "--single-item", "train"], cwd=project, env=command_env(),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 600
    while time.time() < deadline and not [s for s in complete_checkpoint_steps(project) if s >= total // 3]:
        assert dvc.poll() is None, dvc.stdout.read()
        time.sleep(0.2)
    trainers = training_processes(dvc)
    assert trainers
    for trainer in trainers:  # SIGKILL: no chance to clean up, as with an OOM kill or a lost machine
        with contextlib.suppress(psutil.NoSuchProcess):
            trainer.kill()
    # Only once no trainer is left can the checkpoints on disk be counted: a survivor would go on saving.
    _, alive = psutil.wait_procs(trainers, timeout=60)
    assert not alive
    dvc.wait(timeout=120)
    assert dvc.returncode != 0
    saved = complete_checkpoint_steps(project)
    assert saved and max(saved) < total  # killed in the middle
    killed_curve = read_curve(project, "train/loss")
    assert killed_curve and max(step for step, _ in killed_curve) >= max(saved)

    resumed = run(["dvc", "repro"], project)
    assert "resuming from models/.train-work/" in resumed.stdout
    metrics = read_json(project / "metrics/train.json")
    assert 0 < metrics["resumed_from_step"] == max(saved) and metrics["steps"] == total
    assert metrics["checkpoints_saved"] < train["checkpoints_saved"]  # the resumed run only did the rest
    # Optimizer, scheduler, RNG and data order were restored: on the CPU the weights are bit-identical.
    assert (project / WEIGHTS).read_bytes() == (source / WEIGHTS).read_bytes()
    assert read_json(project / "metrics/eval.json")["finetuned"] == read_json(source / "metrics/eval.json")["finetuned"]
    assert not (project / "models/.train-work").exists() or not any((project / "models/.train-work").iterdir())
    # The curves: rebuilt from the checkpoint's log history, then continued; every step once, as in the unbroken run.
    loss = read_curve(project, "train/loss")
    assert [step for step, _ in loss] == sorted({step for step, _ in loss}) and loss[-1][0] == total
    for name in ("train/loss", "train/learning_rate", "val/base/ndcg@10", "val/finetuned/ndcg@10", "val/finetuned/hit@5"):
        assert read_curve(project, name) == read_curve(source, name), name
    summary = read_json(project / "metrics/train_live/metrics.json")
    assert summary == read_json(source / "metrics/train_live/metrics.json") and summary["step"] == total


def test_two_processes_with_gloo_through_dvc_repro(reference, tmp_path):
    source, train = reference
    project = copy_project(source, tmp_path / "project")
    update_params(project, {"train": {"processes": 2}})
    result = run(["dvc", "repro", "--force", "--single-item", "train"], project)
    output = result.stdout + result.stderr
    assert "launching 2 data-parallel processes on cpu through torchrun" in output
    assert output.count("[train] finished in") == 1 and "Traceback" not in output
    metrics = read_json(project / "metrics/train.json")
    assert metrics["processes"] == 2 and metrics["device"] == "cpu"
    # Every worker took the precision the launcher measured (the probe's cached decision), as the single run did.
    assert metrics["precision"] == train["precision"]
    assert {key: value for key, value in metrics.items() if key.startswith("precision_probe_")} == \
        {key: value for key, value in train.items() if key.startswith("precision_probe_")}
    # train.batch_size is global: the same pairs make the same number of steps as the single-process run.
    assert (metrics["train_pairs"], metrics["steps"]) == (train["train_pairs"], train["steps"])
    # One model, written once.
    assert [p.name for p in (project / "models").iterdir() if p.name.startswith("trained")] == ["trained"]
    assert len(list((project / "models/trained").rglob("*.safetensors"))) == 1
    losses = [loss for _, loss in read_curve(project, "train/loss")]  # rank 0 alone logged: each step once
    assert [step for step, _ in read_curve(project, "train/loss")] == list(range(1, len(losses) + 1))
    third = max(1, len(losses) // 3)
    assert sum(losses[-third:]) / third < sum(losses[:third]) / third  # the loss goes down
    assert metrics["best_val_ndcg@10"] > 0.2
