"""Round-trip filtering of generated training questions (InPars, Promptagator): a question is kept only if a
ranker, searching the training passages, puts the chunk it was written from among its top ``k``.

A generator (templates, an LLM, llama-index) writes some questions its chunk does not answer, or that any
of a dozen chunks answers as well: vague topics, keyword lists of common words, an LLM's preamble. Such a
pair teaches the model noise. The round trip is a cheap check that the question points back to its chunk.
It runs where the training pairs are built, so it applies to every generator, and before the
``train.max_pairs`` and ``train.max_extra_pairs`` samples, so the budgets are filled from the questions that survive.

``train.round_trip_filter`` picks the ranker: ``bm25`` (the project's BM25 with jieba for Chinese) or
``base`` (the base model with its query/document prompts, in the run's precision). The searched corpus is
the train split's chunks only: a val or test chunk never takes part in training, not even as a rival.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from stages.lib.common.errors import UserError
from stages.lib.documents.chunking import Chunk
from stages.lib.models.prompts import NO_PROMPTS, Prompts
from stages.lib.questions.qa_dataset import QADataset
from stages.lib.retrieval.rankers import BM25Index, Ranking, dense_rank

OFF = "none"


@dataclass(frozen=True)
class RoundTrip:
    dataset: QADataset  # the training questions that survived (all of them when the filter is off)
    ranker: str  # "none", "bm25" or "base"
    top_k: int
    kept: int  # questions the filter kept (0 when it is off: it judged none)
    dropped: int

    def describe(self) -> str:
        total = self.kept + self.dropped
        return (f"round-trip filter ({self.ranker}, top {self.top_k} of the training chunks): dropped "
                f"{self.dropped} of {total} training questions whose own chunk was not found, kept {self.kept}")


def training_passages(dataset: QADataset, chunks: Sequence[Chunk]) -> dict[str, str]:
    """Chunk id -> text of the training chunks: the corpus a training question is searched in.

    A question file's ``corpus`` holds every chunk of the target corpus (evaluation searches all of them), so
    the target's val and test chunks are left out by the chunk file's split; the chunks of extra training
    documents are in train.json's corpus only, all of them training material, so they stay.
    """
    held_out = {chunk.id for chunk in chunks if chunk.split != "train"}
    return {cid: text for cid, text in dataset.corpus.items() if cid not in held_out}


def found_in_top_k(relevant_docs: dict[str, list[str]], ranking: Ranking, top_k: int) -> set[str]:
    """The query ids with at least one of their relevant chunks among their first ``top_k`` results."""
    return {qid for qid, relevant in relevant_docs.items() if set(relevant).intersection(ranking.get(qid, [])[:top_k])}


def bm25_ranking(queries: dict[str, str], passages: dict[str, str], depth: int) -> Ranking:
    index = BM25Index(passages, desc="[train] round trip: BM25 index")
    return index.rank(queries, depth, desc="[train] round trip: BM25 search")


def model_ranking(model, queries: dict[str, str], passages: dict[str, str], depth: int, prompts: Prompts,
                  precision: str) -> Ranking:
    """Dense ranking by ``model`` as evaluation ranks: its prompts, the run's precision, unit-length fp32 vectors.

    One vector per passage and per query in memory (20,000 chunks x 384 dimensions: 30 MB), and queries are
    scored a block at a time with a partial sort, so memory and time grow linearly with the corpus.
    """
    from stages.lib.models.encoding import encode_in_precision
    from stages.lib.models.hardware import encoding_batch_size

    device = str(model.device).split(":")[0]
    batch_size = encoding_batch_size("auto", device)
    corpus_ids, query_ids = list(passages), list(queries)
    # prompt="" means no prompt at all; None would let the model choose its own default.
    doc_vectors = encode_in_precision(model, [passages[cid] for cid in corpus_ids], batch_size, device, precision,
                                      prompt=prompts.document)
    query_vectors = encode_in_precision(model, [queries[qid] for qid in query_ids], batch_size, device, precision,
                                        prompt=prompts.query)
    return dense_rank(query_ids, query_vectors, corpus_ids, doc_vectors, depth, desc="[train] round trip: dense search")


def round_trip_filter(dataset: QADataset, chunks: Sequence[Chunk], ranker: str, top_k: int, model=None,
                      prompts: Prompts = NO_PROMPTS, precision: str = "fp32") -> RoundTrip:
    """The training questions whose own chunk ``ranker`` finds in its top ``top_k`` over the train split's chunks.

    A question with several relevant chunks (one text written from several chunks) is kept when any of them is
    found. ``model`` (the base model, its vocabulary not yet extended) is needed for the ``base`` ranker only.
    The returned dataset keeps the whole ``corpus``; only ``queries``, ``relevant_docs`` and ``query_styles`` shrink.
    """
    if ranker == OFF:
        return RoundTrip(dataset, OFF, top_k, kept=0, dropped=0)
    passages = training_passages(dataset, chunks)
    if ranker == "bm25":
        ranking = bm25_ranking(dataset.queries, passages, top_k)
    elif ranker == "base":
        if model is None:
            raise ValueError("the base ranker needs the base model")
        ranking = model_ranking(model, dataset.queries, passages, top_k, prompts, precision)
    else:
        raise ValueError(f"unknown round-trip ranker {ranker!r}")
    kept = found_in_top_k(dataset.relevant_docs, ranking, top_k)
    surviving = QADataset(
        queries={qid: text for qid, text in dataset.queries.items() if qid in kept},
        corpus=dataset.corpus,
        relevant_docs={qid: docs for qid, docs in dataset.relevant_docs.items() if qid in kept},
        query_styles={qid: style for qid, style in dataset.query_styles.items() if qid in kept},
    )
    return RoundTrip(surviving, ranker, top_k, kept=len(surviving.queries),
                     dropped=len(dataset.queries) - len(surviving.queries))


def require_enough_pairs(result: RoundTrip, batch_size: int) -> None:
    """Stop with the knobs to turn when the filter left fewer training pairs than one batch."""
    pairs = sum(len(docs) for docs in result.dataset.relevant_docs.values())
    if result.ranker == OFF or pairs >= batch_size:
        return
    raise UserError(
        f"The round-trip filter (params.yaml key 'train.round_trip_filter': {result.ranker}) kept {result.kept} of "
        f"{result.kept + result.dropped} training questions ({pairs} pairs), fewer than one batch of "
        f"'train.batch_size' ({batch_size}): their own chunk was rarely in the {result.ranker} ranker's top "
        f"'train.round_trip_top_k' ({result.top_k}). Raise 'train.round_trip_top_k', try the other ranker, set "
        "'train.round_trip_filter' to none, or look at the questions (data/questions/train.json): most of them "
        "do not point back to their chunk."
    )
