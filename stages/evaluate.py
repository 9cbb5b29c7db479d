"""Stage ``evaluate``: held-out questions, retrieval over the whole corpus, four retrievers side by side.

Writes ``metrics/eval.json`` (numbers only, git-tracked), the hit-rate-vs-k
curve ``metrics/hit_rate.csv`` and per-query results for error analysis.

Besides the synthetic test split it reports the golden question sets
(``evaluate.golden_sets``: questions written by people), each retriever with a
95% paired-bootstrap interval for hit@5 and MRR@10 and for its difference from
BM25; the fusion (reciprocal-rank or convex, and its weight) is chosen on golden
val when there is one.

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

from stages.lib.common.endpoint import Endpoint, load_endpoint
from stages.lib.common.errors import UserError, run_stage
from stages.lib.common.files import write_json, write_jsonl
from stages.lib.common.params import EvaluateParams, load_params
from stages.lib.common.timers import PhaseTimer
from stages.lib.documents.chunk_file import load_chunks
from stages.lib.models.hardware import resolve_device
from stages.lib.models.prompts import NO_PROMPTS, Prompts, resolve_prompts
from stages.lib.questions.qa_dataset import QADataset
from stages.lib.retrieval.api_embeddings import CachedAPIEmbedder, resolve_model_name
from stages.lib.retrieval.dense_encoding import EvalVectors, LazySentenceEncoder, encode_eval_texts
from stages.lib.retrieval.fusion import RRF, Fusion, FusionChoice, candidates, choose_fusion, fuse
from stages.lib.retrieval.intervals import format_gain, format_interval_table, intervals, per_query
from stages.lib.retrieval.question_sets import SYNTHETIC_TEST, QuestionSets, build_question_sets
from stages.lib.retrieval.rankers import BM25Index, Ranking, dense_rank, first_relevant_rank, format_table, retrieval_metrics
from stages.lib.retrieval.vector_cache import VectorCache, open_model_cache, prune_model_caches

QUESTIONS_FILE = Path("data/questions/test.json")
VAL_FILE = Path("data/questions/val.json")
MODELS = {"base": Path("models/base"), "finetuned": Path("models/finetuned")}
# The seed-recipe baseline (stage seed_recipe): a row only when that stage trained a model there.
SEED_RECIPE_DIR = Path("models/seed_recipe")
METRICS_FILE = Path("metrics/eval.json")
BY_STYLE_FILE = Path("metrics/eval_by_style.json")
CURVE_FILE = Path("metrics/hit_rate.csv")
PER_QUERY_FILE = Path("data/eval/per_query.jsonl")
# Vectors of local models (st-*/ shards) and of API embedding models (*.jsonl); a persistent DVC output.
EMBEDDING_CACHE_DIR = Path("data/embedding_cache")
DEPTH = 100
CURVE_MAX_K = 10
TUNING = "tuning"  # the query set knobs are tuned on, encoded with the fine-tuned model only
# Fine-tuned models are also compared with the model they started from, on every set.
COMPARED_WITH_BASE = {"finetuned": "base", "seed_recipe": "base"}


@dataclass
class Inputs:
    sets: QuestionSets
    models: dict[str, Path]  # local models to evaluate, in row order
    api_models: list[str]
    endpoint: Endpoint | None
    prompts: Prompts  # for every local model: the ones training used (and saved in models/finetuned)

    @property
    def test(self) -> QADataset:
        return self.sets.reported[SYNTHETIC_TEST]


@run_stage("evaluate")
def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    all_params = load_params()
    params = all_params.evaluate
    timer = PhaseTimer("evaluate")
    depth = max(DEPTH, max(params.k_values), CURVE_MAX_K)
    top_k = 5 if 5 in params.k_values else params.k_values[-1]
    device = resolve_device(all_params.compute.device)

    # 1. Inputs, checked before any slow work: the reported question sets (synthetic test, golden test)
    #    and the one knobs are tuned on, each capped to one seeded sample for every retriever.
    inputs = _load_inputs(params, all_params.model.query_prompt, all_params.model.document_prompt)
    test = inputs.test
    _print_inputs(inputs, device)

    # 2. Dense vectors: one pass per model over the corpus and every query set it ranks, backed by the cache.
    vectors, caches = _dense_vectors(inputs, params, device, all_params.model.max_seq_length, timer)

    # 3. Rankings over every chunk for every set: dense, BM25, and their fusion (chosen on val, never on a test set).
    rankings, fusion, chosen_on = _rankings(inputs, vectors, params, depth, timer)
    results = _scored(inputs.sets, rankings, params.k_values)
    summary: dict = {
        **results[SYNTHETIC_TEST], "test_queries": len(test.queries), "test_queries_total": inputs.sets.totals[SYNTHETIC_TEST],
        "corpus_size": len(test.corpus), "hybrid_fusion": fusion.method, "hybrid_dense_weight": fusion.weight,
        **{name: {**scores, "queries": len(inputs.sets.reported[name].queries)}
           for name, scores in results.items() if name != SYNTHETIC_TEST},
    }
    if inputs.sets.tuning is not None:
        summary.update(tuning_queries=len(inputs.sets.tuning.queries), tuning_queries_total=inputs.sets.tuning_total)

    # 4. llama-index cross-check on a seeded sample, against our ranking of the same sample.
    if params.llamaindex_check:
        from stages.lib.retrieval.llamaindex_check import cross_check

        with timer("llama-index check"):
            summary.update(cross_check(
                str(MODELS["finetuned"]), device, all_params.model.max_seq_length, test,
                vectors["finetuned"].queries[SYNTHETIC_TEST], vectors["finetuned"].corpus, params.llamaindex_check_queries,
                params.llamaindex_check_corpus, top_k, params.batch_size, inputs.prompts,
            ))
        theirs, ours = summary[f"llamaindex_finetuned_hit@{top_k}"], summary[f"ours_on_llamaindex_sample_hit@{top_k}"]
        if abs(theirs - ours) > 1.0 / summary["llamaindex_sample_queries"] + 1e-9:
            print(f"[evaluate] WARNING: llama-index retriever hit@{top_k} {theirs} differs from ours {ours} "
                  "on the same sample by more than one query")

    # 5. Outputs and the tables.
    write_json(METRICS_FILE, summary)
    write_json(BY_STYLE_FILE, _by_style(test, rankings[SYNTHETIC_TEST], params.k_values))
    _write_curve(inputs.sets, rankings)
    _write_per_query(inputs.sets, rankings)
    _print_tables(summary, results, params.k_values, fusion, chosen_on, top_k, params.llamaindex_check)

    # 6. Cache housekeeping, only after a successful run: compact what grew, drop models no longer evaluated.
    for cache in caches:
        cache.compact()
    removed = prune_model_caches(EMBEDDING_CACHE_DIR, keep=[c.folder.name for c in caches if c.folder])
    if removed:
        print(f"[evaluate] removed the vector caches of {len(removed)} model(s) no longer evaluated")
    print(timer.summary(), flush=True)


def _load_inputs(params: EvaluateParams, query_prompt: str, document_prompt: str) -> Inputs:
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
    chunks = load_chunks() if params.golden_sets else []
    sets = build_question_sets(test, val, chunks, params.golden_sets, params.max_queries)
    seed_recipe = {"seed_recipe": SEED_RECIPE_DIR} if (SEED_RECIPE_DIR / "modules.json").is_file() else {}
    models = {"base": MODELS["base"], **seed_recipe, "finetuned": MODELS["finetuned"]}
    prompts = resolve_prompts(query_prompt, document_prompt, MODELS["base"])
    return Inputs(sets, models, api_models, endpoint, prompts)


def _print_inputs(inputs: Inputs, device: str) -> None:
    sets = inputs.sets
    listed = ", ".join(f"{name} {len(d.queries)}" + (f" of {sets.totals[name]}" if len(d.queries) < sets.totals[name] else "")
                       for name, d in sets.reported.items())
    tuning = f"; knobs tuned on {sets.tuning_name} ({len(sets.tuning.queries)})" if sets.tuning is not None else ""
    print(f"[evaluate] queries: {listed}{tuning}; over {len(inputs.test.corpus)} chunks, on {device}; "
          f"{inputs.prompts.describe()}", flush=True)
    for file in sets.skipped_golden:
        print(f"[evaluate] golden set {file}: none of its documents is in this corpus, skipped", flush=True)


def _dense_vectors(inputs: Inputs, params: EvaluateParams, device: str, max_seq_length: int,
                   timer: PhaseTimer) -> tuple[dict[str, EvalVectors], list[VectorCache]]:
    corpus_texts = list(inputs.test.corpus.values())
    vectors: dict[str, EvalVectors] = {}
    caches: list[VectorCache] = []
    tuning = {TUNING: inputs.sets.tuning} if inputs.sets.tuning is not None else {}
    for name, path in inputs.models.items():
        query_sets = {**inputs.sets.reported, **(tuning if name == "finetuned" else {})}
        with timer(f"encode {name}"):
            cache = open_model_cache(EMBEDDING_CACHE_DIR, path, max_seq_length)
            encoder = LazySentenceEncoder(path, device, max_seq_length, params.batch_size)
            # The seed's recipe trains and retrieves without prompts (llama-index's defaults): measured as it is used.
            prompts = NO_PROMPTS if name == "seed_recipe" else inputs.prompts
            vectors[name] = encode_eval_texts(corpus_texts, _query_texts(query_sets), encoder, cache,
                                              f"[evaluate] encode {name}", prompts)
        caches.append(cache)
    for name in inputs.api_models:
        # Their vectors are cached by the embedder itself (JSONL, per model); nothing local to store.
        embedder = CachedAPIEmbedder(name, inputs.endpoint, EMBEDDING_CACHE_DIR, params.api_batch_size,
                                     params.api_max_retries, params.api_timeout_s)
        with timer(f"encode api:{name}"):
            vectors[f"api:{name}"] = encode_eval_texts(corpus_texts, _query_texts(inputs.sets.reported), embedder.encode,
                                                       VectorCache(None), f"[evaluate] encode api:{name}",
                                                       Prompts(query=params.api_query_instruction))
        print(f"[evaluate] api:{name}: {embedder.requested_texts} texts sent, the rest from {EMBEDDING_CACHE_DIR}/")
    return vectors, caches


def _query_texts(query_sets: dict[str, QADataset]) -> dict[str, list[str]]:
    return {name: list(dataset.queries.values()) for name, dataset in query_sets.items()}


def _rankings(inputs: Inputs, vectors: dict[str, EvalVectors], params: EvaluateParams, depth: int,
              timer: PhaseTimer) -> tuple[dict[str, dict[str, Ranking]], Fusion, str]:
    """Set name -> retriever -> ranking, the hybrid's fusion, and where that came from."""
    corpus_ids = list(inputs.test.corpus)
    rankings: dict[str, dict[str, Ranking]] = {name: {} for name in inputs.sets.reported}
    with timer("dense ranking"):
        for set_name, dataset in inputs.sets.reported.items():
            for name, v in vectors.items():
                rankings[set_name][name] = dense_rank(list(dataset.queries), v.queries[set_name], corpus_ids, v.corpus, depth)
    with timer("BM25 index"):
        lexical = BM25Index(inputs.test.corpus, desc="[evaluate] BM25 tokenize")
    with timer("BM25 retrieve"):
        for set_name, dataset in inputs.sets.reported.items():
            rankings[set_name]["bm25"] = lexical.rank(dataset.queries, depth, desc=f"[evaluate] BM25 retrieve {set_name}")
    with timer("fusion choice"):
        fusion, chosen_on = _choose_fusion(inputs, vectors, lexical, params, depth)
    for by_retriever in rankings.values():
        by_retriever["hybrid"] = fuse(by_retriever["finetuned"], by_retriever["bm25"], fusion, params.rrf_k, depth)
    return rankings, fusion, chosen_on


