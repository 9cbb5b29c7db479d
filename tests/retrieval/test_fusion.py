"""Fusion functions and the choice between them, against hand-worked examples and a brute-force reference."""

import numpy as np
import pytest

from stages.lib.retrieval.fusion import CONVEX, RRF, Fusion, candidates, choose_fusion, convex_combination, reciprocal_rank_fusion
from stages.lib.retrieval.rankers import Ranking, dense_rank


def _ranking(lists: dict[str, list[tuple[str, float]]]) -> Ranking:
    ranking = Ranking()
    for qid, pairs in lists.items():
        ranking[qid] = [cid for cid, _ in pairs]
        ranking.scores[qid] = [score for _, score in pairs]
    return ranking


def test_rrf_rewards_agreement_and_weights_matter():
    a = {"q": ["d1", "d2", "d3"]}
    b = {"q": ["d2", "d3", "d1"]}
    assert reciprocal_rank_fusion([a, b], k=60, depth=3)["q"][0] == "d2"
    assert reciprocal_rank_fusion([a, b], k=60, depth=3, weights=[5.0, 1.0])["q"][0] == "d1"


def test_convex_combination_on_a_hand_worked_example():
    # dense cosine: a 0.8, b 0.6 (floor -1: a -> 1.0, b -> 1.6/1.8); bm25: b 10, c 5 (floor 0: b -> 1, c -> 0.5)
    dense = _ranking({"q": [("a", 0.8), ("b", 0.6)]})
    lexical = _ranking({"q": [("b", 10.0), ("c", 5.0)]})
    fused = convex_combination(dense, lexical, alpha=0.5, depth=3)
    expected = {"a": 0.5 * 1.0, "b": 0.5 * (1.6 / 1.8) + 0.5 * 1.0, "c": 0.5 * 0.5}
    assert fused["q"] == ["b", "a", "c"]
    assert fused.scores["q"] == pytest.approx([expected["b"], expected["a"], expected["c"]])
    assert convex_combination(dense, lexical, alpha=1.0, depth=3)["q"][:2] == ["a", "b"]
    assert convex_combination(dense, lexical, alpha=0.0, depth=3)["q"][:2] == ["b", "c"]


def test_convex_combination_matches_a_full_matrix_reference():
    rng = np.random.default_rng(0)
    n_docs, n_queries, depth = 40, 6, 8
    corpus_ids = [f"d{i:02d}" for i in range(n_docs)]
    docs = rng.normal(size=(n_docs, 5))
    docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    queries = rng.normal(size=(n_queries, 5))
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    query_ids = [f"q{i}" for i in range(n_queries)]
    dense = dense_rank(query_ids, queries, corpus_ids, docs, depth)
    bm25 = rng.uniform(0, 9, size=(n_queries, n_docs))
    lexical = Ranking()
    for qi, qid in enumerate(query_ids):
        order = np.argsort(-bm25[qi], kind="stable")[:depth]
        lexical[qid] = [corpus_ids[i] for i in order]
        lexical.scores[qid] = bm25[qi, order].tolist()
    fused = convex_combination(dense, lexical, alpha=0.3, depth=depth)
    for qi, qid in enumerate(query_ids):
        # Reference: every chunk scored; a chunk outside a retriever's top `depth` gets that retriever's floor.
        cos = queries[qi] @ docs.T
        in_dense = np.isin(corpus_ids, dense[qid])
        in_lexical = np.isin(corpus_ids, lexical[qid])
        d = np.where(in_dense, (cos + 1) / (cos[in_dense].max() + 1), 0.0)
        lex = np.where(in_lexical, bm25[qi] / bm25[qi, in_lexical].max(), 0.0)
        total = np.where(in_dense | in_lexical, 0.3 * d + 0.7 * lex, -np.inf)
        order = sorted(range(n_docs), key=lambda i: (-total[i], corpus_ids[i]))[:depth]
        assert fused[qid] == [corpus_ids[i] for i in order]
        assert fused.scores[qid] == pytest.approx(total[order].tolist())


def test_convex_combination_needs_scores():
    with pytest.raises(ValueError, match="carries no scores"):
        convex_combination(Ranking({"q": ["a"]}), _ranking({"q": [("a", 1.0)]}), 0.5, 3)


def test_candidates_cover_both_methods_and_honour_fixed_settings():
    auto = candidates("auto", "auto")
    assert {f.method for f in auto} == {RRF, CONVEX}
    assert Fusion(CONVEX, 0.0) in auto and Fusion(CONVEX, 1.0) in auto
    assert candidates(CONVEX, 0.4) == [Fusion(CONVEX, 0.4)]
    assert {f.method for f in candidates(RRF, "auto")} == {RRF}


def test_choice_uses_the_dense_scores_when_they_separate_better():
    # BM25 puts the right chunk second everywhere; the dense model is sure of it on q1 only.
    dense = _ranking({"q1": [("good1", 0.9), ("bad1", 0.1)], "q2": [("bad2", 0.50), ("good2", 0.49)]})
    lexical = _ranking({"q1": [("bad1", 5.0), ("good1", 4.9)], "q2": [("bad2", 5.0), ("good2", 1.0)]})
    relevant = {"q1": ["good1"], "q2": ["good2"]}
    choice = choose_fusion(dense, lexical, relevant, candidates("auto", "auto"), rrf_k=60, depth=2)
    assert choice.validation["hybrid"]["mrr@10"] >= max(choice.validation["finetuned"]["mrr@10"],
                                                        choice.validation["bm25"]["mrr@10"])
    assert choice.validation["hybrid"]["mrr@10"] == pytest.approx(0.75)


def test_choice_is_never_below_the_better_input_on_validation():
    rng = np.random.default_rng(1)
    ids = [f"d{i}" for i in range(30)]
    for trial in range(5):
        dense = _ranking({f"q{j}": sorted(((c, float(rng.uniform(-1, 1))) for c in ids), key=lambda p: -p[1])[:10]
                          for j in range(12)})
        lexical = _ranking({f"q{j}": sorted(((c, float(rng.uniform(0, 8))) for c in ids), key=lambda p: -p[1])[:10]
                            for j in range(12)})
        relevant = {f"q{j}": [ids[int(rng.integers(30))]] for j in range(12)}
        choice = choose_fusion(dense, lexical, relevant, candidates("auto", "auto"), rrf_k=60, depth=10)
        best_input = max(choice.validation["finetuned"]["mrr@10"], choice.validation["bm25"]["mrr@10"])
        assert choice.validation["hybrid"]["mrr@10"] >= best_input, trial
