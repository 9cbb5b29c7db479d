"""Hard negatives for training: passages BM25 ranks near the top for a query that are not its answer.

In-batch negatives are random passages, mostly easy to tell apart. A hard negative shares the
query's words but answers something else, which is what the model must learn to see past. BM25
is the miner, not the base model: the bundled base model sees two thirds of Chinese text as
[UNK], so its own neighbours are close to random.

A mined passage may in fact answer the query (the generator wrote one question per chunk; a
neighbouring chunk often continues the same article). Three guards keep such false negatives out:
the positive's neighbours in its document are never negatives, ranks above ``rank_min`` are
skipped, and a candidate must score below ``margin`` times the positive's own BM25 score.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from stages.lib.chunking import Chunk
from stages.lib.retrieval import BM25Index


@dataclass(frozen=True)
class MiningWindow:
    rank_min: int  # the first BM25 rank a negative may come from (1 = the top)
    rank_max: int  # the last
    margin: float  # a negative scores at most this share of the positive's BM25 score


def document_neighbours(chunks: Sequence[Chunk], reach: int = 1) -> dict[str, set[str]]:
    """Chunk id -> the ids of chunks within ``reach`` positions of it in the same document (itself included)."""
    by_place = {(c.source, c.position): c.id for c in chunks}
    return {
        c.id: {by_place[(c.source, p)] for p in range(c.position - reach, c.position + reach + 1) if (c.source, p) in by_place}
        for c in chunks
    }


def _hashed_index(n: int, seed: int, query: str) -> int:
    """A seeded position in ``range(n)``, stable for a given query whatever else is mined."""
    digest = hashlib.sha256(f"{seed}:{query}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % n


def mine_bm25_negatives(queries: Sequence[str], positives: Sequence[set[str]], corpus: dict[str, str],
                        neighbours: dict[str, set[str]], window: MiningWindow, seed: int,
                        desc: str | None = None) -> list[str]:
    """One negative chunk id per query, from ``corpus`` (the training chunks only).

    A query whose window holds no admissible candidate gets a seeded random chunk outside its
    positives' neighbourhood, so every training row has a negative.
    """
    index = BM25Index(corpus)
    keyed = {str(i): query for i, query in enumerate(queries)}
    ranking = index.rank(keyed, window.rank_max, desc=desc)
    all_ids = sorted(corpus)
    negatives = []
    for i, query in enumerate(queries):
        excluded = set().union(*(neighbours.get(cid, {cid}) for cid in positives[i]))
        ids, scores = ranking[str(i)], ranking.scores[str(i)]
        positive_scores = [s for cid, s in zip(ids, scores, strict=True) if cid in positives[i]]
        ceiling = window.margin * max(positive_scores) if positive_scores else float("inf")
        candidates = [cid for rank, (cid, score) in enumerate(zip(ids, scores, strict=True), start=1)
                      if rank >= window.rank_min and cid not in excluded and score <= ceiling]
        if candidates:
            negatives.append(candidates[_hashed_index(len(candidates), seed, query)])
        else:
            negatives.append(_any_other(all_ids, excluded, seed, query))
    return negatives


def _any_other(ids: list[str], excluded: set[str], seed: int, query: str) -> str:
    """A seeded chunk outside ``excluded``, found by probing from a hashed start (not a scan of the corpus)."""
    start = _hashed_index(len(ids), seed, query)
    for step in range(len(ids)):
        cid = ids[(start + step) % len(ids)]
        if cid not in excluded:
            return cid
    return ids[start]
