"""The chunks shown for a question: the pool a person judges (TREC-style pooling).

The pool is the union of the top ``labelling.pool_depth`` of every retriever (base, fine-tuned, BM25, hybrid), so a
chunk any of them would put in front of a user gets judged. It is shown in an order that favours none of them:
sorted by a hash of (the normalised question, the chunk id), the same on every reload and in every tab, and
independent of which retriever found a chunk or at what rank (which is never sent to the page). Chunks labelled
for the question earlier that are no longer in the pool (the models or the chunking changed) are added back, so
a relabel shows them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

from stages.lib.questions.qa_dataset import normalize_query
from stages.lib.retrieval.rankers import Ranking


def pool_order(question: str, chunk_id: str) -> str:
    """The sort key of a chunk in the question's pool: a hash, so the order is stable and says nothing of rank."""
    return hashlib.sha256(f"pool\n{normalize_query(question)}\n{chunk_id}".encode()).hexdigest()


def pool_ids(rankings: Mapping[str, Ranking], query_key: str, depth: int, question: str, also: Iterable[str] = ()) -> list[str]:
    """The pooled chunk ids for ``question`` (ranked as ``query_key`` in each ranking), with ``also`` added."""
    pooled = set(also)
    for ranking in rankings.values():
        pooled.update(ranking.get(query_key, [])[:depth])
    return sorted(pooled, key=lambda chunk_id: pool_order(question, chunk_id))
