"""BM25 hard-negative mining: from the window, never the positive or its neighbours, seeded."""

from stages.lib.documents.chunking import Chunk
from stages.lib.retrieval.rankers import BM25Index
from stages.lib.training.hard_negatives import MiningWindow, document_neighbours, mine_bm25_negatives


def _chunk(cid: str, source: str, position: int) -> Chunk:
    return Chunk(id=cid, text="", source=source, split="train", language="zh", section="", position=position, n_tokens=1)


CORPUS = {
    "pos": "上市公司董事减持股份应当提前公告减持计划。",
    "next": "减持计划应当载明减持的数量和时间。",  # the positive's continuation: may answer the query too
    "near": "上市公司董事买卖股份应当遵守交易规则。",
    "far": "证券交易所对上市公司股份交易实行监管。",
    "other": "国务院证券监督管理机构依法履行职责。",
}
NEIGHBOURS = document_neighbours([_chunk("pos", "a.pdf", 3), _chunk("next", "a.pdf", 4), _chunk("near", "a.pdf", 9),
                                  _chunk("far", "b.pdf", 0), _chunk("other", "b.pdf", 1)])


def test_neighbours_are_adjacent_chunks_of_the_same_document():
    assert NEIGHBOURS["pos"] == {"pos", "next"}
    assert NEIGHBOURS["far"] == {"far", "other"}
    assert NEIGHBOURS["near"] == {"near"}


def test_negatives_come_from_the_window_and_skip_the_positive_and_its_neighbours():
    query = "上市公司董事减持股份要公告吗"
    ranked = BM25Index(CORPUS).rank({"q": query}, depth=5)["q"]
    window = MiningWindow(rank_min=1, rank_max=3, margin=1.0)
    allowed = [cid for cid in ranked[:3] if cid not in {"pos", "next"}]
    for seed in range(10):
        negative = mine_bm25_negatives([query], [{"pos"}], CORPUS, NEIGHBOURS, window, seed)[0]
        assert negative in allowed
    # The same seed gives the same negative; the choice is per query, not per batch position.
    first = mine_bm25_negatives([query], [{"pos"}], CORPUS, NEIGHBOURS, window, 7)
    assert mine_bm25_negatives(["另一个问题", query], [{"far"}, {"pos"}], CORPUS, NEIGHBOURS, window, 7)[1] == first[0]


def test_margin_drops_candidates_scoring_like_the_positive():
    query = "上市公司董事减持股份要公告吗"
    ranking = BM25Index(CORPUS).rank({"q": query}, depth=5)
    scores = dict(zip(ranking["q"], ranking.scores["q"], strict=True))
    margin = (scores["near"] + scores["far"]) / 2 / scores["pos"]  # between the two candidates' shares
    window = MiningWindow(rank_min=1, rank_max=5, margin=margin)
    picked = {mine_bm25_negatives([query], [{"pos"}], CORPUS, NEIGHBOURS, window, seed)[0] for seed in range(20)}
    assert "near" not in picked and picked <= {"far", "other"}


def test_a_query_without_candidates_still_gets_a_negative_outside_its_neighbourhood():
    window = MiningWindow(rank_min=1, rank_max=5, margin=0.95)
    negatives = mine_bm25_negatives(["？？？"], [{"pos"}], CORPUS, NEIGHBOURS, window, seed=0)
    assert negatives[0] in {"near", "far", "other"}
