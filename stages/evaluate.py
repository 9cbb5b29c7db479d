"""Stage ``evaluate``: held-out questions, retrieval over the whole corpus, four retrievers side by side.

Writes ``metrics/eval.json`` (numbers only, git-tracked), the hit-rate-vs-k
curve ``metrics/hit_rate.csv`` and per-query results for error analysis.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from stages.lib.api_embeddings import CachedAPIEmbedder, resolve_model_name
from stages.lib.errors import UserError, run_stage
from stages.lib.files import write_json, write_jsonl
from stages.lib.llm_client import load_endpoint
from stages.lib.params import load_params
from stages.lib.qa_dataset import QADataset
from stages.lib.retrieval import (
    BM25Index,
    DenseIndex,
    first_relevant_rank,
    format_table,
    reciprocal_rank_fusion,
    retrieval_metrics,
    tune_fusion_weight,
)

QUESTIONS_FILE = Path("data/questions/test.json")
VAL_FILE = Path("data/questions/val.json")
FUSION_WEIGHTS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0)
MODELS = {"base": Path("models/base"), "finetuned": Path("models/finetuned")}
METRICS_FILE = Path("metrics/eval.json")
BY_STYLE_FILE = Path("metrics/eval_by_style.json")
CURVE_FILE = Path("metrics/hit_rate.csv")
PER_QUERY_FILE = Path("data/eval/per_query.jsonl")
# Vectors bought from API embedding models; a persistent DVC output.
EMBEDDING_CACHE_DIR = Path("data/embedding_cache")
DEPTH = 100
CURVE_MAX_K = 10


@run_stage("evaluate")
def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    all_params = load_params()
    params = all_params.evaluate
    test = QADataset.load(QUESTIONS_FILE)
    if not test.queries:
        raise UserError(f"{QUESTIONS_FILE} has no queries: check 'questions.eval_styles' and 'corpus.split'.")
    depth = max(DEPTH, max(params.k_values), CURVE_MAX_K)

    # Fail on a missing key or model name before any slow work.
    endpoint = load_endpoint("evaluate.api_embedding_models") if params.api_embedding_models else None
    api_models = [resolve_model_name(entry) for entry in params.api_embedding_models]
    EMBEDDING_CACHE_DIR.mkdir(parents=True, exist_ok=True)  # a persistent DVC output, even when unused
    val = QADataset.load(VAL_FILE)
    rankings, val_rankings = {}, {}
    for name, path in MODELS.items():
        if not path.is_dir():
            raise UserError(f"{path} is missing: run `dvc repro` so the stage that writes it runs.")
        model = SentenceTransformer(str(path), device="cpu")
        model.max_seq_length = all_params.model.max_seq_length
        index = DenseIndex(model, test.corpus, params.batch_size)
        rankings[name] = index.rank(test.queries, depth)
        if name == "finetuned" and val.queries:
            val_rankings[name] = index.rank(val.queries, depth)
    for name in api_models:
        embedder = CachedAPIEmbedder(name, endpoint, EMBEDDING_CACHE_DIR, params.api_batch_size,
                                     params.api_max_retries, params.api_timeout_s)
        rankings[f"api:{name}"] = DenseIndex(embedder, test.corpus, params.api_batch_size).rank(test.queries, depth)
        print(f"[evaluate] api:{name}: {embedder.requested_texts} texts sent, the rest from {EMBEDDING_CACHE_DIR}/")
    lexical = BM25Index(test.corpus)
    rankings["bm25"] = lexical.rank(test.queries, depth)
    weight = params.hybrid_dense_weight
    if weight == "auto":
        # Chosen on the val split, never on test.
        weight = tune_fusion_weight(
            val_rankings["finetuned"], lexical.rank(val.queries, depth), val.relevant_docs, params.rrf_k, depth,
            FUSION_WEIGHTS,
        ) if val.queries else 1.0
    rankings["hybrid"] = reciprocal_rank_fusion(
        [rankings["finetuned"], rankings["bm25"]], params.rrf_k, depth, [weight, 1.0]
    )

    results = {name: retrieval_metrics(r, test.relevant_docs, params.k_values) for name, r in rankings.items()}
    summary: dict = {
        **results, "test_queries": len(test.queries), "corpus_size": len(test.corpus),
        "hybrid_dense_weight": weight,
    }
    top_k = 5 if 5 in params.k_values else params.k_values[-1]
    if params.llamaindex_check:
        from stages.lib.llamaindex_check import llamaindex_hit_rate

        li_hit = llamaindex_hit_rate(str(MODELS["finetuned"]), test.queries, test.corpus, test.relevant_docs, top_k)
        summary[f"llamaindex_finetuned_hit@{top_k}"] = li_hit
        ours = results["finetuned"][f"hit@{top_k}"]
        if abs(li_hit - ours) > 1.0 / len(test.queries) + 1e-9:
            print(f"[evaluate] WARNING: llama-index retriever hit@{top_k} {li_hit} differs from ours {ours}")
    write_json(METRICS_FILE, summary)
    write_json(BY_STYLE_FILE, _by_style(test, rankings, params.k_values))
    _write_curve(rankings, test.relevant_docs)
    _write_per_query(test, rankings)

    columns = [f"hit@{k}" for k in params.k_values] + ["mrr@10", "ndcg@10"]
    print(f"\nRetrieval on {len(test.queries)} held-out questions over {len(test.corpus)} chunks:\n")
    print(format_table(results, columns))
    print(f"(hybrid = reciprocal-rank fusion of finetuned x{weight} and bm25 x1, weight chosen on val)")
    if params.llamaindex_check:
        print(f"\nllama-index VectorStoreIndex retriever, fine-tuned hit@{top_k}: {summary[f'llamaindex_finetuned_hit@{top_k}']:.3f}")
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
