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

Transfer (``metrics/transfer.json``): the base and the fine-tuned model searched over documents that are not the
corpus (``evaluate.transfer_documents_dir``, by default the judge laws the corpus does not hold) with the test
questions of the golden sets about them (``stages/lib/retrieval/transfer.py``).

Sized for large corpora: each model encodes the corpus once per run (and never
again for texts already in ``data/embedding_cache/``), rankings keep only the
top ``DEPTH`` per query, block by block, and each question set is capped to a
seeded sample of ``evaluate.max_queries``.
"""

from __future__ import annotations

import logging
import os

from stages.lib.common.errors import run_stage
from stages.lib.common.params import load_params
from stages.lib.common.timers import PhaseTimer
from stages.lib.retrieval.eval_inputs import EMBEDDING_CACHE_DIR, MODELS, Settings, load_inputs
from stages.lib.retrieval.eval_report import build_report, log_inputs, log_tables, write_outputs
from stages.lib.retrieval.question_sets import SYNTHETIC_TEST
from stages.lib.retrieval.side_by_side import backend_metrics, dense_vectors, rank_every_set
from stages.lib.retrieval.transfer import describe, score_transfer, transfer_vectors
from stages.lib.retrieval.vector_cache import prune_model_caches

log = logging.getLogger(__name__)


@run_stage("evaluate")
def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    timer = PhaseTimer("evaluate")

    # 1. Settings for this machine and inputs, checked before any slow work: the reported question sets (synthetic
    #    test, golden test), the one knobs are tuned on, and the transfer documents with their golden test questions.
    all_params = load_params()
    settings = Settings.resolve(all_params)
    params, hardware = settings.params, settings.hardware
    inputs, transfer_inputs = load_inputs(all_params)
    log_inputs(inputs, hardware)
    log.info(describe(transfer_inputs))

    # 2. Dense vectors: one pass per model over the corpus and every query set it ranks, backed by the cache.
    vectors, passes = dense_vectors(inputs, params, hardware, all_params.model.max_seq_length, EMBEDDING_CACHE_DIR, timer)
    caches = [model_pass.cache for model_pass in passes.values()]

    # 3. Rankings over every chunk for every set: dense, BM25, and their fusion (chosen on val, never on a test set);
    #    the scores with their intervals, word overlaps and the verdict.
    rankings, fusion, chosen_on = rank_every_set(inputs, vectors, params, settings.depth, timer)
    report = build_report(inputs, rankings, fusion, hardware, params.k_values, timer)
    report.summary.update(backend_metrics(passes))

    # 4. llama-index cross-check on a seeded sample, against our ranking of the same sample.
    if params.llamaindex_check:
        from stages.lib.retrieval.llamaindex_check import cross_check, warn_if_apart

        with timer("llama-index check"):
            report.summary.update(cross_check(
                str(MODELS["finetuned"]), hardware, all_params.model.max_seq_length, inputs.test,
                vectors["finetuned"].queries[SYNTHETIC_TEST], vectors["finetuned"].corpus, params.llamaindex_check_queries,
                params.llamaindex_check_corpus, settings.top_k, params.batch_size, inputs.prompts,
            ))
        warn_if_apart(report.summary, settings.top_k)

    # 5. Transfer: base and fine-tuned over the other documents, after the side-by-side so its vectors are untouched.
    transfer = {}
    if transfer_inputs.sets:
        with timer("transfer"):
            transfer = score_transfer(transfer_inputs, transfer_vectors(transfer_inputs, passes, inputs.prompts))

    # 6. Outputs and the report.
    write_outputs(report, inputs, rankings, params.k_values, transfer)
    log_tables(report, params.k_values, fusion, chosen_on, settings.top_k, params.llamaindex_check, transfer)

    # 7. Cache housekeeping, only after a successful run: compact what grew, drop models no longer evaluated.
    for cache in caches:
        cache.compact()
    removed = prune_model_caches(EMBEDDING_CACHE_DIR, keep=[c.folder.name for c in caches if c.folder])
    if removed:
        log.info(f"removed the vector caches of {len(removed)} model(s) no longer evaluated")
    timer.log_summary()


if __name__ == "__main__":
    main()
