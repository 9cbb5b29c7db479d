"""The selection ablation's scoring: per-question hits from the evaluate stage's file, paired intervals, the
hybrid's distance from the better of its parts in questions, and the docs' table from the committed results (rendered into docs/evaluation.md)."""

from __future__ import annotations

import json

from benchmarks.selection_ablation import JUDGED, RESULTS, markdown_table, per_question_hits, score_set
from tests.helpers import REPO_ROOT


def test_hits_come_from_the_per_query_ranks_and_the_hybrid_is_compared_with_its_better_part(tmp_path):
    rows = []
    for i in range(10):
        # fine-tuned finds 6 in its top 5, BM25 4, the hybrid 7; a rank of 6 is a miss at 5, None a miss anywhere.
        rows.append({"set": JUDGED[0], "id": f"q{i}", "base_rank": 9, "finetuned_rank": 1 if i < 6 else 6,
                     "bm25_rank": 2 if i < 4 else None, "hybrid_rank": 5 if i < 7 else 7})
    rows.append({"set": "test", "id": "synthetic", "base_rank": 1, "finetuned_rank": 1, "bm25_rank": 1, "hybrid_rank": 1})
    (tmp_path / "data/eval").mkdir(parents=True)
    (tmp_path / "data/eval/per_query.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    hits = per_question_hits(tmp_path, JUDGED[0])
    assert len(hits) == 10 and hits["q0"] == {"base": 0.0, "finetuned": 1.0, "bm25": 1.0, "hybrid": 1.0}
    scored = score_set(hits)
    assert (scored["finetuned_hit@5"], scored["bm25_hit@5"], scored["hybrid_hit@5"]) == (0.6, 0.4, 0.7)
    assert scored["better_part"] == "finetuned" and scored["hybrid_vs_better_part_questions"] == 1
    difference, low, high = scored["hybrid_minus_finetuned"]
    assert difference == 0.1 and low <= 0.1 <= high and low >= 0  # the hybrid never misses what fine-tuned finds here
    assert scored["best"] == "hybrid"


def test_the_committed_results_render_the_docs_table():
    results = json.loads((REPO_ROOT / RESULTS).read_text(encoding="utf-8"))
    table = markdown_table(results)
    for entry in results["laws"].values():
        assert table.count(f"| {entry['law']} |") == 3  # golden set choosing, hidden, and the rule before
