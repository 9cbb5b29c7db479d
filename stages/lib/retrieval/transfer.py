"""Transfer: the base and the fine-tuned model searched over documents that are not the corpus, with the test
questions people wrote about those documents (``metrics/transfer.json``).

A fine-tune learns mostly the domain and the task, not one document: the Securities-Law-trained model also ranks
the Labor Contract Law's passages better than its base (benchmarks/results/learning_curve.json). To make that a
metric of every run (and so of every ``dvc exp`` experiment), the evaluate stage reads
``evaluate.transfer_documents_dir`` (default ``data/sample_transfer``: the judge laws of ``sample.transfer_laws``
that the corpus does not hold, rendered by the sample stage), chunks it with the corpus's chunker and knobs
(``corpus.chunk_size``, ``chunk_overlap``, ``min_chunk_tokens``, as the corpus stage does), and takes every golden
set of ``evaluate.golden_sets`` that is about those documents and not about the corpus (the sets the side-by-side
skips as "about other documents"). Only their test questions are asked (val may have chosen knobs), capped like
every other set (``evaluate.max_queries``), and each model ranks those documents' chunks only.

Written per golden set file stem and ``test_<language>``: the number of questions, and for ``base`` and
``finetuned`` hit@5, MRR@10 and NDCG@10 with 95% paired-bootstrap intervals of hit@5 and MRR@10; the fine-tuned
row also holds its difference from base with its interval (``intervals.py``). Numbers only: DVC's metrics drop
strings. No documents there, or no golden set about them, gives ``{}`` and one log line, not an error.

Encoding goes through the side-by-side's vector caches (the same ``VectorCache`` objects, so the stage's cache
compaction keeps these vectors too), after the side-by-side's own pass, so its vectors are computed exactly as
without transfer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from stages.lib.common.errors import UserError
from stages.lib.common.params import CorpusParams
from stages.lib.documents.chunking import Chunk, make_chunks
from stages.lib.documents.readers import list_document_files, load_documents
from stages.lib.models.prompts import Prompts
from stages.lib.questions.qa_dataset import QADataset
from stages.lib.retrieval.dense_encoding import EvalVectors, ModelPass, encode_eval_texts
from stages.lib.retrieval.eval_sample import cap_queries
from stages.lib.retrieval.golden import golden_datasets, golden_files, is_about, load_golden
from stages.lib.retrieval.intervals import intervals, per_query
from stages.lib.retrieval.rankers import dense_rank, retrieval_metrics

KEY = "evaluate.transfer_documents_dir"
MODELS = ("base", "finetuned")  # the fine-tuned model against the model it started from
METRICS = ("hit@5", "mrr@10", "ndcg@10")
DEPTH = 10  # every metric reads the top 10

log = logging.getLogger(__name__)


@dataclass
class TransferInputs:
    folder: Path
    chunks: list[Chunk]
    # golden set file stem -> "test_<language>" -> its test questions over ``chunks``
    sets: dict[str, dict[str, QADataset]] = field(default_factory=dict)

    @property
    def corpus(self) -> dict[str, str]:
        return {chunk.id: chunk.text for chunk in self.chunks}


def load_transfer_inputs(folder: Path, corpus_sources: set[str], golden_sets: list[str], corpus: CorpusParams,
                         max_queries: int) -> TransferInputs:
    """The folder's chunks and the test questions of every golden set about them (none: empty ``sets``).

    ``corpus_sources``: the documents of the evaluated corpus; a set about them is the side-by-side's, not this."""
    if not golden_sets:
        return TransferInputs(folder, [])  # nothing could be asked there: the folder is not read
    if not folder.is_dir():
        raise UserError(
            f"params.yaml key '{KEY}' is {str(folder)!r}, which is not a folder. Keep the default data/sample_transfer "
            "(the sample stage writes it from 'sample.transfer_laws': `dvc repro` runs that stage first), or point it "
            "at a folder of documents that are not your corpus, with a golden set about them; an empty folder turns "
            "the transfer metric off."
        )
    files, _ = list_document_files(folder, KEY, require_documents=False)
    if not files:
        return TransferInputs(folder, [])
    documents, _ = load_documents(folder)
    # Every chunk is searched: the split seed and fractions do not matter (ids and texts do not depend on them).
    chunks, _ = make_chunks(documents, corpus.chunk_size, corpus.chunk_overlap, corpus.min_chunk_tokens, 0, 0.0, 0.0)
    inputs = TransferInputs(folder, chunks)
    sources = {chunk.source for chunk in chunks}
    for path in golden_files(golden_sets):
        golden = load_golden(path)
        if is_about(golden, corpus_sources) or not is_about(golden, sources):
            continue
        for (split, language), dataset in sorted(golden_datasets(golden, chunks).items()):
            if split == "test":  # val questions may have chosen knobs: never a measure
                inputs.sets.setdefault(path.stem, {})[f"test_{language}"] = cap_queries(dataset, max_queries)
    return inputs


