"""The committed dvc.lock and metrics belong to a real run of the current code and params."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.helpers import REPO_ROOT, run, stages_run


@pytest.fixture(scope="module")
def fresh_clone(tmp_path_factory):
    if shutil.which("git") is None or not (REPO_ROOT / ".git").exists():
        pytest.fail("these checks need the project's git checkout")
    clone = tmp_path_factory.mktemp("clone") / "repo"
    run(["git", "clone", "-q", str(REPO_ROOT), str(clone)], REPO_ROOT)
    return clone


@pytest.mark.slow
def test_fresh_clone_has_nothing_to_reproduce(fresh_clone):
    result = run(["dvc", "repro", "--dry", "--allow-missing"], fresh_clone)
    assert stages_run(result.stdout) == [], result.stdout


def test_committed_metrics_meet_the_targets(fresh_clone):
    metrics = json.loads((fresh_clone / "metrics/eval.json").read_text())
    assert metrics["test_queries"] >= 100
    # What docs/evaluation.md says of the synthetic split: BM25 wins there against either dense model.
    assert metrics["bm25"]["hit@5"] > max(metrics["base"]["hit@5"], metrics["finetuned"]["hit@5"])
    train = json.loads((fresh_clone / "metrics/train.json").read_text())
    assert train["selected_on"] == "golden val" and train["base_model_selected"] == 0
    assert train["best_val_ndcg@10"] > train["val_ndcg@10_base"]


def test_committed_metrics_report_the_golden_set_with_intervals(fresh_clone):
    metrics = json.loads((fresh_clone / "metrics/eval.json").read_text())
    golden = metrics["golden_test_zh_incl_trained_passages"]
    assert golden["queries"] >= 160  # enough to show a 0.05 difference
    for name in ("base", "finetuned", "bm25", "hybrid"):
        for metric in ("hit@5", "mrr@10"):
            assert golden[name][f"{metric}_ci_low"] <= golden[name][metric] <= golden[name][f"{metric}_ci_high"]
    # What the README and docs/evaluation.md say of these questions: fine-tuning beats the base model, the fine-tuned model beats BM25
    # and so does the hybrid, each on both metrics with intervals above 0 (since issue 30's faster training step;
    # before it the fine-tuned model's interval against BM25 touched 0), and English questions about the Chinese
    # law reach hit@5 0.5.
    for metric in ("hit@5", "mrr@10"):
        assert golden["finetuned"][f"{metric}_diff_vs_base_ci_low"] > 0
        assert golden["finetuned"][f"{metric}_diff_vs_bm25_ci_low"] > 0
        assert golden["hybrid"][f"{metric}_diff_vs_bm25_ci_low"] > 0
    assert metrics["golden_test_en_incl_trained_passages"]["finetuned"]["hit@5"] >= 0.5
    assert metrics["tuning_queries"] > 0  # the fusion was chosen on golden val, not on a test set
    # The verdict the report opens with: judged on these questions, as the README shows.
    verdict = metrics["verdict"]
    assert verdict["judge"] == "golden_test_zh_incl_trained_passages" and verdict["judge_questions"] == golden["queries"]
    assert verdict["finetuned_vs_base"] == 1 and verdict["finetuned_vs_bm25"] == 1
    # Template questions reuse their passages' words; these questions people wrote do much less.
    assert verdict["synthetic_word_overlap"] > 0.7 and verdict["judge_word_overlap"] < 0.55
    assert metrics["hybrid_fusion"] in ("rrf", "convex")
    assert metrics["llamaindex_finetuned_hit@5"] == metrics["ours_on_llamaindex_sample_hit@5"]


def test_metrics_diff_compares_two_revisions_without_a_remote(fresh_clone, tmp_path):
    # A second revision of the committed metrics, made in a clone of the clone: the committed one
    # with the fine-tuned model's golden hit@5 lowered and the fusion method changed.
    clone = tmp_path / "repo"
    run(["git", "clone", "-q", str(fresh_clone), str(clone)], tmp_path)
    path = clone / "metrics/eval.json"
    old = json.loads(path.read_text(encoding="utf-8"))
    new = json.loads(path.read_text(encoding="utf-8"))
    new["golden_test_zh_incl_trained_passages"]["finetuned"]["hit@5"] = round(
        old["golden_test_zh_incl_trained_passages"]["finetuned"]["hit@5"] - 0.125, 4)
    new["hybrid_fusion"] = "rrf" if old["hybrid_fusion"] == "convex" else "convex"
    path.write_text(json.dumps(new, indent=2) + "\n", encoding="utf-8")
    run(["git", "commit", "-qam", "changed metrics"], clone)

    diff = json.loads(run(["dvc", "metrics", "diff", "--all", "--json", "HEAD~1", "HEAD"], clone).stdout)
    entries = diff["metrics/eval.json"]
    changed = entries["golden_test_zh_incl_trained_passages.finetuned.hit@5"]
    assert changed["old"] == old["golden_test_zh_incl_trained_passages"]["finetuned"]["hit@5"]
    assert changed["new"] == new["golden_test_zh_incl_trained_passages"]["finetuned"]["hit@5"]
    assert changed["diff"] == pytest.approx(-0.125)
    unchanged = entries["finetuned.mrr@10"]  # the synthetic test split's keys, as before the golden sets
    assert unchanged["old"] == unchanged["new"] == old["finetuned"]["mrr@10"] and unchanged["diff"] == 0
    assert (entries["hybrid_fusion"]["old"], entries["hybrid_fusion"]["new"]) == (old["hybrid_fusion"], new["hybrid_fusion"])
