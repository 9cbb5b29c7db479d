"""Training pairs from a QA dataset: ICT masking, a deterministic sample, and the duplicate-free batch check."""

from __future__ import annotations

import hashlib
import random

from stages.lib.questions.qa_dataset import QADataset


def mask_query_in_passage(query: str, passage: str) -> str:
    """Inverse Cloze Task masking: drop the query sentence from its passage, if it is there verbatim."""
    if len(query) < 8 or query not in passage:
        return passage
    masked = passage.replace(query, "", 1)
    return "\n".join(line for line in masked.split("\n") if line.strip()) or passage


def training_pairs(dataset: QADataset, mask_probability: float, seed: int) -> tuple[list[str], list[str]]:
    """(anchors, positives) with ICT masking applied to ``sentence`` queries, deterministically."""
    rng = random.Random(seed)
    anchors, positives = [], []
    for qid, query, chunk_id in dataset.pairs():
        passage = dataset.corpus[chunk_id]
        if dataset.query_styles.get(qid) == "sentence" and rng.random() < mask_probability:
            passage = mask_query_in_passage(query, passage)
        anchors.append(query)
        positives.append(passage)
    return anchors, positives


def duplicate_free_shortfall(columns: dict[str, list[str]], batch_size: int) -> tuple[int, int] | None:
    """(distinct passages, passages one duplicate-free batch needs) when the batches cannot be filled, else None.

    A duplicate-free batch holds ``batch_size`` rows with no text twice, so it needs ``batch_size`` different
    passages per passage column (positive, negative). With fewer, the sampler yields no full batch at all and
    training would silently take zero steps.
    """
    passage_columns = [name for name in columns if name != "anchor"]
    distinct = len(set().union(*(columns[name] for name in passage_columns)))
    needed = batch_size * len(passage_columns)
    return (distinct, needed) if distinct < needed else None


def _rank_key(seed: int, *parts: str) -> str:
    return hashlib.sha256(":".join((str(seed), *parts)).encode()).hexdigest()


def sample_pairs(anchors: list[str], positives: list[str], limit: int, seed: int) -> tuple[list[str], list[str]]:
    """At most ``limit`` pairs (0: all), a seeded sample that keeps the original order.

    Ranked by a hash of each pair's content, so the sample does not depend on the
    order in which pairs were generated, and growing the budget only adds pairs.
    """
    if not limit or len(anchors) <= limit:
        return anchors, positives
    ranked = sorted(range(len(anchors)), key=lambda i: _rank_key(seed, anchors[i], positives[i]))
    keep = sorted(ranked[:limit])
    return [anchors[i] for i in keep], [positives[i] for i in keep]


