"""Stage ``evaluate``: held-out questions, retrieval over the whole corpus, four retrievers side by side.

Writes ``metrics/eval.json`` (numbers only, git-tracked), the hit-rate-vs-k
curve ``metrics/hit_rate.csv`` and per-query results for error analysis.

Sized for large corpora: each model encodes the corpus once per run (and never
again for texts already in ``data/embedding_cache/``), rankings keep only the
top ``DEPTH`` per query, block by block, and each question set is capped to a
seeded sample of ``evaluate.max_queries``.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from stages.lib.api_embeddings import CachedAPIEmbedder, resolve_model_name
from stages.lib.dense_encoding import EvalVectors, LazySentenceEncoder, encode_eval_texts
from stages.lib.device import resolve_device
from stages.lib.errors import UserError, run_stage
from stages.lib.eval_sample import cap_queries
from stages.lib.files import write_json, write_jsonl
from stages.lib.llm_client import Endpoint, load_endpoint
from stages.lib.params import EvaluateParams, load_params
from stages.lib.phase_timer import PhaseTimer
from stages.lib.qa_dataset import QADataset
from stages.lib.retrieval import (
    BM25Index,
    Ranking,
    dense_rank,
    first_relevant_rank,
    format_table,
    reciprocal_rank_fusion,
    retrieval_metrics,
    tune_fusion_weight,
)
from stages.lib.vector_cache import VectorCache, open_model_cache, prune_model_caches

QUESTIONS_FILE = Path("data/questions/test.json")
VAL_FILE = Path("data/questions/val.json")
FUSION_WEIGHTS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0)
MODELS = {"base": Path("models/base"), "finetuned": Path("models/finetuned")}
METRICS_FILE = Path("metrics/eval.json")
BY_STYLE_FILE = Path("metrics/eval_by_style.json")
CURVE_FILE = Path("metrics/hit_rate.csv")
PER_QUERY_FILE = Path("data/eval/per_query.jsonl")
# Vectors of local models (st-*/ shards) and of API embedding models (*.jsonl); a persistent DVC output.
EMBEDDING_CACHE_DIR = Path("data/embedding_cache")
DEPTH = 100
CURVE_MAX_K = 10


@dataclass
class Inputs:
    test: QADataset  # the evaluated (capped) test set
    val: QADataset  # the capped val set, used only to tune the fusion weight
    test_total: int
    val_total: int
    tune_weight: bool
    api_models: list[str]
    endpoint: Endpoint | None


@run_stage("evaluate")
def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    all_params = load_params()
    params = all_params.evaluate
    timer = PhaseTimer("evaluate")
    depth = max(DEPTH, max(params.k_values), CURVE_MAX_K)
    top_k = 5 if 5 in params.k_values else params.k_values[-1]
    device = resolve_device(all_params.compute.device)

    # 1. Inputs, checked before any slow work; each question set capped to one seeded sample for every retriever.
    inputs = _load_inputs(params)
    test = inputs.test
    print(f"[evaluate] {len(test.queries)} of {inputs.test_total} test queries"
          + (f" and {len(inputs.val.queries)} of {inputs.val_total} val queries" if inputs.tune_weight else "")
          + f", over {len(test.corpus)} chunks, on {device}", flush=True)

    # 2. Dense vectors: one pass per model over the corpus and every query set it ranks, backed by the cache.
    vectors, caches = _dense_vectors(inputs, params, device, all_params.model.max_seq_length, timer)

    # 3. Rankings over every chunk: dense, BM25, and their fusion (weight tuned on val, never on test).
    rankings, weight = _rankings(inputs, vectors, params, depth, timer)
    results = {name: retrieval_metrics(r, test.relevant_docs, params.k_values) for name, r in rankings.items()}
    summary: dict = {
        **results, "test_queries": len(test.queries), "test_queries_total": inputs.test_total,
        "corpus_size": len(test.corpus), "hybrid_dense_weight": weight,
    }
    if inputs.tune_weight:
        summary.update(val_queries=len(inputs.val.queries), val_queries_total=inputs.val_total)

    # 4. llama-index cross-check on a seeded sample, against our ranking of the same sample.
    if params.llamaindex_check:
        from stages.lib.llamaindex_check import cross_check

        with timer("llama-index check"):
            summary.update(cross_check(
                str(MODELS["finetuned"]), device, all_params.model.max_seq_length, test,
                vectors["finetuned"].queries["test"], vectors["finetuned"].corpus, params.llamaindex_check_queries,
                params.llamaindex_check_corpus, top_k, params.batch_size,
            ))
        theirs, ours = summary[f"llamaindex_finetuned_hit@{top_k}"], summary[f"ours_on_llamaindex_sample_hit@{top_k}"]
        if abs(theirs - ours) > 1.0 / summary["llamaindex_sample_queries"] + 1e-9:
            print(f"[evaluate] WARNING: llama-index retriever hit@{top_k} {theirs} differs from ours {ours} "
                  "on the same sample by more than one query")

    # 5. Outputs and the table.
    write_json(METRICS_FILE, summary)
    write_json(BY_STYLE_FILE, _by_style(test, rankings, params.k_values))
    _write_curve(rankings, test.relevant_docs)
    _write_per_query(test, rankings)
    _print_table(summary, results, params.k_values, weight, top_k, params.llamaindex_check)

    # 6. Cache housekeeping, only after a successful run: compact what grew, drop models no longer evaluated.
    for cache in caches:
        cache.compact()
    removed = prune_model_caches(EMBEDDING_CACHE_DIR, keep=[c.folder.name for c in caches if c.folder])
    if removed:
        print(f"[evaluate] removed the vector caches of {len(removed)} model(s) no longer evaluated")
    print(timer.summary(), flush=True)


def _load_inputs(params: EvaluateParams) -> Inputs:
    test = QADataset.load(QUESTIONS_FILE)
    if not test.queries:
        raise UserError(f"{QUESTIONS_FILE} has no queries: check 'questions.eval_styles' and 'corpus.split'.")
    # A missing key or model name fails here, before the models load.
    endpoint = load_endpoint("evaluate.api_embedding_models") if params.api_embedding_models else None
    api_models = [resolve_model_name(entry) for entry in params.api_embedding_models]
    val = QADataset.load(VAL_FILE)
    for path in MODELS.values():
        if not path.is_dir():
            raise UserError(f"{path} is missing: run `dvc repro` so the stage that writes it runs.")
    EMBEDDING_CACHE_DIR.mkdir(parents=True, exist_ok=True)  # a persistent DVC output, even when unused
    return Inputs(
        test=cap_queries(test, params.max_queries), val=cap_queries(val, params.max_queries),
        test_total=len(test.queries), val_total=len(val.queries),
        tune_weight=params.hybrid_dense_weight == "auto" and bool(val.queries),
        api_models=api_models, endpoint=endpoint,
    )


def _dense_vectors(inputs: Inputs, params: EvaluateParams, device: str, max_seq_length: int,
                   timer: PhaseTimer) -> tuple[dict[str, EvalVectors], list[VectorCache]]:
    corpus_texts = list(inputs.test.corpus.values())
    vectors: dict[str, EvalVectors] = {}
    caches: list[VectorCache] = []
    for name, path in MODELS.items():
        query_sets = {"test": inputs.test, **({"val": inputs.val} if name == "finetuned" and inputs.tune_weight else {})}
        with timer(f"encode {name}"):
            cache = open_model_cache(EMBEDDING_CACHE_DIR, path, max_seq_length)
            encoder = LazySentenceEncoder(path, device, max_seq_length, params.batch_size)
            vectors[name] = encode_eval_texts(corpus_texts, _query_texts(query_sets), encoder, cache,
                                              f"[evaluate] encode {name}")
        caches.append(cache)
    for name in inputs.api_models:
        # Their vectors are cached by the embedder itself (JSONL, per model); nothing local to store.
        embedder = CachedAPIEmbedder(name, inputs.endpoint, EMBEDDING_CACHE_DIR, params.api_batch_size,
                                     params.api_max_retries, params.api_timeout_s)
        with timer(f"encode api:{name}"):
            vectors[f"api:{name}"] = encode_eval_texts(corpus_texts, _query_texts({"test": inputs.test}), embedder.encode,
                                                       VectorCache(None), f"[evaluate] encode api:{name}")
        print(f"[evaluate] api:{name}: {embedder.requested_texts} texts sent, the rest from {EMBEDDING_CACHE_DIR}/")
    return vectors, caches


def _query_texts(query_sets: dict[str, QADataset]) -> dict[str, list[str]]:
    return {name: list(dataset.queries.values()) for name, dataset in query_sets.items()}


def _rankings(inputs: Inputs, vectors: dict[str, EvalVectors], params: EvaluateParams, depth: int,
              timer: PhaseTimer) -> tuple[dict[str, Ranking], float]:
    test, val = inputs.test, inputs.val
    corpus_ids = list(test.corpus)
    with timer("dense ranking"):
        rankings = {name: dense_rank(list(test.queries), v.queries["test"], corpus_ids, v.corpus, depth)
                    for name, v in vectors.items()}
        val_dense = dense_rank(list(val.queries), vectors["finetuned"].queries["val"], corpus_ids,
                               vectors["finetuned"].corpus, depth) if inputs.tune_weight else {}
    with timer("BM25 index"):
        lexical = BM25Index(test.corpus, desc="[evaluate] BM25 tokenize")
    with timer("BM25 retrieve"):
        rankings["bm25"] = lexical.rank(test.queries, depth, desc="[evaluate] BM25 retrieve")
        val_lexical = lexical.rank(val.queries, depth) if inputs.tune_weight else {}
    weight = params.hybrid_dense_weight
    if weight == "auto":
        weight = tune_fusion_weight(val_dense, val_lexical, val.relevant_docs, params.rrf_k, depth,
                                    FUSION_WEIGHTS) if inputs.tune_weight else 1.0
    rankings["hybrid"] = reciprocal_rank_fusion([rankings["finetuned"], rankings["bm25"]], params.rrf_k, depth,
                                                [weight, 1.0])
    return rankings, weight


def _print_table(summary: dict, results: dict, k_values: list[int], weight: float, top_k: int, checked: bool) -> None:
    columns = [f"hit@{k}" for k in k_values] + ["mrr@10", "ndcg@10"]
    sampled = (f" (a seeded sample of {summary['test_queries_total']})"
               if summary["test_queries"] < summary["test_queries_total"] else "")
    print(f"\nRetrieval on {summary['test_queries']} held-out questions{sampled} over {summary['corpus_size']} chunks:\n")
    print(format_table(results, columns))
    print(f"(hybrid = reciprocal-rank fusion of finetuned x{weight} and bm25 x1, weight chosen on val)")
    if checked:
        print(f"\nllama-index VectorStoreIndex retriever, fine-tuned hit@{top_k}: "
              f"{summary[f'llamaindex_finetuned_hit@{top_k}']:.3f} (ours on the same "
              f"{summary['llamaindex_sample_queries']} queries and {summary['llamaindex_sample_corpus']} chunks: "
              f"{summary[f'ours_on_llamaindex_sample_hit@{top_k}']:.3f})")
    print()


def _by_style(test: QADataset, rankings: dict, k_values: list[int]) -> dict:
    styles = sorted(set(test.query_styles.values()))
    out = {}
    for style in styles:
        relevant = {q: d for q, d in test.relevant_docs.items() if test.query_styles.get(q) == style}
        out[style] = {name: retrieval_metrics(r, relevant, k_values) for name, r in rankings.items()}
        out[style]["queries"] = len(relevant)
    return out


def _write_curve(rankings: dict, relevant_docs: dict[str, list[str]]) -> None:
    ks = list(range(1, CURVE_MAX_K + 1))
    curves = {name: retrieval_metrics(r, relevant_docs, ks) for name, r in rankings.items()}
    CURVE_FILE.parent.mkdir(parents=True, exist_ok=True)
    with CURVE_FILE.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["k", *curves])
        for k in ks:
            writer.writerow([k, *(curves[name][f"hit@{k}"] for name in curves)])


def _write_per_query(test: QADataset, rankings: dict) -> None:
    rows = []
    for qid, text in test.queries.items():
        relevant = set(test.relevant_docs[qid])
        row = {"id": qid, "query": text, "style": test.query_styles.get(qid, ""), "relevant": sorted(relevant)}
        for name, ranking in rankings.items():
            row[f"{name}_rank"] = first_relevant_rank(ranking[qid], relevant)
            row[f"{name}_top3"] = ranking[qid][:3]
        rows.append(row)
    write_jsonl(PER_QUERY_FILE, rows)


if __name__ == "__main__":
    main()
