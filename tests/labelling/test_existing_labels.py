"""A labelled row opened again after re-chunking: its passages found by their text, the lost ones listed."""

from __future__ import annotations

from stages.lib.documents.chunking import Chunk, chunk_id
from stages.lib.labelling.existing_labels import place_labels
from stages.lib.retrieval.passage_labels import PassageLocator

SOURCE = "契税法.pdf"
ARTICLE_3 = "第三条 契税税率为百分之三至百分之五。契税的具体适用税率，由省、自治区、直辖市人民政府在前款规定的税率幅度内提出。"
ARTICLE_6 = "第六条 有下列情形之一的，免征契税：国家机关、事业单位、社会团体、军事单位承受土地、房屋权属用于办公、教学、医疗。"


def chunk(text: str, position: int) -> Chunk:
    return Chunk(chunk_id(SOURCE, text), text, SOURCE, "test", "zh", "", position, len(text))


def row(*chunks: Chunk) -> dict:
    return {"id": "lab-x", "query": "q", "split": "test",
            "passages": [{"chunk": c.id, "source": c.source, "text": c.text} for c in chunks]}


def test_labels_on_the_same_chunks_are_marked_again():
    chunks = [chunk(ARTICLE_3, 0), chunk(ARTICLE_6, 1)]
    placed = place_labels(row(chunks[1]), PassageLocator(chunks))
    assert placed.chunk_ids == [chunks[1].id] and placed.moved == 0 and placed.unplaced == []


def test_a_label_split_by_a_smaller_chunk_size_marks_both_halves():
    whole = chunk(ARTICLE_3, 0)
    halves = [chunk(ARTICLE_3[:30], 0), chunk(ARTICLE_3[30:], 1), chunk(ARTICLE_6, 2)]
    placed = place_labels(row(whole), PassageLocator(halves))
    assert placed.chunk_ids == [halves[0].id, halves[1].id] and placed.moved == 1 and placed.unplaced == []


def test_a_label_whose_text_changed_is_listed_for_relabelling_not_dropped():
    old = chunk(ARTICLE_6, 1)
    now = [chunk(ARTICLE_3, 0), chunk("第六条 本条已经被全部改写，内容与原来完全不同，没有一句相同的话。", 1)]
    placed = place_labels({**row(chunk(ARTICLE_3, 0), old), "unplaced_passages": [{"text": "older", "source": SOURCE}]},
                          PassageLocator(now))
    assert placed.chunk_ids == [now[0].id]
    assert placed.unplaced == [{"chunk": old.id, "source": SOURCE, "text": ARTICLE_6}]
    assert placed.kept == [{"text": "older", "source": SOURCE}]


def test_a_row_without_passages_marks_nothing():
    locator = PassageLocator([chunk(ARTICLE_3, 0)])
    assert place_labels(None, locator).chunk_ids == []
    assert place_labels({"id": "x", "no_relevant_chunk": True}, locator).chunk_ids == []
