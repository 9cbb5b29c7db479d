"""Golden question sets: questions written by people, labelled so the labels survive re-chunking.

A golden set is a JSONL file, one question per line::

    {"id": "sl-zh-c-001", "query": "...", "language": "zh", "style": "colloquial", "split": "test",
     "articles": ["第二条"], "source": "中华人民共和国证券法.pdf"}

Labels name what answers the question, not chunk ids (which change with every
chunking setting):

* ``articles``: article numbers as they start a line of the document
  (``第四十四条``, ``Article 44``, ``Section 12``); every chunk holding part of
  the article is relevant, from the chunk where it starts up to the one where
  the next article starts.
* ``evidence``: short verbatim snippets of the answer (whitespace is ignored);
  every chunk that contains one is relevant.

``source`` (optional) restricts the labels to one document of the corpus (its
path relative to the documents folder). ``split`` is ``val`` (may choose knobs)
or ``test`` (only reported). A label that matches no chunk stops the stage with
the file, line and label named: a golden question silently scored as a miss
would be worse than none.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from stages.lib.common.errors import UserError
from stages.lib.documents.chunking import Chunk
from stages.lib.questions.qa_dataset import QADataset

SPLITS = ("val", "test")
REQUIRED = ("id", "query", "split")
# An article or section heading at the start of a line, followed by its text.
ARTICLE_HEAD = re.compile(
    r"^(第[一二三四五六七八九十百千零〇两\d]+条|(?:Article|Section|Art\.|§)\s*\d+[A-Za-z]?)(?=[\s:.：]|$)",
    re.MULTILINE,
)


@dataclass(frozen=True)
class GoldenQuestion:
    id: str
    query: str
    split: str
    language: str
    style: str
    articles: tuple[str, ...]
    evidence: tuple[str, ...]
    source: str | None
    line: int  # in its file, for error messages


@dataclass
class GoldenSet:
    path: Path
    questions: list[GoldenQuestion] = field(default_factory=list)

    def languages(self) -> list[str]:
        return sorted({q.language for q in self.questions})


def _fail(path: Path, line: int, message: str) -> UserError:
    return UserError(f"{path}, line {line}: {message} (see the golden-set format in the README).")


def load_golden(path: Path) -> GoldenSet:
    """Read and validate a golden-set file."""
    if not path.is_file():
        raise UserError(
            f"params.yaml key 'evaluate.golden_sets' lists {str(path)!r}, which does not exist. "
            "Fix the path, or remove it from the list."
        )
    golden = GoldenSet(path)
    seen: set[str] = set()
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as error:
            raise _fail(path, number, f"not valid JSON ({error.msg})") from None
        if not isinstance(row, dict):
            raise _fail(path, number, "each line must be a JSON object")
        missing = [key for key in REQUIRED if not isinstance(row.get(key), str) or not row[key].strip()]
        if missing:
            raise _fail(path, number, f"missing or empty key(s) {missing}")
        if row["split"] not in SPLITS:
            raise _fail(path, number, f"key 'split' is {row['split']!r}; use 'val' (may tune knobs) or 'test' (only reported)")
        if row["id"] in seen:
            raise _fail(path, number, f"id {row['id']!r} is used twice")
        seen.add(row["id"])
        articles, evidence = _string_list(row, "articles", path, number), _string_list(row, "evidence", path, number)
        if not articles and not evidence:
            raise _fail(path, number, "give the answer's 'articles' (e.g. [\"第四十四条\"]) or 'evidence' (verbatim snippets)")
        golden.questions.append(GoldenQuestion(
            id=row["id"], query=row["query"].strip(), split=row["split"],
            language=row.get("language") or _guess_language(row["query"]), style=row.get("style") or "golden",
            articles=articles, evidence=evidence, source=row.get("source"), line=number,
        ))
    if not golden.questions:
        raise UserError(f"{path} holds no questions. Add some, or remove it from 'evaluate.golden_sets'.")
    return golden


def _string_list(row: dict, key: str, path: Path, line: int) -> tuple[str, ...]:
    value = row.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise _fail(path, line, f"key {key!r} must be a list of non-empty strings")
    return tuple(v.strip() for v in value)


def _guess_language(text: str) -> str:
    from stages.lib.documents.text import detect_language

    return detect_language(text)


def article_chunks(chunks: list[Chunk]) -> dict[tuple[str, str], set[str]]:
    """(source, article) -> ids of the chunks holding part of it, from each document's chunks in order."""
    by_source: dict[str, list[Chunk]] = defaultdict(list)
    for chunk in chunks:
        by_source[chunk.source].append(chunk)
    covered: dict[tuple[str, str], set[str]] = defaultdict(set)
    for source, ordered in by_source.items():
        current: str | None = None  # the article the next chunk continues, if it starts mid-article
        for chunk in sorted(ordered, key=lambda c: c.position):
            heads = [(m.start(), _normalise_article(m.group(1))) for m in ARTICLE_HEAD.finditer(chunk.text)]
            if current is not None and not (heads and heads[0][0] == 0):
                covered[(source, current)].add(chunk.id)
            for _, article in heads:
                covered[(source, article)].add(chunk.id)
                current = article
    return covered


def _normalise_article(label: str) -> str:
    return re.sub(r"\s+", " ", label.strip()).replace("Art. ", "Article ").replace("§ ", "Section ").replace("§", "Section ")


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def resolve(golden: GoldenSet, chunks: list[Chunk]) -> dict[str, list[str]]:
    """Question id -> relevant chunk ids (in corpus order). Fails on a label that matches nothing."""
    articles = article_chunks(chunks)
    sources = sorted({c.source for c in chunks})
    squashed = [(c, _squash(c.text)) for c in chunks]
    order = {c.id: i for i, c in enumerate(chunks)}
    relevant: dict[str, list[str]] = {}
    for question in golden.questions:
        if question.source is not None and question.source not in sources:
            raise _fail(golden.path, question.line,
                        f"question {question.id!r} names source {question.source!r}, which is not in the corpus "
                        f"(documents: {', '.join(sources[:5])}{'...' if len(sources) > 5 else ''})")
        in_scope = [question.source] if question.source else sources
        found: set[str] = set()
        for label in question.articles:
            hits = set().union(*(articles.get((s, _normalise_article(label)), set()) for s in in_scope))
            if not hits:
                raise _fail(golden.path, question.line,
                            f"question {question.id!r}: article {label!r} starts no line of "
                            f"{question.source or 'any document'}; write it as the document does (e.g. 第四十四条)")
            found |= hits
        for snippet in question.evidence:
            needle = _squash(snippet)
            hits = {c.id for c, text in squashed if needle in text and (question.source is None or c.source == question.source)}
            if not hits:
                raise _fail(golden.path, question.line,
                            f"question {question.id!r}: evidence {snippet!r} is in no chunk; copy a shorter verbatim "
                            "snippet (it must not cross a chunk boundary)")
            found |= hits
        relevant[question.id] = sorted(found, key=order.__getitem__)
    return relevant


def golden_datasets(golden: GoldenSet, chunks: list[Chunk]) -> dict[tuple[str, str], QADataset]:
    """(split, language) -> the questions as a seed-format dataset over the whole corpus."""
    relevant = resolve(golden, chunks)
    corpus = {c.id: c.text for c in chunks}
    datasets: dict[tuple[str, str], QADataset] = {}
    for question in golden.questions:
        dataset = datasets.setdefault((question.split, question.language), QADataset(corpus=corpus))
        dataset.queries[question.id] = question.query
        dataset.relevant_docs[question.id] = relevant[question.id]
        dataset.query_styles[question.id] = question.style
    return datasets
