"""The pool: the union of every retriever's top k, in an order that is stable and says nothing of who found what."""

from __future__ import annotations

import itertools

from stages.lib.labelling.pool import pool_ids, pool_order
from stages.lib.retrieval.rankers import Ranking


def ranking(ids: list[str]) -> Ranking:
    found = Ranking({"query": ids})
    found.scores = {"query": [1.0 - i / 100 for i in range(len(ids))]}
    return found


RANKINGS = {
    "base": ranking(["a", "b", "c", "d", "e", "f"]),
    "finetuned": ranking(["b", "g", "a", "h", "i", "j"]),
    "bm25": ranking(["k", "a"]),  # BM25 may find fewer than k
    "hybrid": ranking(["b", "a", "g", "k", "c", "z"]),
}


def test_the_pool_is_the_union_of_each_retriever_s_top_k():
    pooled = pool_ids(RANKINGS, "query", 5, "契税的税率")
    assert sorted(pooled) == sorted({"a", "b", "c", "d", "e", "g", "h", "i", "k"})
    assert "f" not in pooled and "j" not in pooled and "z" not in pooled  # rank 6 of their retriever
    assert len(pooled) == len(set(pooled))
    assert sorted(pool_ids(RANKINGS, "query", 1, "契税的税率")) == ["a", "b", "k"]


def test_the_order_is_stable_and_the_same_whichever_retriever_found_a_chunk():
    first = pool_ids(RANKINGS, "query", 5, "契税的税率")
    assert pool_ids(RANKINGS, "query", 5, "契税的税率") == first
    assert pool_ids(RANKINGS, "query", 5, " 契税的税率。") == first  # the same question, normalised
    # Every assignment of the rankings to the retriever names gives the same order: the page cannot tell who found what.
    names = list(RANKINGS)
    for permutation in itertools.permutations(RANKINGS.values()):
        assert pool_ids(dict(zip(names, permutation, strict=True)), "query", 5, "契税的税率") == first
    # Nor at what rank: the order is the chunks' hash order, not any retriever's.
    assert first == sorted(first, key=lambda cid: pool_order("契税的税率", cid))
    assert all(first[:len(r["query"][:5])] != r["query"][:5] for r in RANKINGS.values() if len(r["query"]) > 2)


def test_another_question_shuffles_the_same_chunks_differently():
    orders = {tuple(pool_ids(RANKINGS, "query", 5, f"问题{i}")) for i in range(20)}
    assert len(orders) > 15  # 9! orders: twenty questions nearly always give twenty orders


def test_chunks_labelled_before_are_added_back_when_they_left_the_pool():
    pooled = pool_ids(RANKINGS, "query", 2, "契税的税率", also=["z", "a"])
    assert sorted(pooled) == ["a", "b", "g", "k", "z"]
    assert pooled == sorted(pooled, key=lambda cid: pool_order("契税的税率", cid))  # mixed in, not put first
