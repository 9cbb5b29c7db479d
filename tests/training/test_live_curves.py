"""The training curves as DVC sees them, also before a project's first commit: after the session's tiny `dvc repro`, `dvc plots show` draws the
DVCLive series declared in dvc.yaml, and `dvc exp show` lists the training metrics and the selection as columns.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.helpers import run


@pytest.mark.slow  # reads the session's reproduced tiny pipeline
def test_dvc_plots_show_draws_the_training_curves(tiny_pipeline):
    shown = json.loads(run(["dvc", "plots", "show", "--json"], tiny_pipeline.path).stdout)
    # (Other plots may miss their files here: the learning curve is a benchmark's result, not a stage's output.)
    errors = [error for error in shown.get("errors", []) if "train_live" in error.get("source", "")]
    assert not errors, errors
    data = shown["data"]
    for title, column in (("Training loss", "loss"), ("Learning rate", "learning_rate"), ("Validation NDCG@10", "ndcg@10")):
        rows = data[title][0]["content"]["data"]["values"]
        assert rows and all("step" in row and column in row for row in rows), title
    loss_steps = [int(row["step"]) for row in data["Training loss"][0]["content"]["data"]["values"]]
    assert loss_steps == sorted(set(loss_steps)) and loss_steps[0] >= 1
    # Step 0 of the validation curve is the base model, then the fine-tuned steps.
    val_steps = sorted(int(row["step"]) for row in data["Validation NDCG@10"][0]["content"]["data"]["values"])
    assert val_steps[0] == 0 and len(val_steps) >= 2


@pytest.mark.slow  # reads the session's reproduced tiny pipeline
def test_dvc_exp_show_lists_the_training_metrics_and_the_selection(tiny_pipeline):
    shown = json.loads(run(["dvc", "exp", "show", "--json"], tiny_pipeline.path).stdout)
    workspace = next(entry for entry in shown if entry["rev"] == "workspace")
    metrics = workspace["data"]["metrics"]["metrics/train_live/metrics.json"]["data"]
    train = json.loads((tiny_pipeline.path / "metrics/train.json").read_text(encoding="utf-8"))
    assert isinstance(metrics["train"]["loss"], float) and metrics["train"]["learning_rate"] > 0
    for candidate in ("base", "finetuned"):
        assert set(metrics["val"][candidate]) == {"ndcg@10", "mrr@10", "hit@5"}
    assert round(metrics["val"]["base"]["ndcg@10"], 4) == train["val_ndcg@10_base"]
    assert metrics["selection"]["best_step"] == train["best_step"] and metrics["step"] == train["steps"]
    assert metrics["selection"]["wise_ft_alpha"] == train["wise_ft_alpha"]
    # The table a user reads: the same names as columns.
    table = run(["dvc", "exp", "show", "--no-pager", "--md"], tiny_pipeline.path).stdout
    assert all(column in table for column in ("train.loss", "val.finetuned.ndcg@10", "selection.best_step"))


def test_the_curves_are_written_in_a_git_repository_with_no_commit_yet(tmp_path, monkeypatch):
    # A new user's first run: `git init`, `dvc init`, `dvc repro` before any commit. DVCLive alone raises there.
    from dvc.repo import Repo
    from transformers import TrainerState

    from stages.lib.training.live_curves import LiveCurves, read_val_curve
    from stages.lib.training.validation import VAL_PREFIX

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    Repo.init(str(tmp_path)).close()
    monkeypatch.chdir(tmp_path)
    state = TrainerState(log_history=[{"step": 0, VAL_PREFIX + "ndcg@10": 0.5},
                                      {"step": 1, "loss": 3.0, "learning_rate": 1e-5}])
    curves = LiveCurves(tmp_path / "metrics/train_live")
    curves.on_train_begin(None, state, None)
    curves.finish(step=1, best_step=1, alpha=1.0, kept_score=0.6, wise_ft_scores={})
    summary = json.loads((tmp_path / "metrics/train_live/metrics.json").read_text(encoding="utf-8"))
    assert summary["train"]["loss"] == 3.0 and summary["selection"]["best_step"] == 1
    assert (tmp_path / "metrics/train_live/plots/metrics/train/loss.tsv").read_text().splitlines() == ["step\tloss", "1\t3.0"]
    assert read_val_curve(tmp_path / "metrics/train_live") == {0: 0.5}  # the base model, at step 0
