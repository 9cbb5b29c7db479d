"""The words a chunk shares with the question, as BM25 sees words: jieba's for Chinese, lower-cased words for English.

The question's terms are BM25's own (``bm25_tokens``: stop words and punctuation left out). A chunk is cut
into the same kind of words with their positions (jieba's search-mode ``tokenize``, which yields the words
``lcut_for_search`` does; a word regex for English), and each word that is one of the question's terms is
marked. The page receives the text as ``[piece, shared]`` segments and puts them in the page as text, never
as markup.
"""

from __future__ import annotations

import re
from functools import lru_cache

from stages.lib.documents.text import bm25_tokens, jieba_segmenter

# The words of English text as bm25_tokens reads them (it lower-cases first; this keeps the original's positions).
_WORD = re.compile(r"[A-Za-z0-9]+(?:'[A-Za-z]+)?")


def question_terms(question: str, language: str) -> frozenset[str]:
    """What BM25 searches for: the question's words, less stop words and punctuation."""
    return frozenset(bm25_tokens(question, language))


@lru_cache(maxsize=8192)  # a chunk shown again (in another column, for another question) is cut once
def _word_spans(text: str, language: str) -> tuple[tuple[int, int, str], ...]:
    if language == "zh":
        # Search mode yields a long word and the words inside it, overlapping: each is marked on its own.
        return tuple((start, end, word.lower()) for word, start, end in jieba_segmenter().tokenize(text, mode="search"))
    return tuple((m.start(), m.end(), m.group().lower()) for m in _WORD.finditer(text))


def shared_segments(text: str, terms: frozenset[str], language: str) -> list[tuple[str, bool]]:
    """``text`` as consecutive ``(piece, shared)`` pieces; ``shared`` marks a word that is one of ``terms``."""
    marked = [False] * len(text)
    if terms:
        for start, end, word in _word_spans(text, language):
            if word in terms:
                marked[start:end] = [True] * (end - start)
    segments: list[tuple[str, bool]] = []
    start = 0
    for i in range(1, len(text) + 1):
        if i == len(text) or marked[i] != marked[start]:
            segments.append((text[start:i], marked[start]))
            start = i
    return segments
