"""One question against everything the pipeline built: what ``python -m stages.search`` does for a query.

It owns reading the pipeline's outputs without changing them (the models, the ``evaluate`` stage's
vector cache opened read-only, the fusion that stage chose from its metrics), ranking the query with
every retriever (base, fine-tuned, BM25, their hybrid), finding the query's labelled chunks when a
question set holds it (synthetic splits first, then golden sets, matched on normalised text), and
laying the rankings out side by side in terminal columns. Argument parsing and printing stay in the
``search`` module.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stages.lib.common.files import read_json
from stages.lib.common.params import Params
from stages.lib.documents.chunking import Chunk
from stages.lib.models.hardware import encoding_batch_size, resolve_hardware
from stages.lib.models.prompts import resolve_prompts
from stages.lib.questions.qa_dataset import QADataset, normalize_query
from stages.lib.retrieval.dense_encoding import LazySentenceEncoder, encode_texts
from stages.lib.retrieval.fusion import RRF, Fusion, candidates, fuse
from stages.lib.retrieval.golden import golden_datasets, load_golden
from stages.lib.retrieval.rankers import BM25Index, Ranking, dense_rank
from stages.lib.retrieval.vector_cache import open_model_cache_read_only

# Each model with the stage that writes it, so a missing one can name what to run.
MODELS = {"base": (Path("models/base"), "base_model"), "finetuned": (Path("models/trained"), "train")}
QUESTION_FILES = {split: Path(f"data/questions/{split}.json") for split in ("train", "val", "test")}
EVAL_METRICS = Path("metrics/eval.json")
EMBEDDING_CACHE_DIR = Path("data/embedding_cache")
QUERY_ID = "query"


@dataclass(frozen=True)
class Label:
    set_name: str
    relevant: frozenset[str]


def find_label(query: str, chunks: list[Chunk], params: Params) -> Label | None:
    """The labelled chunks of ``query`` if a question set holds it (pipeline splits first, then golden sets)."""
    wanted = normalize_query(query)
    for split, path in QUESTION_FILES.items():
        if path.is_file():
            found = _find(QADataset.load(path), wanted)
            if found:
                return Label(f"the synthetic {split} split", found)
    for file in params.evaluate.golden_sets:
        golden = load_golden(Path(file))
        matches = [q for q in golden.questions if normalize_query(q.query) == wanted]
        if not matches:
            continue
        for (split, _), dataset in golden_datasets(golden, chunks).items():
            found = _find(dataset, wanted)
            if found:
                return Label(f"golden set {file} ({split})", found)
    return None


def _find(dataset: QADataset, wanted: str) -> frozenset[str] | None:
    for qid, text in dataset.queries.items():
        if normalize_query(text) == wanted:
            return frozenset(dataset.relevant_docs.get(qid, []))
    return None


def rank_all(query: str, chunks: list[Chunk], params: Params, depth: int) -> dict[str, Ranking]:
    corpus = {c.id: c.text for c in chunks}
    corpus_ids = list(corpus)
    # The precision and the prompts `evaluate` encoded with, so its cached corpus vectors are the ones read here.
    hardware = resolve_hardware(params.compute.device, params.compute.precision)
    prompts = resolve_prompts(params.model.query_prompt, params.model.document_prompt, MODELS["base"][0])
    rankings: dict[str, Ranking] = {}
    for name, (path, _) in MODELS.items():
        encoder = LazySentenceEncoder(path, hardware.device, params.model.max_seq_length,
                                      encoding_batch_size(params.evaluate.batch_size, hardware.device), hardware.precision)
        # Read-only: vectors `evaluate` stored are reused, new ones are kept in memory (the DVC output stays as it is).
        cache = open_model_cache_read_only(EMBEDDING_CACHE_DIR, path, params.model.max_seq_length, hardware.precision)
        doc_vectors = encode_texts(list(corpus.values()), encoder, cache, f"[search] encode corpus ({name})",
                                   prompts=prompts.document)
        query_vector = np.asarray(encoder([query], prompts.query), dtype=np.float32)
        rankings[name] = dense_rank([QUERY_ID], query_vector, corpus_ids, doc_vectors, depth)
    rankings["bm25"] = BM25Index(corpus).rank({QUERY_ID: query}, depth)
    rankings["hybrid"] = fuse(rankings["finetuned"], rankings["bm25"], evaluated_fusion(params), params.evaluate.rrf_k,
                              depth)
    return rankings


def evaluated_fusion(params: Params) -> Fusion:
    """The fusion `evaluate` chose (from its metrics), else the one params fix, else plain RRF."""
    if EVAL_METRICS.is_file():
        metrics = read_json(EVAL_METRICS)
        if metrics.get("hybrid_fusion") in (RRF, "convex") and isinstance(metrics.get("hybrid_dense_weight"), float | int):
            return Fusion(metrics["hybrid_fusion"], float(metrics["hybrid_dense_weight"]))
    fixed = candidates(params.evaluate.fusion, params.evaluate.hybrid_dense_weight)
    return fixed[0] if len(fixed) == 1 else Fusion(RRF, 1.0)


def _display_width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _fit(text: str, width: int) -> str:
    """``text`` cut and padded to exactly ``width`` terminal columns (CJK characters take two)."""
    out, used = [], 0
    for ch in text:
        w = _display_width(ch)
        if used + w > width:
            break
        out.append(ch)
        used += w
    return "".join(out) + " " * (width - used)


def _cell(chunk: Chunk, score: float, marked: bool, width: int) -> str:
    # "第四章 上市公司的收购" -> "第四章": the numbered part places the chunk, the text says the rest.
    section = chunk.section.split(" > ")[-1]
    head = section.split(" ")[0]
    section = head if len(head) <= 6 else section
    text = " ".join(chunk.text.split())
    return _fit(f"{'*' if marked else ' '}{score:6.3f} {section + ' | ' if section else ''}{text}", width)


def format_side_by_side(rankings: dict[str, Ranking], chunks: dict[str, Chunk], relevant: frozenset[str], k: int,
                        width: int) -> str:
    names = list(rankings)
    lines = ["rank " + " ".join(_fit(name, width) for name in names).rstrip()]
    lines.append("-" * (5 + (width + 1) * len(names) - 1))
    for rank in range(k):
        cells = []
        for name in names:
            ids, scores = rankings[name].get(QUERY_ID, []), rankings[name].scores.get(QUERY_ID, [])
            if rank < len(ids):
                cells.append(_cell(chunks[ids[rank]], scores[rank], ids[rank] in relevant, width))
            else:
                cells.append(_fit("  (nothing)" if name == "bm25" and rank == 0 else "", width))
        lines.append(f"{rank + 1:<4} " + " ".join(cells).rstrip())
    if relevant:
        found = {name: next((i + 1 for i, cid in enumerate(r.get(QUERY_ID, [])) if cid in relevant), None)
                 for name, r in rankings.items()}
        lines.append("first labelled chunk at rank: " + ", ".join(
            f"{name} {rank if rank else '>' + str(len(rankings[name].get(QUERY_ID, [])))}" for name, rank in found.items()))
    return "\n".join(lines)
