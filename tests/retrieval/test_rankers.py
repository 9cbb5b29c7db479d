import math

import numpy as np
import pytest

from stages.lib.documents.law_pdf import law_database, read_laws
from stages.lib.documents.text import bm25_tokens
from stages.lib.retrieval.intervals import per_query
from stages.lib.retrieval.rankers import QUERY_BLOCK, BM25Index, dense_rank, hit_at, reciprocal_rank, retrieval_metrics, top_k


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


def test_bm25_segments_chinese():
    corpus = {"a": "证券公司应当对客户的信息保密。", "b": "上市公司收购应当公告。", "c": "国歌的演奏应当庄严。"}
    ranked = BM25Index(corpus).rank({"q": "收购上市公司要公告吗"}, depth=3)
    assert ranked["q"][0] == "b"


def test_bm25_english():
    corpus = {"a": "Brokers keep records of margin loans.", "b": "Market makers quote prices.", "c": "Custody rules."}
    assert BM25Index(corpus).rank({"q": "margin loan records"}, depth=3)["q"][0] == "a"


def _stable_reference(scores: np.ndarray, depth: int) -> np.ndarray:
    """The naive ranking: a stable sort of every full row (ties in column order)."""
    return np.argsort(-scores, axis=1, kind="stable")[:, :depth]


@pytest.mark.parametrize("depth", [1, 7, 100, 299, 300, 1000])
def test_top_k_equals_a_stable_full_sort_even_with_ties(depth):
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 6, size=(57, 300)).astype(np.float32)  # few distinct values: ties everywhere
    scores[3] = 0.0  # a row of nothing but ties
    indices, values = top_k(scores, depth)
    expected = _stable_reference(scores, depth)
    assert indices.shape == expected.shape == (57, min(depth, 300))
    assert np.array_equal(indices, expected)
    assert np.array_equal(values, np.take_along_axis(scores, expected, axis=1))


def test_top_k_of_nothing():
    assert top_k(np.zeros((0, 5), dtype=np.float32), 3)[0].shape == (0, 3)
    assert top_k(np.zeros((2, 0), dtype=np.float32), 3)[0].shape == (2, 0)


@pytest.mark.parametrize("kind", ["gaussian", "integer"])
def test_blocked_dense_ranking_equals_the_full_matrix_reference(kind):
    rng = np.random.default_rng(1)
    n_queries, n_docs, dim = 2 * QUERY_BLOCK + 17, 700, 24  # several query blocks, the last one partial
    if kind == "gaussian":
        queries = rng.normal(size=(n_queries, dim)).astype(np.float32)
        docs = rng.normal(size=(n_docs, dim)).astype(np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    else:  # small integers: exact dot products with many ties
        queries = rng.integers(-1, 2, size=(n_queries, dim)).astype(np.float32)
        docs = rng.integers(-1, 2, size=(n_docs, dim)).astype(np.float32)
        docs[:50] = docs[50:100]  # duplicated documents tie exactly
    query_ids = [f"q{i}" for i in range(n_queries)]
    corpus_ids = [f"d{i}" for i in range(n_docs)]
    ranking = dense_rank(query_ids, queries, corpus_ids, docs, depth=100)
    expected = _stable_reference(queries @ docs.T, 100)
    assert list(ranking) == query_ids
    for row, qid in enumerate(query_ids):
        assert ranking[qid] == [corpus_ids[i] for i in expected[row]]


def _law_corpus() -> dict[str, str]:
    laws = read_laws(law_database(), ["中华人民共和国国歌法", "中华人民共和国契税法", "中华人民共和国车辆购置税法"])
    corpus = {f"{law.name}-{i}": article.text for law in laws for i, article in enumerate(law.articles)}
    corpus["empty"] = ""  # a document without tokens must not break indexing
    corpus["punctuation"] = "。；，"
    return corpus


def test_bm25_batched_top_k_matches_get_scores_on_a_real_corpus():
    corpus = _law_corpus()
    ids = list(corpus)
    index = BM25Index(corpus)
    queries = {f"q{i}": text[5:25] for i, text in enumerate(list(corpus.values())[:40])}
    queries.update({"blank": "", "stopwords": "的了和", "unknown": "量子纠缠超导"})
    for depth in (5, 100):
        ranking = index.rank(queries, depth)
        assert list(ranking) == list(queries)
        for qid, text in queries.items():
            tokens = bm25_tokens(text, index.language)
            full = index.retriever.get_scores(tokens) if tokens else np.zeros(len(ids), dtype=np.float32)
            got = np.array([full[ids.index(cid)] for cid in ranking[qid]])
            # Every chunk that shares a term with the query, up to depth; none that shares none.
            assert len(ranking[qid]) == min(depth, int((full > 0).sum())) == len(set(ranking[qid]))
            # The returned ranks carry the best scores there are, best first (tie order may differ from a full sort).
            assert np.allclose(got, np.sort(full)[::-1][:len(got)])
            positions = [ids.index(cid) for cid in ranking[qid]]
            assert all((a > b) or (a == b and pa < pb)
                       for a, b, pa, pb in zip(got, got[1:], positions, positions[1:], strict=False))
    assert index.rank({"q": "国歌的奏唱"}, depth=3)["q"][0].startswith("中华人民共和国国歌法")


def test_bm25_depth_larger_than_the_corpus():
    ranked = BM25Index({"a": "证券公司", "b": "上市公司"}).rank({"q": "公司", "e": ""}, depth=10)
    assert sorted(ranked["q"]) == ["a", "b"] and ranked["e"] == []


def test_bm25_retrieves_nothing_for_a_query_without_terms_and_never_zero_score_chunks():
    index = BM25Index({"a": "证券公司应当依法审慎经营", "b": "上市公司收购应当公告", "c": "国歌的演奏"})
    ranking = index.rank({"punct": "？！。", "stop": "的 了 和", "one": "证券"}, depth=10)
    assert ranking["punct"] == [] and ranking["stop"] == []  # a miss, not the first chunks in corpus order
    assert ranking["one"] == ["a"]  # the chunks without the term are not retrieved at all


def test_one_query_s_terms_are_the_averages_terms_and_rank_eleven_is_worth_nothing_to_mrr():
    assert [hit_at(rank, 5) for rank in (None, 1, 5, 6)] == [0.0, 1.0, 1.0, 0.0]
    assert [reciprocal_rank(rank) for rank in (None, 1, 4, 10, 11)] == [0.0, 1.0, 0.25, 0.1, 0.0]
    ranking = {"q1": [f"d{i}" for i in range(20)], "q2": ["d3", "d0"], "q3": ["d1"], "q4": []}
    relevant = {"q1": ["d10"], "q2": ["d0"], "q3": ["d9"], "q4": ["d0"]}  # ranks 11, 2, none, none
    averages = retrieval_metrics(ranking, relevant, [5, 20])
    per_query_terms = per_query(ranking, relevant, list(relevant))
    assert averages["mrr@10"] == round(per_query_terms["mrr@10"].mean(), 4) == 0.125
    assert averages["hit@5"] == round(per_query_terms["hit@5"].mean(), 4) == 0.25
    assert averages["hit@20"] == 0.5
