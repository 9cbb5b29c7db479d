"""Look at one question: the top results of every retriever, side by side.

    python -m stages.search "上市公司高管什么时候可以卖股票？"
    python -m stages.search --k 10 "insider trading penalty"

Not a DVC stage: it reads what the pipeline wrote (chunks, models, the fusion ``evaluate`` chose)
and changes nothing. When the question is one of a question set's (synthetic or golden, matched
on its normalised text), its labelled chunks are marked ``*``. Corpus vectors come from the
``evaluate`` stage's cache when they are there, so a search costs one query encoding per model.
"""

from __future__ import annotations

import argparse
import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stages.lib.common.errors import UserError, run_stage
from stages.lib.common.files import read_json
from stages.lib.common.params import Params, load_params
from stages.lib.documents.chunk_file import load_chunks
from stages.lib.documents.chunking import Chunk
from stages.lib.models.hardware import resolve_device
from stages.lib.models.prompts import resolve_prompts
from stages.lib.questions.qa_dataset import QADataset, normalize_query
from stages.lib.retrieval.dense_encoding import LazySentenceEncoder, encode_texts
from stages.lib.retrieval.fusion import RRF, Fusion, candidates, fuse
from stages.lib.retrieval.golden import golden_datasets, load_golden
from stages.lib.retrieval.rankers import BM25Index, Ranking, dense_rank
from stages.lib.retrieval.vector_cache import open_model_cache_read_only

MODELS = {"base": (Path("models/base"), "base_model"), "finetuned": (Path("models/finetuned"), "train")}
QUESTION_FILES = {split: Path(f"data/questions/{split}.json") for split in ("train", "val", "test")}
EVAL_METRICS = Path("metrics/eval.json")
EMBEDDING_CACHE_DIR = Path("data/embedding_cache")
QUERY_ID = "query"


@dataclass(frozen=True)
class Label:
    set_name: str
    relevant: frozenset[str]


@run_stage("search")
def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = _arguments()
    params = load_params()

    # 1. Inputs: the corpus, the models (each missing piece names the stage that makes it), the label.
    chunks = load_chunks()
    for path, stage in MODELS.values():
        if not path.is_dir():
            raise UserError(f"{path} is missing: run `dvc repro {stage}` first.")
    label = find_label(args.query, chunks, params)

    # 2. Rank with every retriever; the hybrid fuses the way `evaluate` chose.
    rankings = rank_all(args.query, chunks, params, depth=max(args.k, 100))

    # 3. Report.
    if label:
        print(f"from {label.set_name}; labelled chunks are marked *")
    print(format_side_by_side(rankings, {c.id: c for c in chunks}, label.relevant if label else frozenset(),
                              args.k, args.width))


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m stages.search", description=__doc__.splitlines()[0])
    parser.add_argument("query", help="the question, in quotes")
    parser.add_argument("--k", type=int, default=5, help="results per retriever (default 5)")
    parser.add_argument("--width", type=int, default=36, help="display columns per retriever (default 36)")
    args = parser.parse_args()
    if not args.query.strip():
        parser.error("the query is empty")
    if args.k < 1 or args.width < 12:
        parser.error("--k must be >= 1 and --width >= 12")
    return args


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
    device = resolve_device(params.compute.device)
    # The prompts `evaluate` encoded with, so its cached corpus vectors are the ones read here.
    prompts = resolve_prompts(params.model.query_prompt, params.model.document_prompt, MODELS["base"][0])
    rankings: dict[str, Ranking] = {}
    for name, (path, _) in MODELS.items():
        encoder = LazySentenceEncoder(path, device, params.model.max_seq_length, params.evaluate.batch_size)
        # Read-only: vectors `evaluate` stored are reused, new ones are kept in memory (the DVC output stays as it is).
        cache = open_model_cache_read_only(EMBEDDING_CACHE_DIR, path, params.model.max_seq_length)
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


if __name__ == "__main__":
    main()
