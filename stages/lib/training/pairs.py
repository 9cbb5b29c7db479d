"""Training pairs from a QA dataset: ICT masking, the budgeted sample (the target corpus's own pairs and the extra
training documents' pairs, each with its own budget), and the duplicate-free batch check."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from stages.lib.common.errors import UserError
from stages.lib.common.files import write_jsonl
from stages.lib.questions.qa_dataset import QADataset

# What the train stage trained on, one pair per line (its columns: anchor, positive, and negative when mined), in
# its order: for reading, and for the seed_recipe baseline, which trains on exactly these pairs.
TRAINING_PAIRS_FILE = Path("data/training_pairs.jsonl")


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


def _sample_indices(indices: list[int], anchors: list[str], positives: list[str], limit: int, seed: int) -> list[int]:
    """At most ``limit`` of ``indices`` (0: all), ranked by a hash of each pair's content: the sample does not
    depend on the order in which pairs were generated, and growing the budget only adds pairs."""
    if not limit or len(indices) <= limit:
        return indices
    return sorted(indices, key=lambda i: _rank_key(seed, anchors[i], positives[i]))[:limit]


@dataclass(frozen=True)
class BudgetedPairs:
    anchors: list[str]
    positives: list[str]
    own: int  # pairs whose passage is a chunk of the target corpus
    extra: int  # pairs from the extra training documents
    own_available: int
    extra_available: int


def budgeted_pairs(dataset: QADataset, target_ids: Collection[str], mask_probability: float, seed: int,
                   max_own: int, max_extra: int) -> BudgetedPairs:
    """The pairs a run trains on: at most ``max_own`` of the target corpus's own, plus at most ``max_extra`` of the
    extra training documents' (each 0: all), two seeded samples merged in their original order.

    Two budgets, not one sample of the union: related documents can hold ten times the target's text, and one
    uniform sample then fills the budget mostly with them (the Securities Law with six related laws kept about 40
    of its own pairs in 384, and golden val fell; docs/experiments.md, "How much data do I need?"). The target's own pairs are
    the closest to what users will ask, so extra text is added to them, never swapped for them.
    """
    anchors, positives = training_pairs(dataset, mask_probability, seed)
    own_flags = [chunk_id in target_ids for _, _, chunk_id in dataset.pairs()]
    own = [i for i, is_own in enumerate(own_flags) if is_own]
    extra = [i for i, is_own in enumerate(own_flags) if not is_own]
    kept_own = _sample_indices(own, anchors, positives, max_own, seed)
    kept_extra = _sample_indices(extra, anchors, positives, max_extra, seed)
    keep = sorted(kept_own + kept_extra)
    return BudgetedPairs([anchors[i] for i in keep], [positives[i] for i in keep], len(kept_own), len(kept_extra),
                         len(own), len(extra))


def write_training_pairs(columns: dict[str, list[str]], path: Path = TRAINING_PAIRS_FILE) -> None:
    names = list(columns)
    write_jsonl(path, (dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)))


def read_training_pairs(path: Path = TRAINING_PAIRS_FILE) -> tuple[list[str], list[str]]:
    """(anchors, positives) of the train stage's pairs file."""
    if not path.is_file():
        raise UserError(f"{path} is missing: it is written by the train stage; run `dvc repro train` first.")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [row["anchor"] for row in rows], [row["positive"] for row in rows]