def _choose_fusion(inputs: Inputs, vectors: dict[str, EvalVectors], lexical: BM25Index, params: EvaluateParams,
                   depth: int) -> tuple[Fusion, str]:
    tried = candidates(params.fusion, params.hybrid_dense_weight)
    tuning = inputs.sets.tuning
    if len(tried) == 1:
        return tried[0], "fixed in params.yaml"
    if tuning is None:
        # Nothing labelled to choose on: plain RRF, the fusion that needs no tuning.
        return Fusion(RRF, 1.0), "the default: no val questions to choose on"
    dense = dense_rank(list(tuning.queries), vectors["finetuned"].queries[TUNING], list(inputs.test.corpus),
                       vectors["finetuned"].corpus, depth)
    choice = choose_fusion(dense, lexical.rank(tuning.queries, depth), tuning.relevant_docs, tried, params.rrf_k, depth)
    _print_choice(choice, inputs.sets.tuning_name)
    return choice.fusion, f"chosen on {inputs.sets.tuning_name}"


def _print_choice(choice: FusionChoice, tuned_on: str) -> None:
    rows = ", ".join(f"{name} MRR@10 {m['mrr@10']:.3f} hit@5 {m['hit@5']:.3f}" for name, m in choice.validation.items())
    print(f"[evaluate] fusion chosen on {tuned_on}: {choice.fusion.describe()} ({rows})", flush=True)


