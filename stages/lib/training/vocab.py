"""Tokenizer coverage and vocabulary extension.

An English word-piece vocabulary (MiniLM, BGE-en) maps most Chinese
characters to ``[UNK]``: the model cannot tell them apart, whatever the
training. Adding the missing pre-tokens as new tokens and resizing the
embedding matrix lets fine-tuning learn them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Coverage:
    tokens: int
    unknown: int
    missing: Counter  # pre-token -> occurrences that became [UNK]

    @property
    def unknown_rate(self) -> float:
        return self.unknown / self.tokens if self.tokens else 0.0


def measure_coverage(tokenizer, texts: Iterable[str]) -> Coverage:
    """Share of tokens that are [UNK], and which pre-tokens (words/characters) caused them.

    Each distinct pre-token is tokenized once: a corpus of thousands of documents
    has millions of pre-tokens but only tens of thousands of distinct ones.
    """
    unk_id = tokenizer.unk_token_id
    missing: Counter[str] = Counter()
    if unk_id is None:  # byte-level BPE and similar: nothing is ever unknown
        total = sum(len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in texts)
        return Coverage(total, 0, missing)
    backend = tokenizer.backend_tokenizer
    pieces: Counter[str] = Counter()
    for text in texts:
        normalized = backend.normalizer.normalize_str(text) if backend.normalizer else text
        pieces.update(piece for piece, _ in backend.pre_tokenizer.pre_tokenize_str(normalized))
    distinct = list(pieces)
    total = unknown = 0
    encoded = tokenizer(distinct, add_special_tokens=False)["input_ids"] if distinct else []
    for piece, ids in zip(distinct, encoded, strict=True):
        occurrences = pieces[piece]
        total += len(ids) * occurrences
        n_unknown = sum(1 for i in ids if i == unk_id)
        if n_unknown:
            unknown += n_unknown * occurrences
            missing[piece] += occurrences
    return Coverage(total, unknown, missing)


def extend_vocabulary(model, pieces: list[str]) -> int:
    """Add ``pieces`` as tokens to a SentenceTransformer and resize its embeddings; return how many were added."""
    tokenizer = model.tokenizer
    added = tokenizer.add_tokens(sorted(pieces))
    if added:
        transformer = model[0].auto_model
        # mean_resizing initialises new rows from the distribution of the old
        # ones, so new tokens start as plausible, not random, vectors.
        transformer.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    return added
