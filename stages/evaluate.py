"""Stage ``evaluate``: held-out questions, retrieval over the whole corpus, four retrievers side by side.

Writes ``metrics/eval.json`` (numbers only, git-tracked), the hit-rate-vs-k
curve ``metrics/hit_rate.csv`` and per-query results for error analysis.

It says its verdict first: fine-tuned vs base and vs BM25, and the best
retriever, judged on the golden question sets (``evaluate.golden_sets``:
questions written by people), each retriever with a 95% paired-bootstrap
interval for hit@5 and MRR@10 and for its difference from BM25. The fusion
(reciprocal-rank or convex, and its weight) is chosen on golden val when there is
one, and untuned otherwise. The synthetic test split is reported too, overall and
by word-overlap band (``metrics/eval_by_overlap.json``), but never judges: its
questions reuse their passages' words.

Sized for large corpora: each model encodes the corpus once per run (and never
again for texts already in ``data/embedding_cache/``), rankings keep only the
top ``DEPTH`` per query, block by block, and each question set is capped to a
seeded sample of ``evaluate.max_queries``.
"""

from __future__ import annotations

import os
from pathlib import Path

from stages.lib.common.endpoint import load_endpoint
from stages.lib.common.errors import UserError, run_stage
from stages.lib.common.files import write_json
from stages.lib.common.params import EvaluateParams, load_params
from stages.lib.common.timers import PhaseTimer
from stages.lib.documents.chunk_file import load_chunks
from stages.lib.models.hardware import encoding_batch_size, resolve_hardware
from stages.lib.models.prompts import resolve_prompts
from stages.lib.questions.qa_dataset import QADataset
from stages.lib.retrieval.api_embeddings import resolve_model_name
from stages.lib.retrieval.eval_report import CURVE_MAX_K, print_inputs, print_tables, summary_metrics, write_curve, write_per_query
from stages.lib.retrieval.question_sets import SYNTHETIC_TEST, build_question_sets
from stages.lib.retrieval.side_by_side import (
    DEPTH,
    Inputs,
    by_overlap,
    by_style,
    dense_vectors,
    mean_overlaps,
    rank_every_set,
    scored,
    word_overlaps,
)
from stages.lib.retrieval.vector_cache import prune_model_caches

QUESTIONS_FILE = Path("data/questions/test.json")
# The fine-tuned row is the model train selected (models/finetuned ships the same weights, with a card).
MODELS = {"base": Path("models/base"), "finetuned": Path("models/trained")}
# The seed-recipe baseline (stage seed_recipe): a row only when that stage trained a model there.
SEED_RECIPE_DIR = Path("models/seed_recipe")
METRICS_FILE = Path("metrics/eval.json")
BY_STYLE_FILE = Path("metrics/eval_by_style.json")
BY_OVERLAP_FILE = Path("metrics/eval_by_overlap.json")
CURVE_FILE = Path("metrics/hit_rate.csv")
PER_QUERY_FILE = Path("data/eval/per_query.jsonl")
# Vectors of local models (st-*/ shards) and of API embedding models (*.jsonl); a persistent DVC output.
EMBEDDING_CACHE_DIR = Path("data/embedding_cache")


@run_stage("evaluate")
def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    all_params = load_params()
    params = all_params.evaluate
    timer = PhaseTimer("evaluate")
    depth = max(DEPTH, max(params.k_values), CURVE_MAX_K)
    top_k = 5 if 5 in params.k_values else params.k_values[-1]
    # Resolved for this machine (bf16 where the CPU or GPU computes it natively), recorded in the metrics.
    hardware = resolve_hardware(all_params.compute.device, all_params.compute.precision)
    params = params.model_copy(update={"batch_size": encoding_batch_size(params.batch_size, hardware.device)})

    # 1. Inputs, checked before any slow work: the reported question sets (synthetic test, golden test)
    #    and the one knobs are tuned on, each capped to one seeded sample for every retriever.
    inputs = _load_inputs(params, all_params.model.query_prompt, all_params.model.document_prompt)
    test = inputs.test
    print_inputs(inputs, hardware)

    # 2. Dense vectors: one pass per model over the corpus and every query set it ranks, backed by the cache.
    vectors, caches = dense_vectors(inputs, params, hardware, all_params.model.max_seq_length, EMBEDDING_CACHE_DIR, timer)

    # 3. Rankings over every chunk for every set: dense, BM25, and their fusion (chosen on val, never on a test set).
    rankings, fusion, chosen_on = rank_every_set(inputs, vectors, params, depth, timer)
    results = scored(inputs.sets, rankings, params.k_values)
    with timer("word overlap"):
        overlaps = word_overlaps(inputs.sets)
    bands = by_overlap(inputs.sets, rankings, overlaps)
    summary = summary_metrics(inputs, results, fusion, hardware, mean_overlaps(overlaps))

    # 4. llama-index cross-check on a seeded sample, against our ranking of the same sample.
    if params.llamaindex_check:
        from stages.lib.retrieval.llamaindex_check import cross_check, warn_if_apart

        with timer("llama-index check"):
            summary.update(cross_check(
                str(MODELS["finetuned"]), hardware, all_params.model.max_seq_length, test,
                vectors["finetuned"].queries[SYNTHETIC_TEST], vectors["finetuned"].corpus, params.llamaindex_check_queries,
                params.llamaindex_check_corpus, top_k, params.batch_size, inputs.prompts,
            ))
        warn_if_apart(summary, top_k)

    # 5. Outputs and the tables.
    write_json(METRICS_FILE, summary)
    write_json(BY_STYLE_FILE, by_style(test, rankings[SYNTHETIC_TEST], params.k_values))
    write_json(BY_OVERLAP_FILE, bands)
    write_curve(CURVE_FILE, inputs.sets, rankings)
    write_per_query(PER_QUERY_FILE, inputs.sets, rankings)
    print_tables(summary, results, params.k_values, fusion, chosen_on, top_k, params.llamaindex_check, bands)

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
    for path in MODELS.values():
        if not path.is_dir():
            raise UserError(f"{path} is missing: run `dvc repro` so the stage that writes it runs.")
    EMBEDDING_CACHE_DIR.mkdir(parents=True, exist_ok=True)  # a persistent DVC output, even when unused
    chunks = load_chunks() if params.golden_sets else []
    sets = build_question_sets(test, chunks, params.golden_sets, params.max_queries)
    seed_recipe = {"seed_recipe": SEED_RECIPE_DIR} if (SEED_RECIPE_DIR / "modules.json").is_file() else {}
    models = {"base": MODELS["base"], **seed_recipe, "finetuned": MODELS["finetuned"]}
    prompts = resolve_prompts(query_prompt, document_prompt, MODELS["base"])
    return Inputs(sets, models, api_models, endpoint, prompts)


if __name__ == "__main__":
    main()
