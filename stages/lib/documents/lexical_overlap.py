"""How lexical a question is: the share of its words that its labelled passage also holds.

A question that reuses its passage's words is easy for BM25 and says little about a model that must match
meaning; a person asking about their own situation uses their own words. The words are the ones BM25 sees
(``bm25_tokens``: jieba words for Chinese, lower-cased words for English, stopwords out), counted once each.
The bands split a question set into parts that can be compared with questions people wrote: the bundled golden
sets' Chinese questions share 0.34-0.50 of their words with their passages on average, the offline generator's
0.80-0.83 (``python -m benchmarks.lexical_overlap``).
"""

from __future__ import annotations

from collections.abc import Iterable

from stages.lib.documents.text import bm25_tokens

# (name, lower bound inclusive, upper bound exclusive) of the word overlap.
BANDS = (("low", 0.0, 0.5), ("medium", 0.5, 0.75), ("high", 0.75, float("inf")))


def word_overlap(query: str, passages: Iterable[str], language: str) -> float:
    """Share of the query's distinct words found in any of ``passages`` (0 for a query with no words)."""
    words = set(bm25_tokens(query, language))
    if not words:
        return 0.0
    found: set[str] = set()
    for passage in passages:
        found |= words.intersection(bm25_tokens(passage, language))
    return len(found) / len(words)


def band_of(overlap: float) -> str:
    return next(name for name, low, high in BANDS if low <= overlap < high)


def mean_word_overlap(dataset, language: str) -> float:
    """The mean ``word_overlap`` of a seed-format dataset's questions with their relevant passages (0 when empty)."""
    values = [word_overlap(text, [dataset.corpus[cid] for cid in dataset.relevant_docs[qid]], language)
              for qid, text in dataset.queries.items()]
    return round(sum(values) / len(values), 4) if values else 0.0
