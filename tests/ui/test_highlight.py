"""The words a chunk shares with the question, cut as BM25 cuts them (no pipeline needed)."""

from stages.lib.documents.text import bm25_tokens
from stages.lib.ui.highlight import question_terms, shared_segments


def _marked(segments):
    return [piece for piece, shared in segments if shared]


def test_chinese_words_are_jieba_s_and_stop_words_are_never_marked():
    text = "上市公司的董事、监事和高级管理人员不得违反规定买卖本公司股票。"
    terms = question_terms("上市公司的高级管理人员什么时候可以买卖股票？", "zh")
    assert terms == frozenset(bm25_tokens("上市公司的高级管理人员什么时候可以买卖股票？", "zh"))
    assert "的" not in terms and "可以" not in terms  # BM25's stop words
    segments = shared_segments(text, terms, "zh")
    assert "".join(piece for piece, _ in segments) == text
    marked = _marked(segments)
    # Neighbouring shared words ("公司", "股票" of 本公司股票) mark as one run; 的, 董事, 监事 are not marked.
    assert marked == ["上市公司", "高级管理人员", "买卖", "公司股票"]


def test_english_words_match_whatever_their_case_and_keep_their_place():
    text = "The Company's DIRECTORS shall disclose, within two days, the shares the directors hold."
    segments = shared_segments(text, question_terms("When must directors disclose their shares?", "en"), "en")
    assert "".join(piece for piece, _ in segments) == text
    assert _marked(segments) == ["DIRECTORS", "disclose", "shares", "directors"]  # not "the", a stop word


def test_nothing_shared_is_one_plain_piece():
    assert shared_segments("第一条 为了规范证券发行", frozenset(), "zh") == [("第一条 为了规范证券发行", False)]
    assert shared_segments("", frozenset({"x"}), "en") == []
