"""The question sets a person can pick from: the synthetic splits and every golden set about this corpus.

Each set has an id for links (``synthetic/test``, ``golden/securities_law``) and its questions with their
labelled chunks: a synthetic question's from its dataset (``relevant_docs``), a golden question's resolved from
its article or evidence labels against the chunks here, as ``evaluate`` resolves them. A typed question whose
text is one of these (normalised as the question files normalise) gets the same labels, synthetic splits
first, then golden sets, as ``python -m stages.search`` finds them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from stages.lib.common.errors import UserError
from stages.lib.documents.chunking import Chunk
from stages.lib.questions.qa_dataset import QADataset, normalize_query
from stages.lib.retrieval.golden import golden_files, is_about, load_golden, resolve
from stages.lib.retrieval.one_query import QUESTION_FILES
from stages.lib.ui.run_files import QUESTIONS, REPORT, Problem

SYNTHETIC_PREFIX, GOLDEN_PREFIX = "synthetic/", "golden/"


@dataclass(frozen=True)
class KnownQuestion:
    id: str
    text: str
    relevant: tuple[str, ...]  # labelled chunk ids, in corpus order
    split: str  # train / val / test
    style: str
    language: str = ""

    def to_json(self) -> dict:
        return {"id": self.id, "text": self.text, "split": self.split, "style": self.style, "language": self.language,
                "relevant": list(self.relevant)}


@dataclass
class QuestionSet:
    id: str
    title: str
    file: str
    questions: dict[str, KnownQuestion] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"id": self.id, "title": self.title, "file": self.file, "count": len(self.questions)}


class UnknownQuestion(LookupError):
    """A set id or question id that is not there; the message says what is."""


@dataclass
class KnownQuestions:
    sets: dict[str, QuestionSet] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    _by_text: dict[str, tuple[str, str]] = field(default_factory=dict)

    def get(self, set_id: str, question_id: str) -> tuple[QuestionSet, KnownQuestion]:
        if set_id not in self.sets:
            known = ", ".join(self.sets) or "none: run `dvc repro questions`"
            raise UnknownQuestion(f"There is no question set {set_id!r} here (sets: {known}).")
        chosen = self.sets[set_id]
        if question_id not in chosen.questions:
            raise UnknownQuestion(f"There is no question {question_id!r} in {chosen.title} ({chosen.file}, "
                                  f"{len(chosen.questions)} questions): pick one from the list, or search its text.")
        return chosen, chosen.questions[question_id]

    def by_text(self, text: str) -> tuple[QuestionSet, KnownQuestion] | None:
        found = self._by_text.get(normalize_query(text))
        return (self.sets[found[0]], self.sets[found[0]].questions[found[1]]) if found else None

    def golden_set_of(self, question_id: str) -> str | None:
        """The first golden set holding ``question_id`` (the report's golden rows name questions by id only)."""
        return next((s.id for s in self.sets.values() if s.id.startswith(GOLDEN_PREFIX) and question_id in s.questions),
                    None)

    def matching(self, set_id: str, needle: str, limit: int) -> tuple[list[KnownQuestion], int]:
        """The questions of a set whose text or id contains ``needle`` (case and spacing ignored), and how many match."""
        if set_id not in self.sets:
            self.get(set_id, "")  # raises, naming the sets there are
        wanted = normalize_query(needle)
        found = [q for q in self.sets[set_id].questions.values()
                 if not wanted or wanted in normalize_query(q.text) or wanted in q.id.lower()]
        return found[:limit], len(found)

    def _add(self, chosen: QuestionSet) -> None:
        self.sets[chosen.id] = chosen
        for question in chosen.questions.values():
            self._by_text.setdefault(normalize_query(question.text), (chosen.id, question.id))


def load_known_questions(chunks: list[Chunk], listed: list[str]) -> KnownQuestions:
    """Every set that can be read; one that cannot is a problem on the page, not a stop."""
    known = KnownQuestions()
    for split, path in QUESTION_FILES.items():
        if not path.is_file():
            continue  # reported with the missing outputs
        try:
            dataset = QADataset.load(path)
        except (UserError, ValueError) as error:
            known.problems.append(Problem(f"{path} cannot be read ({_reason(error)}): run `dvc repro questions`.",
                                          "invalid", "questions", (QUESTIONS,)))
            continue
        known._add(QuestionSet(f"{SYNTHETIC_PREFIX}{split}", f"synthetic {split} split", str(path), {
            qid: KnownQuestion(qid, text, tuple(dataset.relevant_docs.get(qid, [])), split,
                               dataset.query_styles.get(qid, "")) for qid, text in dataset.queries.items()}))
    sources = {c.source for c in chunks}
    for path in golden_files(listed):
        file = str(path)
        try:
            golden = load_golden(path)
            if chunks and not is_about(golden, sources):
                continue  # a set about other documents: evaluate skips it too
            relevant = resolve(golden, chunks) if chunks else {}
        except UserError as error:
            known.problems.append(Problem(f"Golden set {file}: {error}", "invalid", None, (QUESTIONS, REPORT)))
            continue
        set_id = _unique(f"{GOLDEN_PREFIX}{Path(file).stem}", known.sets)
        known._add(QuestionSet(set_id, f"golden set {Path(file).stem}", file, {
            q.id: KnownQuestion(q.id, q.query, tuple(relevant.get(q.id, ())), q.split, q.style, q.language)
            for q in golden.questions}))
    return known


def _unique(name: str, taken: dict) -> str:
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}-{n}", n + 1
    return candidate


def _reason(error: Exception) -> str:
    return str(error).split("\n")[0][:200]
