"""One question's search view: the top k of base, fine-tuned, BM25 and hybrid, as the page shows them.

The rankings are ``Retrievers.rank`` (the prompts, precision and fusion ``evaluate`` used), over the part of
the question the models read: a question longer than ``model.max_seq_length`` tokens (query prompt and
special tokens included) is cut there for every retriever, and the view says so. Each result carries its
rank, score, section path and text as ``[piece, shared]`` segments (the words it shares with the question,
as BM25 sees words); when the question is a known one, its labelled chunks are marked in every column, with
the rank at which each retriever first found one (looked for in the top ``DEPTH``, as ``evaluate`` ranks).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from stages.lib.documents.chunking import Chunk
from stages.lib.retrieval.one_query import QUERY_ID, Retrievers
from stages.lib.ui.highlight import question_terms, shared_segments
from stages.lib.ui.known_questions import KnownQuestion, QuestionSet

COLUMNS = {"base": "base model", "finetuned": "fine-tuned", "bm25": "BM25", "hybrid": "hybrid"}
DEFAULT_K, MAX_K = 5, 50
DEPTH = 100  # ranks looked at for the first labelled chunk, as the evaluation's rankings
MAX_QUESTION_CHARS = 100_000  # above this a question is refused, not cut: nobody types it, and tokenizing it costs


class BadQuestion(ValueError):
    """A question the page cannot search; the message says why and what to do."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status  # the HTTP status that fits: 400, or 413 for a question too long to accept


@dataclass(frozen=True)
class Corpus:
    chunks: dict[str, Chunk]
    language: str  # the corpus's, as BM25 decided it: the language its words are cut in


def check_question(text: object, k: object) -> tuple[str, int]:
    if text is not None and not isinstance(text, str):
        raise BadQuestion(f'The question must be text, not {type(text).__name__}: send {{"q": "<question>", "k": 5}}.')
    if not text or not text.strip():
        raise BadQuestion("The question is empty: type a question, or pick one of the known questions.")
    if len(text) > MAX_QUESTION_CHARS:
        raise BadQuestion(f"The question is {len(text):,} characters; at most {MAX_QUESTION_CHARS:,} are accepted (the "
                          "models read far fewer, see model.max_seq_length). Paste a shorter passage.", 413)
    if isinstance(k, str) and k.strip().isdigit():
        k = int(k)
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
        raise BadQuestion(f"k is {k!r}: show between 1 and {MAX_K} results per retriever.")
    return text, k


def search_view(retrievers: Retrievers, corpus: Corpus, text: str, k: int,
                known: tuple[QuestionSet, KnownQuestion] | None, fusion: str = "") -> dict:
    """The view of ``text`` (a known question's when ``known``); ``fusion`` says how the hybrid fuses, and why."""
    started = time.perf_counter()
    window = retrievers.window(text)
    question = window.text
    rankings = retrievers.rank(question, max(k, DEPTH))
    terms = question_terms(question, corpus.language)
    relevant = set(known[1].relevant) if known else set()
    columns = []
    for name, title in COLUMNS.items():
        ids, scores = rankings[name].get(QUERY_ID, []), rankings[name].scores.get(QUERY_ID, [])
        first = next((rank for rank, cid in enumerate(ids, start=1) if cid in relevant), None)
        columns.append({
            "retriever": name, "title": title, "first_labelled_rank": first, "depth": min(DEPTH, len(corpus.chunks)),
            "results": [_result(corpus, rank, cid, score, cid in relevant, terms)
                        for rank, (cid, score) in enumerate(zip(ids[:k], scores[:k], strict=True), start=1)],
            "note": ("BM25 found no chunk that shares a word with the question." if name == "bm25" and not ids else None),
        })
    view = {
        "question": question, "k": k, "columns": columns, "shared_terms": sorted(terms),
        "fusion": fusion or retrievers.fusion.describe(),
        "prompts": {"query": retrievers.prompts.query, "document": retrievers.prompts.document},
        "cut": None, "known": None,
    }
    if window.cut:
        view["cut"] = {"chars": len(text), "chars_read": len(question), "tokens": window.tokens,
                       "max_seq_length": window.max_seq_length,
                       "message": f"The question is {len(text):,} characters ({window.tokens:,} tokens with the query "
                                  f"prompt); the models read at most {window.max_seq_length} tokens (model.max_seq_length), "
                                  f"so every retriever searched its first {len(question):,} characters."}
    if known:
        chosen, question_row = known
        view["known"] = {"set": chosen.id, "set_title": chosen.title, "file": chosen.file, **question_row.to_json(),
                         "labelled": [_chunk_json(corpus.chunks[cid], terms, corpus.language)
                                      for cid in question_row.relevant if cid in corpus.chunks]}
    view["elapsed_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return view


def _result(corpus: Corpus, rank: int, chunk_id: str, score: float, labelled: bool, terms: frozenset[str]) -> dict:
    return {"rank": rank, "score": round(float(score), 4), "labelled": labelled,
            **_chunk_json(corpus.chunks[chunk_id], terms, corpus.language)}


def _chunk_json(chunk: Chunk, terms: frozenset[str], language: str) -> dict:
    return {"id": chunk.id, "section": chunk.section, "source": chunk.source,
            "segments": [[piece, shared] for piece, shared in shared_segments(chunk.text, terms, language)]}
