"""Labelled passages are found again by their text when re-chunking changed the chunk ids, or reported."""

from __future__ import annotations

from stages.lib.documents.chunking import Chunk, chunk_id
from stages.lib.retrieval.passage_labels import PassageLabel, PassageLocator

ARTICLES = [
    "第三十九条 劳动者有下列情形之一的，用人单位可以解除劳动合同：在试用期间被证明不符合录用条件的；严重违反用人单位的规章制度的。",
    "第四十条 有下列情形之一的，用人单位提前三十日以书面形式通知劳动者本人或者额外支付劳动者一个月工资后，可以解除劳动合同。",
    "第四十一条 有下列情形之一，需要裁减人员二十人以上的，用人单位提前三十日向工会或者全体职工说明情况，听取意见后可以裁减人员。",
    "第四十二条 劳动者有下列情形之一的，用人单位不得依照本法第四十条、第四十一条的规定解除劳动合同。",
]


def chunks_of(pieces: list[str], source: str = "law.pdf") -> list[Chunk]:
    return [Chunk(chunk_id(source, text), text, source, "test", "zh", "", i, len(text)) for i, text in enumerate(pieces)]


def halves(texts: list[str]) -> list[str]:
    return [part for text in texts for part in (text[: len(text) // 2], text[len(text) // 2:])]


ORIGINAL = chunks_of(ARTICLES)


def label(chunk: Chunk) -> PassageLabel:
    return PassageLabel(chunk.text, chunk.source, chunk.id)


def test_a_chunk_that_is_still_there_is_found_by_its_id():
    assert PassageLocator(ORIGINAL).locate(label(ORIGINAL[1])) == [ORIGINAL[1].id]


def test_a_smaller_chunk_size_gives_both_halves_of_the_labelled_chunk():
    rechunked = chunks_of(halves(ARTICLES))
    assert PassageLocator(rechunked).locate(label(ORIGINAL[1])) == [rechunked[2].id, rechunked[3].id]


def test_a_larger_chunk_size_gives_the_chunk_that_now_holds_it():
    rechunked = chunks_of(["\n".join(ARTICLES[:2]), "\n".join(ARTICLES[2:])])
    locator = PassageLocator(rechunked)
    assert locator.locate(label(ORIGINAL[1])) == [rechunked[0].id]
    assert locator.locate(label(ORIGINAL[3])) == [rechunked[1].id]


def test_whitespace_and_line_breaks_do_not_matter():
    spaced = chunks_of([text.replace("，", "， \n") for text in ARTICLES])
    assert PassageLocator(spaced).locate(label(ORIGINAL[0])) == [spaced[0].id]


def test_a_neighbour_sharing_a_few_characters_is_not_relevant():
    # The chunk boundary moved by ten characters: the next chunk holds a sliver of the labelled text, not enough.
    text = "".join(ARTICLES)
    end = len(ARTICLES[0]) + 10
    rechunked = chunks_of([text[:end], text[end:]])
    assert PassageLocator(rechunked).locate(label(ORIGINAL[0])) == [rechunked[0].id]


def test_a_label_whose_text_is_gone_is_not_placed():
    edited = chunks_of([ARTICLES[0], "第四十条 本条已被删除。", *ARTICLES[2:]])
    assert PassageLocator(edited).locate(label(ORIGINAL[1])) is None


def test_a_renamed_document_is_searched_when_the_labelled_one_is_absent():
    renamed = chunks_of(ARTICLES, source="labor-law-2012.pdf")
    assert PassageLocator(renamed).locate(label(ORIGINAL[2])) == [renamed[2].id]


def test_the_labelled_document_is_searched_before_any_other():
    both = chunks_of(ARTICLES) + chunks_of(ARTICLES, source="copy.pdf")
    relabelled = PassageLabel(ARTICLES[2], "copy.pdf", "gone")
    assert PassageLocator(both).locate(relabelled) == [both[6].id]


def test_chunks_that_repeat_the_end_of_the_one_before_are_joined_without_the_repeat():
    # chunk_overlap: each chunk starts with the last sentence of the one before.
    overlapping = chunks_of([ARTICLES[0] + ARTICLES[1], ARTICLES[1] + ARTICLES[2], ARTICLES[2] + ARTICLES[3]])
    locator = PassageLocator(overlapping)
    assert locator.locate(label(ORIGINAL[0])) == [overlapping[0].id]
    assert locator.locate(label(ORIGINAL[2])) == [overlapping[1].id, overlapping[2].id]
    # Across the join: chunk 1 holds all of it, chunks 0 and 2 half each (a quarter is enough).
    spanning = PassageLabel(ARTICLES[1][-20:] + ARTICLES[2][:20], "law.pdf", None)
    assert locator.locate(spanning) == [chunk.id for chunk in overlapping]
