"""Hard negatives for training: passages ranked near the top for a query that are not its answer.

In-batch negatives are random passages, mostly easy to tell apart. A hard negative shares the
query's words or meaning but answers something else, which is what the model must learn to see
past. Two miners (``train.hard_negative_miner``): BM25 over the training chunks, or the base model
itself through sentence-transformers' ``mine_hard_negatives`` (a base that reads the language, such
as multilingual-e5; not MiniLM, which sees two thirds of Chinese text as [UNK]).

A mined passage may in fact answer the query (the generator wrote one question per chunk; a
neighbouring chunk often continues the same article). Guards keep such false negatives out: the
positive's neighbours in its document are never negatives; for BM25, ranks above ``rank_min`` are
skipped and a candidate must score below ``margin`` times the positive's own score; for the model,
a candidate must score below the positive by a relative margin (NV-Retriever's TopK-PercPos).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from stages.lib.documents.chunking import Chunk
from stages.lib.retrieval.rankers import BM25Index


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


def mine_model_negatives(model, anchors: Sequence[str], positive_ids: Sequence[str], corpus: dict[str, str],
                         neighbours: dict[str, set[str]], rank_max: int, relative_margin: float, seed: int,
                         query_prompt: str, document_prompt: str, batch_size: int = 64, precision: str = "fp32") -> list[str]:
    """One negative chunk id per (anchor, positive) pair, mined by ``model`` from ``corpus`` (the training chunks).

    ``mine_hard_negatives`` drops a pair it finds no negative for and cannot skip document neighbours, so it
    is asked for a few candidates per pair; the best one outside the positive's neighbourhood is taken, and
    a pair with none gets a seeded chunk outside it, as with BM25.
    """
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives

    from stages.lib.models.hardware import autocast

    candidates_per_pair = 4
    ids_by_text: dict[str, str] = {}
    for cid, text in corpus.items():
        ids_by_text.setdefault(text, cid)
    # Encoded in the run's precision (bf16 where the hardware computes it natively): the margins are relative.
    with autocast(str(model.device).split(":")[0], precision):
        mined = mine_hard_negatives(
            Dataset.from_dict({"anchor": list(anchors), "positive": [corpus[cid] for cid in positive_ids]}), model,
            corpus=list(corpus.values()), range_max=min(rank_max, len(corpus)), relative_margin=relative_margin,
            num_negatives=min(candidates_per_pair, max(1, len(corpus) - 1)), sampling_strategy="top",
            query_prompt=query_prompt, corpus_prompt=document_prompt, batch_size=batch_size, output_format="triplet",
            verbose=False,
        )
    found: dict[tuple[str, str], list[str]] = {}
    for row in mined:  # best first within each pair
        found.setdefault((row["anchor"], ids_by_text[row["positive"]]), []).append(ids_by_text[row["negative"]])
    all_ids = sorted(corpus)
    negatives = []
    for anchor, positive in zip(anchors, positive_ids, strict=True):
        excluded = neighbours.get(positive, {positive})
        admissible = [cid for cid in found.get((anchor, positive), []) if cid not in excluded]
        negatives.append(admissible[0] if admissible else _any_other(all_ids, excluded, seed, anchor))
    return negatives
