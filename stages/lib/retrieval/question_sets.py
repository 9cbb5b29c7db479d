"""The question sets one evaluation reports on, and the one it tunes knobs on.

* ``test``: the synthetic test split (questions from the generator, on held-out chunks).
* Golden sets (``evaluate.golden_sets``): questions written by people, per
  language. Their passages can be anywhere in the corpus, including chunks of
  the train split whose synthetic questions were training positives, so each
  is reported twice: ``golden_test_<lang>_incl_trained_passages`` (all of its
  questions) and ``golden_test_<lang>_unseen_passages`` (only questions whose
  every relevant chunk lies outside the train split).
* Tuning: golden val when there is one, else nothing: the fusion and the
  ``train`` stage's checkpoint then follow fixed priors (``selection_priors.py``).
  Synthetic val is never tuned on: the generator's questions reuse their
  passage's words (word overlap 0.8 against 0.34-0.50 for questions people
  wrote), which flatters BM25, and on the Labor Contract Law it would have
  kept the base model over a fine-tune that people's questions rate better.
  Test sets are only ever reported. The ``train`` stage selects its checkpoint
  (or the base model itself) on the same golden val (``golden_val``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stages.lib.documents.chunking import Chunk
from stages.lib.questions.qa_dataset import QADataset
from stages.lib.retrieval.eval_sample import cap_queries
from stages.lib.retrieval.golden import golden_datasets, golden_files, is_about, load_golden

SYNTHETIC_TEST = "test"


@dataclass
class QuestionSets:
    reported: dict[str, QADataset]  # name -> questions, the synthetic test split first
    totals: dict[str, int]  # name -> questions before the cap
    tuning: QADataset | None  # where fusion knobs are chosen
    tuning_total: int = 0  # its questions before the cap
    tuning_name: str = ""
    skipped_golden: list[str] = field(default_factory=list)  # golden files about documents not in this corpus


def _only(dataset: QADataset, query_ids: list[str]) -> QADataset:
    return QADataset(
        queries={q: dataset.queries[q] for q in query_ids},
        corpus=dataset.corpus,
        relevant_docs={q: dataset.relevant_docs[q] for q in query_ids},
        query_styles={q: dataset.query_styles[q] for q in query_ids if q in dataset.query_styles},
    )


def merge(datasets: list[QADataset]) -> QADataset:
    merged = QADataset(corpus=datasets[0].corpus)
    for dataset in datasets:
        merged.queries.update(dataset.queries)
        merged.relevant_docs.update(dataset.relevant_docs)
        merged.query_styles.update(dataset.query_styles)
    return merged


@dataclass
class GoldenParts:
    """The golden sets that are about this corpus, resolved: test parts by reported name, the val parts."""

    test: dict[str, list[QADataset]] = field(default_factory=dict)
    val: list[QADataset] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # files about documents not in this corpus


def golden_parts(chunks: list[Chunk], listed: list[str]) -> GoldenParts:
    sources = {c.source for c in chunks}
    train_chunks = {c.id for c in chunks if c.split == "train"}
    parts = GoldenParts()
    for path in golden_files(listed):
        golden = load_golden(path)
        if not is_about(golden, sources):
            parts.skipped.append(str(path))  # a set about other documents (e.g. the bundled law's, on a user's own corpus)
            continue
        for (split, language), dataset in sorted(golden_datasets(golden, chunks).items()):
            if split == "val":
                parts.val.append(dataset)
                continue
            unseen = [q for q, docs in dataset.relevant_docs.items() if not train_chunks.intersection(docs)]
            parts.test.setdefault(f"golden_test_{language}_incl_trained_passages", []).append(dataset)
            parts.test.setdefault(f"golden_test_{language}_unseen_passages", []).append(_only(dataset, unseen))
    return parts


def golden_val(chunks: list[Chunk], listed: list[str]) -> QADataset | None:
    """Every golden val question about this corpus (all languages), or None when no golden set applies."""
    parts = golden_parts(chunks, listed)
    return merge(parts.val) if parts.val else None


def build_question_sets(test: QADataset, chunks: list[Chunk], listed: list[str], max_queries: int) -> QuestionSets:
    parts = golden_parts(chunks, listed)
    collected: dict[str, list[QADataset]] = {SYNTHETIC_TEST: [test], **parts.test}
    merged = {name: merge(datasets) for name, datasets in collected.items()}
    reported = {name: cap_queries(dataset, max_queries) for name, dataset in merged.items() if dataset.queries}
    totals = {name: len(merged[name].queries) for name in reported}
    if parts.val:
        tuning = merge(parts.val)
        return QuestionSets(reported, totals, cap_queries(tuning, max_queries), len(tuning.queries), "golden val",
                            parts.skipped)
    # No questions written by people to tune on: synthetic val is not one (see the module's docstring).
    return QuestionSets(reported, totals, None, 0, "", parts.skipped)
