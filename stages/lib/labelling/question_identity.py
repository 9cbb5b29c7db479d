"""A labelled question's id and split, both from its normalised text alone.

The same question typed twice, imported from two files or labelled from two tabs is one row
(``lab-`` + the first 12 hex digits of the sha256 of ``normalize_query(text)``), and it lands in the same split
whatever the order of labelling: ``val`` when a seeded uniform value drawn from that text is below
``labelling.val_fraction``, else ``test`` (the rule of ``documents.chunking.assign_split``, per question).
"""

from __future__ import annotations

import hashlib

from stages.lib.questions.qa_dataset import normalize_query

ID_PREFIX = "lab-"


def question_id(text: str) -> str:
    return ID_PREFIX + hashlib.sha256(normalize_query(text).encode("utf-8")).hexdigest()[:12]


def seeded_unit(seed: int, key: str) -> float:
    """A value in [0, 1) from sha256 of seed and key: uniform over keys, the same on every machine and run."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def question_split(text: str, seed: int, val_fraction: float) -> str:
    return "val" if seeded_unit(seed, normalize_query(text)) < val_fraction else "test"
