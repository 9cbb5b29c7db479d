"""Which other laws of the bundled database are related to the target laws: candidates for ``sample.extra_laws``.

Related means two things, both checkable: the database files the law under the same department of law
(``law_department``: 民法商法, 社会法, 经济法, ...), and its text is close to the targets' text by the
cosine of TF-IDF weighted character bigrams (Chinese has no spaces; bigrams need no segmenter and weigh
shared legal terms such as 证券, 劳动者, 用人单位). Current versions only; the targets and any law in
``exclude`` never come back. One pass over the database's text: about 5 million characters.
"""

from __future__ import annotations

import math
import sqlite3
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from stages.lib.common.errors import UserError

CURRENT = "现行有效"


@dataclass(frozen=True)
class RelatedLaw:
    name: str
    department: str
    similarity: float  # TF-IDF character-bigram cosine to the targets' text, in [0, 1]
    characters: int


def _bigrams(text: str) -> Counter[str]:
    characters = [c for c in text if not c.isspace()]
    return Counter(a + b for a, b in zip(characters, characters[1:], strict=False))


def _weighted(counts: Counter[str], idf: dict[str, float]) -> dict[str, float]:
    vector = {gram: (1 + math.log(n)) * idf[gram] for gram, n in counts.items()}
    norm = math.sqrt(sum(v * v for v in vector.values())) or 1.0
    return {gram: v / norm for gram, v in vector.items()}


def related_laws(database: Path, targets: list[str], limit: int, exclude: tuple[str, ...] = (),
                 same_department: bool = True) -> list[RelatedLaw]:
    """The ``limit`` laws most similar to ``targets`` (in their departments unless ``same_department`` is False)."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
        rows = connection.execute(
            "SELECT l.law_name, l.law_department, group_concat(a.article_text, '') FROM laws l "
            "JOIN articles a ON a.law_id = l.law_id WHERE l.status = ? GROUP BY l.law_id ORDER BY l.law_name",
            (CURRENT,)).fetchall()
    texts = {name: (department or "", text or "") for name, department, text in rows}
    missing = [name for name in targets if name not in texts]
    if missing:
        raise UserError(f"{missing} are not current laws of {database.name}: related laws are found for the names "
                        "in 'sample.laws' exactly as the database writes them.")
    counts = {name: _bigrams(text) for name, (_, text) in texts.items()}
    document_frequency: Counter[str] = Counter()
    for grams in counts.values():
        document_frequency.update(grams.keys())
    idf = {gram: math.log(len(counts) / df) for gram, df in document_frequency.items()}
    target_counts: Counter[str] = Counter()
    for name in targets:
        target_counts.update(counts[name])
    target = _weighted(target_counts, idf)
    departments = {texts[name][0] for name in targets}
    candidates = []
    for name, (department, text) in texts.items():
        if name in targets or name in exclude or (same_department and department not in departments):
            continue
        vector = _weighted(counts[name], idf)
        similarity = sum(weight * target.get(gram, 0.0) for gram, weight in vector.items())
        candidates.append(RelatedLaw(name, department, round(similarity, 4), len(text)))
    candidates.sort(key=lambda law: (-law.similarity, law.name))
    return candidates[:limit]
