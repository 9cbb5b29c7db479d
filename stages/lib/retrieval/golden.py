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
* ``passages``: chunks a person marked relevant in the labelling view, each as
  ``{"chunk": <id>, "source": <document>, "text": <its text>}``; found again by
  their text when re-chunking changed the ids (``passage_labels.py``).

A question whose labeller found no relevant chunk among those shown is kept
with ``"no_relevant_chunk": true`` and no labels: it is not scored (no retriever
can find what is not there), and the stage says how many there are.

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
from stages.lib.retrieval.passage_labels import PassageLabel, PassageLocator, squash

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
    passages: tuple[PassageLabel, ...] = ()
    no_relevant_chunk: bool = False  # labelled, but nothing shown to the labeller answered it: not scored

    @property
    def sources(self) -> set[str | None]:
        """The documents its labels are about (None: any document of the corpus)."""
        named = {p.source for p in self.passages if p.source}
        return named or {self.source}


@dataclass
class GoldenSet:
    path: Path
    questions: list[GoldenQuestion] = field(default_factory=list)

    def languages(self) -> list[str]:
        return sorted({q.language for q in self.questions})

    def scored(self) -> list[GoldenQuestion]:
        return [q for q in self.questions if not q.no_relevant_chunk]


def golden_files(listed: list[str]) -> list[Path]:
    """The files ``evaluate.golden_sets`` names, in its order: each entry a file, or a pattern such as
    ``data/golden/*.jsonl`` (the default: every golden set in that folder, the labelling view's among them) whose
    matches are taken in name order. A pattern that matches nothing is no error (no set labelled yet); a file
    that is not there is, when it is read."""
    files: list[Path] = []
    for entry in listed:
        matches = sorted(_glob(entry)) if any(ch in entry for ch in "*?[") else [Path(entry)]
        files.extend(path for path in matches if path not in files)
    return files


def _glob(pattern: str):
    # pathlib globs relative patterns only: an absolute one is globbed from its anchor ("/").
    anchor = Path(pattern).anchor
    return Path(anchor).glob(pattern[len(anchor):]) if anchor else Path().glob(pattern)


def is_about(golden: GoldenSet, sources: set[str]) -> bool:
    """Whether the set's labels can be about this corpus: a set naming only documents that are not here is about
    other documents (the bundled law's set on a user's own corpus) and is skipped, not failed."""
    named = set().union(*(q.sources for q in golden.questions))
    return None in named or bool(named & sources)


def _fail(path: Path, line: int, message: str) -> UserError:
    return UserError(f"{path}, line {line}: {message} (the golden-set format: docs/evaluation.md, 'Your own golden set').")


def load_golden(path: Path) -> GoldenSet:
    """Read and validate a golden-set file."""
    if not path.is_file():
        raise UserError(
            f"params.yaml key 'evaluate.golden_sets' lists {str(path)!r}, which does not exist. "
            "Fix the path, or remove it from the list."
        )
    golden = GoldenSet(path)
    seen: set[str] = set()
    # Lines end at "\n" only: str.splitlines would also cut at U+2028/U+2029/U+0085, which JSON strings may hold.
    for number, raw in enumerate(path.read_text(encoding="utf-8").split("\n"), start=1):
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
        passages = _passages(row, path, number)
        no_relevant = row.get("no_relevant_chunk", False)
        if not isinstance(no_relevant, bool):
            raise _fail(path, number, f"key 'no_relevant_chunk' is {no_relevant!r}; use true or false")
        if not articles and not evidence and not passages and not no_relevant:
            raise _fail(path, number, "give the answer's 'articles' (e.g. [\"第四十四条\"]), 'evidence' (verbatim snippets) "
                                      "or 'passages' (labelled chunks), or set \"no_relevant_chunk\": true")
        if no_relevant and (articles or evidence or passages):
            raise _fail(path, number, "\"no_relevant_chunk\": true and labels at once; keep one of them")
        golden.questions.append(GoldenQuestion(
            id=row["id"], query=row["query"].strip(), split=row["split"],
            language=row.get("language") or _guess_language(row["query"]), style=row.get("style") or "golden",
            articles=articles, evidence=evidence, source=row.get("source"), line=number, passages=passages,
            no_relevant_chunk=no_relevant,
        ))
    if not golden.questions:
        raise UserError(f"{path} holds no questions. Add some, or remove it from 'evaluate.golden_sets'.")
    return golden


def _passages(row: dict, path: Path, line: int) -> tuple[PassageLabel, ...]:
    value = row.get("passages", [])
    wrong = _fail(path, line, "key 'passages' must be a list of objects {\"chunk\": ..., \"source\": ..., \"text\": ...} "
                              "with a non-empty text")
    if not isinstance(value, list):
        raise wrong
    labels = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("text"), str) or not item["text"].strip():
            raise wrong
        source, chunk = item.get("source"), item.get("chunk")
        if not isinstance(source, str | None) or not isinstance(chunk, str | None):
            raise wrong
        labels.append(PassageLabel(item["text"], source or None, chunk or None))
    return tuple(labels)


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


def resolve(golden: GoldenSet, chunks: list[Chunk]) -> dict[str, list[str]]:
    """Question id -> relevant chunk ids (in corpus order), for the questions that are scored. Fails on a label that
    matches nothing."""
    articles = article_chunks(chunks)
    sources = sorted({c.source for c in chunks})
    squashed = [(c, squash(c.text)) for c in chunks]
    order = {c.id: i for i, c in enumerate(chunks)}
    locator = PassageLocator(chunks)
    relevant: dict[str, list[str]] = {}
    for question in golden.scored():
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
            needle = squash(snippet)
            hits = {c.id for c, text in squashed if needle in text and (question.source is None or c.source == question.source)}
            if not hits:
                raise _fail(golden.path, question.line,
                            f"question {question.id!r}: evidence {snippet!r} is in no chunk; copy a shorter verbatim "
                            "snippet (it must not cross a chunk boundary)")
            found |= hits
        for number, passage in enumerate(question.passages, start=1):
            hits = locator.locate(passage)
            if hits is None:
                raise _fail(golden.path, question.line,
                            f"question {question.id!r}: labelled passage {number} ({passage.source or 'no document named'}: "
                            f"\"{passage.preview()}\") is no longer in the corpus: its document changed there. Label the "
                            "question again in the labelling view (python -m stages.ui, /label), or delete the line")
            found.update(hits)
        relevant[question.id] = sorted(found, key=order.__getitem__)
    return relevant


def golden_datasets(golden: GoldenSet, chunks: list[Chunk]) -> dict[tuple[str, str], QADataset]:
    """(split, language) -> the questions as a seed-format dataset over the whole corpus."""
    relevant = resolve(golden, chunks)
    corpus = {c.id: c.text for c in chunks}
    datasets: dict[tuple[str, str], QADataset] = {}
    for question in golden.scored():
        dataset = datasets.setdefault((question.split, question.language), QADataset(corpus=corpus))
        dataset.queries[question.id] = question.query
        dataset.relevant_docs[question.id] = relevant[question.id]
        dataset.query_styles[question.id] = question.style
    return datasets