def _scored(sets: QuestionSets, rankings: dict[str, dict[str, Ranking]], k_values: list[int]) -> dict[str, dict]:
    """Set -> retriever -> metrics, with paired-bootstrap intervals for hit@5 and MRR@10 (and vs BM25)."""
    results = {}
    for set_name, dataset in sets.reported.items():
        query_ids = list(dataset.queries)
        per_retriever = {name: per_query(r, dataset.relevant_docs, query_ids) for name, r in rankings[set_name].items()}
        bands = intervals(per_retriever, baseline="bm25", compared=COMPARED_WITH_BASE)
        results[set_name] = {name: {**retrieval_metrics(r, dataset.relevant_docs, k_values), **bands.get(name, {})}
                             for name, r in rankings[set_name].items()}
    return results


def _print_tables(summary: dict, results: dict, k_values: list[int], fusion: Fusion, chosen_on: str, top_k: int,
                  checked: bool) -> None:
    columns = [f"hit@{k}" for k in k_values] + ["mrr@10", "ndcg@10"]
    sampled = (f" (a seeded sample of {summary['test_queries_total']})"
               if summary["test_queries"] < summary["test_queries_total"] else "")
    print(f"\nSynthetic test split: {summary['test_queries']} held-out questions{sampled} over "
          f"{summary['corpus_size']} chunks:\n")
    print(format_table(results[SYNTHETIC_TEST], columns))
    print(f"(hybrid = {fusion.describe()}, {chosen_on})")
    _print_gains(results[SYNTHETIC_TEST])
    for set_name, scores in results.items():
        if set_name == SYNTHETIC_TEST:
            continue
        print(f"\n{set_name}: {summary[set_name]['queries']} questions written by people "
              "(95% paired-bootstrap intervals):\n")
        print(format_interval_table(scores, baseline="bm25"))
        _print_gains(scores)
    if checked:
        print(f"\nllama-index VectorStoreIndex retriever, fine-tuned hit@{top_k}: "
              f"{summary[f'llamaindex_finetuned_hit@{top_k}']:.3f} (ours on the same "
              f"{summary['llamaindex_sample_queries']} queries and {summary['llamaindex_sample_corpus']} chunks: "
              f"{summary[f'ours_on_llamaindex_sample_hit@{top_k}']:.3f})")
    print()


