"""Grids as DVC experiments, end to end with real git and DVC on the tiny pipeline: a two-point grid queued the
way the benchmarks queue theirs (``dvc exp run --queue -S 'train.max_pairs=16,24'``), run by ``dvc queue
start``, read back from ``dvc exp show --json``, pushed with ``dvc exp push`` to a bare git repository and a
folder remote, then pulled into a second clone and applied there.

The queue's workers run the grid (not ``dvc exp run --run-all``): that is what docs/experiments.md tells users to
run, and ``tests.helpers.run_queue`` waits for them.
"""

from __future__ import annotations

import json

import pytest
from ruamel.yaml import YAML

from benchmarks.learning_curve import experiment_point
from benchmarks.project import Sweep, exp_run_command, show_experiments
from tests.helpers import copy_project, run, run_queue

pytestmark = pytest.mark.slow

GRID = (16, 24)


@pytest.fixture(scope="module")
def shared(tiny_pipeline, tmp_path_factory):
    """Alice's reproduced tiny project with a git remote (a bare repository) and a DVC folder remote, its grid
    queued and run."""
    root = tmp_path_factory.mktemp("experiments")
    origin = root / "origin.git"
    run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], root)
    alice = copy_project(tiny_pipeline.path, root / "alice")
    run(["dvc", "remote", "add", "-d", "shared", str(root / "dvc-remote")], alice)
    run(["git", "add", "-A"], alice)
    run(["git", "commit", "-q", "-m", "shared remote"], alice)
    run(["git", "remote", "add", "origin", str(origin)], alice)
    run(["git", "push", "-q", "origin", "main"], alice)
    run(["dvc", "push"], alice)
    queued = run(exp_run_command({"train.max_pairs": Sweep(GRID)}, name="pairs"), alice).stdout
    assert "Queued experiment 'pairs-1'" in queued and "Queued experiment 'pairs-2'" in queued, queued
    # Two workers with the cores shared between them, as docs/team.md runs a grid (each on every core, the two
    # trainings spin against each other: benchmarks/parallel_training.py).
    status = run_queue(alice, jobs=2, extra_env={"OMP_NUM_THREADS": "1"})
    logs = run(["dvc", "queue", "logs", "pairs-1"], alice, check=False).stdout
    assert status.count("Success") == 2, status + logs
    assert "cpu (1 thread per process)" in logs  # the worker's OMP_NUM_THREADS reached the train stage
    return root, origin, alice


def test_exp_show_lists_both_points_with_their_params_and_metrics(shared):
    _, _, alice = shared
    committed = YAML(typ="safe").load((alice / "params.yaml").read_text(encoding="utf-8"))
    experiments = {experiment.name: experiment for experiment in show_experiments(alice)}
    assert set(experiments) == {"pairs-1", "pairs-2"}
    for name, pairs in zip(("pairs-1", "pairs-2"), GRID, strict=True):
        experiment = experiments[name]
        assert experiment.param("train.max_pairs") == pairs
        assert experiment.param("train.loss") == committed["train"]["loss"]  # the rest as committed
        assert experiment.param("sample.laws") == committed["sample"]["laws"]
        train = experiment.metric("metrics/train.json")
        assert train["train_pairs"] == pairs and train["steps"] > 0
        assert 0 <= experiment.metric("metrics/eval.json")["finetuned"]["hit@5"] <= 1
        _, point = experiment_point(experiment)
        assert (point["experiment"], point["train_pairs"], point["source"]) == (name, pairs, "target")
        assert point["scores"] == {}  # the tiny laws have no golden set: nothing to draw on the curve
    steps = [experiments[name].metric("metrics/train.json")["steps"] for name in ("pairs-1", "pairs-2")]
    assert steps[0] < steps[1]  # batch 8: the larger budget takes more steps


def test_exp_show_sorts_the_grid_by_a_metric(shared):
    _, _, alice = shared
    shown = run(["dvc", "exp", "show", "--csv", "--sort-by", "metrics/eval.json:finetuned.mrr@10", "--sort-order", "asc",
                 "--keep", r"^(Experiment|finetuned\.mrr@10|train\.max_pairs)$", "--drop", ".*"], alice).stdout
    header = shown.splitlines()[0].split(",")
    rows = [line.split(",") for line in shown.splitlines() if line.startswith("pairs-")]
    assert {row[0]: row[header.index("train.max_pairs")] for row in rows} == {"pairs-1": "16", "pairs-2": "24"}, shown
    assert header == ["Experiment", "finetuned.mrr@10", "train.max_pairs"], shown
    # Ascending: `dvc exp show` lists the newest first, so an ignored sort would fail here on a distinct pair.
    mrr = [float(row[header.index("finetuned.mrr@10")]) for row in rows]
    assert mrr == sorted(mrr), shown


def test_a_pushed_experiment_is_pulled_and_applied_in_a_second_clone(shared):
    root, origin, alice = shared
    shown = {experiment.name: experiment for experiment in show_experiments(alice)}
    run(["dvc", "exp", "push", "origin", "pairs-1"], alice)
    listed = run(["dvc", "exp", "list", "origin"], alice).stdout
    assert "pairs-1" in listed and "pairs-2" not in listed, listed

    bob = root / "bob"
    run(["git", "clone", "-q", str(origin), str(bob)], root)
    run(["dvc", "exp", "pull", "origin", "pairs-1"], bob)
    pulled = {experiment.name: experiment for experiment in show_experiments(bob)}
    assert set(pulled) == {"pairs-1"}
    assert pulled["pairs-1"].metrics == shown["pairs-1"].metrics
    assert pulled["pairs-1"].params == shown["pairs-1"].params

    run(["dvc", "exp", "apply", "pairs-1"], bob)
    params = YAML(typ="safe").load((bob / "params.yaml").read_text(encoding="utf-8"))
    assert params["train"]["max_pairs"] == GRID[0]
    for path in shown["pairs-1"].metrics:  # every metrics file, byte for byte as the experiment committed it
        committed = run(["git", "show", f"{shown['pairs-1'].rev}:{path}"], alice).stdout
        assert (bob / path).read_text(encoding="utf-8") == committed, path
    train = json.loads((bob / "metrics/train.json").read_text(encoding="utf-8"))
    assert train == shown["pairs-1"].metric("metrics/train.json") and train["train_pairs"] == GRID[0]
    # The experiment's outputs came with it (exp pull fetched them from the DVC remote): nothing to rerun.
    assert (bob / "models/finetuned/model.safetensors").is_file()
    assert "up to date" in run(["dvc", "status"], bob).stdout
