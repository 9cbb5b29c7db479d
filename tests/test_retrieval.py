import math

import pytest

from stages.lib.retrieval import BM25Index, reciprocal_rank_fusion, retrieval_metrics, tune_fusion_weight


def test_metrics_on_a_hand_computed_example():
    ranking = {"q1": ["a", "b", "c"], "q2": ["c", "b", "a"], "q3": ["x", "y", "z"]}
    relevant = {"q1": ["a"], "q2": ["b", "a"], "q3": ["missing"]}
    m = retrieval_metrics(ranking, relevant, [1, 3])
    assert m["hit@1"] == pytest.approx(round(1 / 3, 4))
    assert m["hit@3"] == pytest.approx(round(2 / 3, 4))
    assert m["mrr@10"] == pytest.approx(round((1 + 0.5 + 0) / 3, 4))
    ndcg_q2 = (1 / math.log2(3) + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert m["ndcg@10"] == pytest.approx(round((1 + ndcg_q2) / 3, 4))
    assert m["recall@1"] == pytest.approx(round(1 / 3, 4))


def test_rrf_rewards_agreement_and_weights_matter():
    a = {"q": ["d1", "d2", "d3"]}
    b = {"q": ["d2", "d3", "d1"]}
    assert reciprocal_rank_fusion([a, b], k=60, depth=3)["q"][0] == "d2"
    assert reciprocal_rank_fusion([a, b], k=60, depth=3, weights=[5.0, 1.0])["q"][0] == "d1"


def test_fusion_weight_is_tuned_on_given_queries():
    dense = {"q1": ["good", "bad"], "q2": ["good2", "bad2"]}
    lexical = {"q1": ["bad", "good"], "q2": ["bad2", "good2"]}
    relevant = {"q1": ["good"], "q2": ["good2"]}
    assert tune_fusion_weight(dense, lexical, relevant, 60, 2, [0.5, 2.0]) == 2.0
    assert tune_fusion_weight(lexical, dense, relevant, 60, 2, [0.5, 2.0]) == 0.5


def test_bm25_segments_chinese():
    corpus = {"a": "证券公司应当对客户的信息保密。", "b": "上市公司收购应当公告。", "c": "国歌的演奏应当庄严。"}
    ranked = BM25Index(corpus).rank({"q": "收购上市公司要公告吗"}, depth=3)
    assert ranked["q"][0] == "b"


def test_bm25_english():
    corpus = {"a": "Brokers keep records of margin loans.", "b": "Market makers quote prices.", "c": "Custody rules."}
    assert BM25Index(corpus).rank({"q": "margin loan records"}, depth=3)["q"][0] == "a"
