"""Seeded, deterministic samples for evaluation budgets: capped query sets and the llama-index sub-corpus.

Membership depends only on each id's hash (never on file order or a random
generator's state), so every retriever sees the same queries, a rerun picks the
same ones, and raising a cap only adds queries to the sample.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from stages.lib.questions.qa_dataset import QADataset

QUERY_SALT = "evaluate.max_queries"
CHECK_SALT = "evaluate.llamaindex_check"


def seeded_order(ids: Iterable[str], salt: str) -> list[str]:
    """``ids`` in a fixed pseudo-random order: by sha256 of salt and id."""
    return sorted(ids, key=lambda i: hashlib.sha256(f"{salt}\0{i}".encode()).digest())


def seeded_sample(ids: Iterable[str], size: int, salt: str) -> list[str]:
    """At most ``size`` of ``ids`` (all of them when ``size`` is 0), in their original order."""
    ids = list(ids)
    if size == 0 or size >= len(ids):
        return ids
    chosen = set(seeded_order(ids, salt)[:size])
    return [i for i in ids if i in chosen]


def cap_queries(dataset: QADataset, max_queries: int, salt: str = QUERY_SALT) -> QADataset:
    """The dataset restricted to a seeded sample of at most ``max_queries`` queries (0: all); same corpus."""
    kept = seeded_sample(dataset.queries, max_queries, salt)
    if len(kept) == len(dataset.queries):
        return dataset
    return QADataset(
        queries={q: dataset.queries[q] for q in kept},
        corpus=dataset.corpus,
        relevant_docs={q: dataset.relevant_docs[q] for q in kept},
        query_styles={q: dataset.query_styles[q] for q in kept if q in dataset.query_styles},
    )


@dataclass(frozen=True)
class CheckSample:
    """Queries and the sub-corpus they are searched in."""

    query_ids: list[str]
    corpus_ids: list[str]


def check_sample(dataset: QADataset, n_queries: int, corpus_size: int, salt: str = CHECK_SALT) -> CheckSample:
    """A seeded sample of queries and a sub-corpus: their relevant chunks, then other chunks up to ``corpus_size``.

    The relevant chunks are always in (the sub-corpus may exceed the cap to hold them),
    so a query can be found at all; the others are distractors drawn by hash.
    """
    query_ids = seeded_sample(dataset.queries, n_queries, f"{salt}.queries")
    relevant = {cid for qid in query_ids for cid in dataset.relevant_docs[qid] if cid in dataset.corpus}
    others = seeded_order((cid for cid in dataset.corpus if cid not in relevant), f"{salt}.corpus")
    chosen = relevant | set(others[:max(0, corpus_size - len(relevant))])
    return CheckSample(query_ids, [cid for cid in dataset.corpus if cid in chosen])


def bounded_dataset(dataset: QADataset, n_queries: int, corpus_size: int, salt: str) -> QADataset:
    """``dataset`` cut to a ``check_sample``: e.g. validation during training that costs seconds at any corpus size.

    Below both bounds it is the whole dataset.
    """
    sample = check_sample(dataset, n_queries, corpus_size, salt)
    return QADataset(
        queries={q: dataset.queries[q] for q in sample.query_ids},
        corpus={c: dataset.corpus[c] for c in sample.corpus_ids},
        relevant_docs={q: dataset.relevant_docs[q] for q in sample.query_ids},
        query_styles={q: dataset.query_styles[q] for q in sample.query_ids if q in dataset.query_styles},
    )
