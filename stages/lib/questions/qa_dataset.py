"""The seed-compatible question dataset: ``queries``, ``corpus``, ``relevant_docs``.

``query_styles`` is an extra key (readers that only know the three seed keys
ignore it) so metrics can be broken down by how a query was made.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from stages.lib.common.errors import UserError
from stages.lib.common.files import read_json, write_json


@dataclass(frozen=True)
class GeneratedQuery:
    text: str
    style: str
    chunk_id: str


@dataclass
class QADataset:
    queries: dict[str, str] = field(default_factory=dict)
    corpus: dict[str, str] = field(default_factory=dict)
    relevant_docs: dict[str, list[str]] = field(default_factory=dict)
    query_styles: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "queries": self.queries,
            "corpus": self.corpus,
            "relevant_docs": self.relevant_docs,
            "query_styles": self.query_styles,
        }

    def save(self, path: Path) -> None:
        write_json(path, self.to_json())

    @classmethod
    def load(cls, path: Path) -> QADataset:
        try:
            raw = read_json(path)
        except FileNotFoundError:
            raise UserError(f"{path} is missing: run `dvc repro` so the questions stage writes it.") from None
        missing = [key for key in ("queries", "corpus", "relevant_docs") if key not in raw]
        if missing:
            raise UserError(f"{path} lacks the key(s) {missing}: it is not a question dataset in the seed format.")
        return cls(raw["queries"], raw["corpus"], raw["relevant_docs"], raw.get("query_styles", {}))

    def pairs(self) -> list[tuple[str, str, str]]:
        """(query id, query text, positive chunk id) for every relevant passage."""
        return [(qid, self.queries[qid], cid) for qid in self.queries for cid in self.relevant_docs[qid]]


def normalize_query(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().strip("。.；;，,").lower()


def query_id(text: str) -> str:
    return "q" + hashlib.sha256(normalize_query(text).encode()).hexdigest()[:15]


def build_dataset(generated: list[GeneratedQuery], corpus: dict[str, str]) -> QADataset:
    """Merge generated queries: one id per distinct query text, all its chunks relevant."""
    dataset = QADataset(corpus=dict(corpus))
    for item in generated:
        qid = query_id(item.text)
        if qid not in dataset.queries:
            dataset.queries[qid] = item.text
            dataset.relevant_docs[qid] = []
            dataset.query_styles[qid] = item.style
        if item.chunk_id not in dataset.relevant_docs[qid]:
            dataset.relevant_docs[qid].append(item.chunk_id)
    return dataset
