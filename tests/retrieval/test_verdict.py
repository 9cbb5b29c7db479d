"""The verdict: judged on the largest golden test set with intervals, or 'not shown' with no golden set."""

from __future__ import annotations

import json

import numpy as np

from stages.lib.retrieval.intervals import intervals
from stages.lib.retrieval.verdict import PEOPLES_WORD_OVERLAP, build_verdict, judge_notice, judge_set, verdict_lines
from tests.helpers import REPO_ROOT

ZH = "golden_test_zh_incl_trained_passages"


def scored_rows(hits: dict[str, list[int]]) -> dict[str, dict]:
    """Rows as side_by_side.scored makes them: means, intervals, differences from BM25 and from the base."""
    per_query = {name: {"hit@5": np.array(values, float), "mrr@10": np.array(values, float)} for name, values in hits.items()}
    bands = intervals(per_query, baseline="bm25", compared={"finetuned": "base"})
    return {name: {"hit@5": float(np.mean(values)), "mrr@10": float(np.mean(values)), **bands.get(name, {})}
            for name, values in hits.items()}


def test_the_largest_golden_test_set_judges_with_intervals():
    n = 100
    # fine-tuned finds 30 more than base (clearly better), 2 more than BM25 (not shown); hybrid is best.
    rows = scored_rows({"base": [1] * 50 + [0] * 50, "finetuned": [1] * 80 + [0] * 20, "bm25": [1] * 78 + [0] * 22,
                        "hybrid": [1] * 85 + [0] * 15})
    results = {"test": rows, ZH: rows, "golden_test_zh_unseen_passages": rows, "golden_test_en_incl_trained_passages": rows}
    queries = {"test": 40, ZH: n, "golden_test_zh_unseen_passages": 30, "golden_test_en_incl_trained_passages": 20}
    verdict = build_verdict(results, queries, {ZH: 0.41, "test": 0.8}, "test")
    assert judge_set(results, queries) == ZH
    assert (verdict["judge"], verdict["judge_questions"], verdict["judge_word_overlap"]) == (ZH, 100, 0.41)
    assert verdict["finetuned_vs_base"] == 1 and verdict["finetuned_vs_base_hit@5_diff"] == 0.3
    assert verdict["finetuned_vs_bm25"] == 0 and verdict["finetuned_vs_bm25_hit@5_diff_ci_low"] <= 0
    assert (verdict["best"], verdict["best_measured"], verdict["runner_up"]) == ("hybrid", 1, "finetuned")
    lines = verdict_lines(verdict, fusion="reciprocal-rank fusion")
    assert lines[0].startswith("Judged on 100 questions written by people (golden test, zh;")
    assert lines[1].startswith("Fine-tuned vs base: better, hit@5 +0.300 [")
    assert lines[2].startswith("Fine-tuned vs BM25: not shown") and "includes 0" in lines[2]
    assert lines[3].startswith("Best: hybrid (reciprocal-rank fusion), hit@5 0.850") and "next: fine-tuned 0.800" in lines[3]
    assert judge_notice(verdict) is None
    json.dumps(verdict)  # metrics/eval.json holds it as it is


def test_worse_is_said_when_the_whole_interval_is_below_zero():
    rows = scored_rows({"base": [1] * 90 + [0] * 10, "finetuned": [1] * 60 + [0] * 40, "bm25": [0] * 100,
                        "hybrid": [1] * 60 + [0] * 40})
    verdict = build_verdict({"test": rows, ZH: rows}, {"test": 10, ZH: 100}, {}, "test")
    assert verdict["finetuned_vs_base"] == -1 and verdict["finetuned_vs_bm25"] == 1
    assert verdict["best"] == "base"


def test_without_a_golden_set_nothing_is_shown_and_the_notice_quotes_the_overlap():
    rows = scored_rows({"base": [1] * 10, "finetuned": [0] * 10, "bm25": [1] * 10, "hybrid": [1] * 10})
    verdict = build_verdict({"test": rows}, {"test": 10}, {"test": 0.8}, "test")
    assert verdict["judge"] == "none" and verdict["judge_questions"] == 0
    # The synthetic split says fine-tuning made things worse; it is no judge, so the verdict says nothing of it.
    assert verdict["finetuned_vs_base"] == 0 and verdict["finetuned_vs_bm25"] == 0
    assert "finetuned_vs_base_hit@5_diff" not in verdict
    assert (verdict["best"], verdict["best_measured"]) == ("hybrid", 0)
    lines = verdict_lines(verdict)
    assert lines[1] == "Fine-tuned vs base: not shown (no golden set)."
    assert lines[3].startswith("Best: hybrid, by default, not measured here")
    notice = judge_notice(verdict)
    assert "10 questions" in notice and "80% of their words" in notice and "34%-50%" in notice and "/label" in notice


def test_the_quoted_overlap_of_peoples_questions_is_the_measured_one():
    measured = json.loads((REPO_ROOT / "benchmarks/results/lexical_overlap.json").read_text(encoding="utf-8"))
    assert list(PEOPLES_WORD_OVERLAP) == measured["peoples_word_overlap_range"]
