"""What the ONNX export costs and gains: retrieval quality, vector gaps and CPU speed against the PyTorch model.

Three encoders of the same model: ``pytorch`` (the sentence-transformers model itself, on the
pipeline's device), ``onnx`` (the fp32 graph) and ``onnx_int8``. Each encodes the measured questions
and the whole corpus with the model's prompts; each ranking over the corpus is scored with the
evaluation's own metrics (hit@5, MRR@10), each export's vectors are compared with PyTorch's on the same
texts (cosine gap = 1 - cosine), and the three are timed on the CPU on one seeded sample of those
texts, in the same run, batch for batch in turn, so a burst of load on the machine slows all three.

The measured questions are the golden test questions about this corpus (all languages, every
passage), the judge the evaluation reports; without a golden set about it, the synthetic test split.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from stages.lib.documents.chunking import Chunk
from stages.lib.models.encoding import encode_in_precision
from stages.lib.models.prompts import Prompts
from stages.lib.questions.qa_dataset import QADataset
from stages.lib.retrieval.eval_sample import cap_queries, seeded_sample
from stages.lib.retrieval.question_sets import golden_parts, merge
from stages.lib.retrieval.rankers import dense_rank, first_relevant_rank, hit_at, retrieval_metrics

PYTORCH, ONNX, ONNX_INT8 = "pytorch", "onnx", "onnx_int8"
BACKENDS = (PYTORCH, ONNX, ONNX_INT8)
K = 5
DEPTH = 10  # MRR@10 and hit@5 need the top 10 only
# An int8 export whose golden hit@5 moves more than this from PyTorch's is called out.
HIT_TOLERANCE = 0.01
THROUGHPUT_SALT = "export.throughput_texts"


class PromptEncoder(Protocol):
    """What is measured: one float32 row per text, encoded after ``prompt``."""

    def encode(self, texts: list[str], prompt: str = "") -> np.ndarray: ...


class SentenceTransformerBackend:
    """The PyTorch model as sentence-transformers encodes it: the given prompt, its own max_seq_length and modules."""

    def __init__(self, model, batch_size: int, precision: str = "fp32") -> None:
        self.model, self.batch_size, self.precision = model, batch_size, precision
        self.device = str(model.device).split(":")[0]

    def encode(self, texts: list[str], prompt: str = "") -> np.ndarray:
        # prompt="" means exactly none (None would fall back to the model's default prompt). In the precision the
        # evaluation encodes in, so the ONNX rows are compared with the vectors the pipeline reported on.
        return encode_in_precision(self.model, list(texts), self.batch_size, self.device, self.precision, prompt=prompt)


@dataclass(frozen=True)
class MeasuredQuestions:
    dataset: QADataset  # over the whole corpus
    golden: bool  # False: the synthetic test split, no golden set being about this corpus
    total: int  # questions before the cap (evaluate.max_queries)

    def describe(self) -> str:
        what = "golden test questions (all languages)" if self.golden else \
            "synthetic test questions (no golden set is about this corpus)"
        capped = f" (a seeded sample of {self.total})" if self.total > len(self.dataset.queries) else ""
        return f"{len(self.dataset.queries)} {what}{capped} over {len(self.dataset.corpus)} chunks"


def measured_questions(chunks: list[Chunk], golden_files: list[str], synthetic_test: Callable[[], QADataset],
                       max_queries: int) -> MeasuredQuestions:
    parts = golden_parts(chunks, golden_files)
    every_passage = [d for name, sets in parts.test.items() if name.endswith("_incl_trained_passages") for d in sets]
    golden = merge(every_passage) if every_passage else None
    dataset, is_golden = (golden, True) if golden is not None and golden.queries else (synthetic_test(), False)
    return MeasuredQuestions(cap_queries(dataset, max_queries), is_golden, len(dataset.queries))


@dataclass(frozen=True)
class Vectors:
    queries: np.ndarray
    corpus: np.ndarray

    def all_rows(self) -> np.ndarray:
        return np.concatenate([self.queries, self.corpus])


def encode_measured(encoder: PromptEncoder, dataset: QADataset, prompts: Prompts) -> Vectors:
    return Vectors(encoder.encode(list(dataset.queries.values()), prompts.query),
                   encoder.encode(list(dataset.corpus.values()), prompts.document))


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.clip(norms, 1e-12, None)


def retrieval_quality(dataset: QADataset, vectors: Vectors) -> tuple[dict[str, float], dict[str, bool]]:
    """hit@5 and MRR@10 of the cosine ranking (the evaluation's metrics), and per query whether top 5 holds a hit."""
    ranking = dense_rank(list(dataset.queries), unit_rows(vectors.queries), list(dataset.corpus),
                         unit_rows(vectors.corpus), DEPTH)
    metrics = retrieval_metrics(ranking, dataset.relevant_docs, [K])
    hits = {}
    for qid, ranked in ranking.items():
        hits[qid] = hit_at(first_relevant_rank(ranked, set(dataset.relevant_docs[qid])), K) == 1.0
    return {f"hit@{K}": metrics[f"hit@{K}"], "mrr@10": metrics["mrr@10"]}, hits


def cosine_gaps(reference: np.ndarray, other: np.ndarray) -> dict[str, float]:
    """1 - cosine between each row of ``other`` and the same row of ``reference``: the largest and the mean."""
    gaps = 1.0 - np.sum(unit_rows(reference.astype(np.float64)) * unit_rows(other.astype(np.float64)), axis=1)
    return {"cosine_gap_max": float(gaps.max()), "cosine_gap_mean": float(gaps.mean())}


def throughput_texts(dataset: QADataset, prompts: Prompts, size: int) -> list[tuple[str, str]]:
    """A seeded sample of at most ``size`` of the measured texts, as (prompt, text): queries and chunks alike."""
    texts = {f"q:{qid}": (prompts.query, text) for qid, text in dataset.queries.items()}
    texts.update({f"d:{cid}": (prompts.document, text) for cid, text in dataset.corpus.items()})
    return [texts[key] for key in seeded_sample(texts, size, THROUGHPUT_SALT)]


def cpu_throughput(encoders: dict[str, PromptEncoder], texts: Sequence[tuple[str, str]], batch_size: int) -> dict[str, float]:
    """Texts per second of each encoder over the same texts, timed batch by batch in turn after one warm-up batch."""
    by_prompt: dict[str, list[str]] = {}
    for prompt, text in texts:
        by_prompt.setdefault(prompt, []).append(text)
    batches = [(prompt, group[i:i + batch_size]) for prompt, group in by_prompt.items()
               for i in range(0, len(group), batch_size)]
    seconds = dict.fromkeys(encoders, 0.0)
    for encoder in encoders.values():
        encoder.encode(batches[0][1][:8], batches[0][0])  # first-call costs (allocations, graph set-up) not timed
    for prompt, batch in batches:
        for name, encoder in encoders.items():
            started = time.perf_counter()
            encoder.encode(batch, prompt)
            seconds[name] += time.perf_counter() - started
    return {name: len(texts) / max(spent, 1e-9) for name, spent in seconds.items()}


def export_metrics(questions: MeasuredQuestions, vectors: dict[str, Vectors], speed: dict[str, float],
                   n_speed_texts: int, pytorch_device: str, pytorch_precision: str = "fp32") -> dict:
    """``metrics/export.json``: numbers only, one section per encoder, differences against PyTorch."""
    quality = {name: retrieval_quality(questions.dataset, v) for name, v in vectors.items()}
    reference_hits = quality[PYTORCH][1]
    metrics: dict = {"enabled": 1, "golden": int(questions.golden), "queries": len(questions.dataset.queries),
                     "corpus_chunks": len(questions.dataset.corpus), "pytorch_quality_on_gpu": int(pytorch_device != "cpu"),
                     "pytorch_bf16": int(pytorch_precision == "bf16"), "pytorch_fp16": int(pytorch_precision == "fp16"),
                     "cpu_throughput_texts": n_speed_texts}
    for name in BACKENDS:
        scores, hits = quality[name]
        section = {**scores, "cpu_texts_per_s": round(speed[name], 2)}
        if name != PYTORCH:
            section.update({f"{metric}_diff_vs_pytorch": round(value - quality[PYTORCH][0][metric], 4)
                            for metric, value in scores.items()})
            section[f"hit@{K}_queries_changed_vs_pytorch"] = sum(hits[q] != reference_hits[q] for q in hits)
            section.update(cosine_gaps(vectors[PYTORCH].all_rows(), vectors[name].all_rows()))
            section["cpu_speedup_vs_pytorch_cpu"] = round(speed[name] / max(speed[PYTORCH], 1e-9), 3)
        metrics[name] = section
    return metrics


def format_report(metrics: dict) -> str:
    columns = (f"hit@{K}", "mrr@10", f"hit@{K}_diff_vs_pytorch", "cosine_gap_max", "cosine_gap_mean", "cpu_texts_per_s",
               "cpu_speedup_vs_pytorch_cpu")
    heads = (f"hit@{K}", "MRR@10", f"d hit@{K}", "max gap", "mean gap", "CPU texts/s", "CPU speed-up")
    lines = ["encoder".ljust(11) + "".join(h.rjust(13) for h in heads)]
    lines.append("-" * len(lines[0]))
    for name in BACKENDS:
        cells = []
        for column in columns:
            value = metrics[name].get(column)
            if value is None:
                cells.append("".rjust(13))
            elif column.startswith("cosine_gap"):
                cells.append(f"{value:13.2e}")
            elif column.endswith("diff_vs_pytorch"):
                cells.append(f"{value:+13.3f}")
            elif column == "cpu_texts_per_s":
                cells.append(f"{value:13.1f}")
            else:
                cells.append(f"{value:13.3f}")
        lines.append(name.ljust(11) + "".join(cells))
    return "\n".join(lines)


def int8_warning(metrics: dict) -> str | None:
    int8, pytorch = metrics[ONNX_INT8], metrics[PYTORCH]
    diff = int8[f"hit@{K}_diff_vs_pytorch"]
    if abs(diff) <= HIT_TOLERANCE:
        return None
    where = "golden test" if metrics["golden"] else "synthetic test"
    return (f"WARNING: the int8 export's {where} hit@{K} differs from the PyTorch model's by {diff:+.3f} "
            f"({int8[f'hit@{K}']:.3f} against {pytorch[f'hit@{K}']:.3f}, more than {HIT_TOLERANCE:.2f}; "
            f"{int8[f'hit@{K}_queries_changed_vs_pytorch']} of {metrics['queries']} queries changed): serve the fp32 "
            "graph (--backend onnx) or PyTorch where that matters.")