def _print_gains(scores: dict[str, dict]) -> None:
    """Say plainly, per set, whether fine-tuning beat the model it started from."""
    for name, base in COMPARED_WITH_BASE.items():
        if name in scores and f"hit@5_diff_vs_{base}" in scores[name]:
            print(format_gain(scores[name], name, base))


def _by_style(test: QADataset, rankings: dict, k_values: list[int]) -> dict:
    styles = sorted(set(test.query_styles.values()))
    out = {}
    for style in styles:
        relevant = {q: d for q, d in test.relevant_docs.items() if test.query_styles.get(q) == style}
        out[style] = {name: retrieval_metrics(r, relevant, k_values) for name, r in rankings.items()}
        out[style]["queries"] = len(relevant)
    return out


def _write_curve(sets: QuestionSets, rankings: dict[str, dict[str, Ranking]]) -> None:
    """Hit rate at k = 1..CURVE_MAX_K, one row per (question set, retriever, k): long format, so the plot
    template can give each retriever a colour and each set a panel."""
    ks = list(range(1, CURVE_MAX_K + 1))
    CURVE_FILE.parent.mkdir(parents=True, exist_ok=True)
    with CURVE_FILE.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["question_set", "retriever", "k", "hit_rate"])
        for set_name, dataset in sets.reported.items():
            for name, ranking in rankings[set_name].items():
                metrics = retrieval_metrics(ranking, dataset.relevant_docs, ks)
                writer.writerows([set_name, name, k, metrics[f"hit@{k}"]] for k in ks)


def _write_per_query(sets: QuestionSets, rankings: dict[str, dict[str, Ranking]]) -> None:
    rows = []
    for set_name, dataset in sets.reported.items():
        for qid, text in dataset.queries.items():
            relevant = set(dataset.relevant_docs[qid])
            row = {"set": set_name, "id": qid, "query": text, "style": dataset.query_styles.get(qid, ""),
                   "relevant": sorted(relevant)}
            for name, ranking in rankings[set_name].items():
                row[f"{name}_rank"] = first_relevant_rank(ranking[qid], relevant)
                row[f"{name}_top3"] = ranking[qid][:3]
            rows.append(row)
    write_jsonl(PER_QUERY_FILE, rows)


if __name__ == "__main__":
    main()