def describe(inputs: TransferInputs) -> str:
    """What transfer measures in this run, or why it measures nothing."""
    if not inputs.sets:
        return (f"transfer: no golden set of evaluate.golden_sets is about documents in {inputs.folder}/ ({KEY}, "
                f"{len({c.source for c in inputs.chunks})} read): metrics/transfer.json is empty")
    sets = ", ".join(f"{stem} {key} {len(dataset.queries)}" for stem, by_key in inputs.sets.items()
                     for key, dataset in by_key.items())
    return f"transfer: test questions {sets}; over {len(inputs.chunks)} chunks of {inputs.folder}/, not the corpus"


def transfer_vectors(inputs: TransferInputs, passes: dict[str, ModelPass], prompts: Prompts) -> dict[str, EvalVectors]:
    """Each model's vectors of the folder's chunks and of every set's questions, with the encoder and cache of the
    model's main pass (the same runtime); a model whose vectors are all in its cache is never loaded."""
    texts = list(inputs.corpus.values())
    queries = {_query_key(stem, key): list(dataset.queries.values())
               for stem, by_key in inputs.sets.items() for key, dataset in by_key.items()}
    vectors = {}
    for name in MODELS:
        vectors[name] = encode_eval_texts(texts, queries, passes[name].encode, passes[name].cache,
                                          f"[evaluate] transfer: encode {name}", prompts)
    return vectors


def score_transfer(inputs: TransferInputs, vectors: dict[str, EvalVectors]) -> dict:
    """``metrics/transfer.json``: stem -> test_<language> -> queries, base and finetuned rows (see the docstring)."""
    corpus_ids = [chunk.id for chunk in inputs.chunks]
    out: dict = {}
    for stem, by_key in inputs.sets.items():
        for key, dataset in by_key.items():
            ids = list(dataset.queries)
            rankings = {name: dense_rank(ids, vectors[name].queries[_query_key(stem, key)], corpus_ids,
                                         vectors[name].corpus, DEPTH) for name in MODELS}
            bounds = intervals({name: per_query(ranking, dataset.relevant_docs, ids) for name, ranking in rankings.items()},
                               baseline="base")
            rows = {}
            for name, ranking in rankings.items():
                metrics = retrieval_metrics(ranking, dataset.relevant_docs, [5])
                rows[name] = {**{metric: metrics[metric] for metric in METRICS}, **bounds.get(name, {})}
            out.setdefault(stem, {})[key] = {"queries": len(ids), **rows}
    return out


def transfer_lines(transfer: dict) -> list[str]:
    """One line per set: hit@5 and MRR@10 of base and fine-tuned, and the difference with its interval."""
    lines = []
    for stem, by_key in transfer.items():
        for key, row in by_key.items():
            base, tuned = row["base"], row["finetuned"]
            gains = "; ".join(
                f"{metric} base {base[metric]:.3f}, fine-tuned {tuned[metric]:.3f} ({tuned[f'{metric}_diff_vs_base']:+.3f} "
                f"[{tuned[f'{metric}_diff_vs_base_ci_low']:+.3f}, {tuned[f'{metric}_diff_vs_base_ci_high']:+.3f}])"
                for metric in ("hit@5", "mrr@10"))
            lines.append(f"transfer to {stem} {key} ({row['queries']} questions): {gains}")
    return lines


def _query_key(stem: str, key: str) -> str:
    return f"{stem}/{key}"
