"""The ``evaluate`` stage's computation: every retriever side by side on every question set it reports.

It owns the rows of the comparison (BM25, the base model, the fine-tuned one, the seed's recipe when
that stage trained a model, API embedding models, and the hybrid of fine-tuned and BM25), the dense
vectors each of them needs (one pass per model, backed by the vector cache), the rankings over the
whole corpus, the fusion choice (on golden val, never on a set that is reported; untuned without one), the
scores per set: metrics, paired-bootstrap intervals and the intervals of differences from BM25 and from the
base model, and each question's word overlap with its passages, with the scores by overlap band. What gets
printed or written from these is in ``eval_report.py``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from stages.lib.common.endpoint import Endpoint
from stages.lib.common.params import EvaluateParams
from stages.lib.common.timers import PhaseTimer
from stages.lib.documents.lexical_overlap import BANDS, band_of, word_overlap
from stages.lib.documents.text import corpus_language
from stages.lib.models.hardware import Hardware
from stages.lib.models.prompts import NO_PROMPTS, Prompts
from stages.lib.questions.qa_dataset import QADataset
from stages.lib.retrieval.api_embeddings import CachedAPIEmbedder
from stages.lib.retrieval.dense_encoding import EvalVectors, ModelPass, encode_eval_texts, open_model_pass
from stages.lib.retrieval.fusion import UNTUNED, Fusion, FusionChoice, candidates, choose_fusion, fuse
from stages.lib.retrieval.intervals import intervals, per_query
from stages.lib.retrieval.question_sets import SYNTHETIC_TEST, QuestionSets
from stages.lib.retrieval.rankers import BM25Index, Ranking, dense_rank, retrieval_metrics
from stages.lib.retrieval.vector_cache import VectorCache

log = logging.getLogger(__name__)

DEPTH = 100
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


def dense_vectors(inputs: Inputs, params: EvaluateParams, hardware: Hardware, max_seq_length: int, cache_dir: Path,
                  timer: PhaseTimer) -> tuple[dict[str, EvalVectors], dict[str, ModelPass]]:
    """Every row's vectors, and each local model's pass (its runtime, encoder and cache: transfer reuses them)."""
    corpus_texts = list(inputs.test.corpus.values())
    vectors: dict[str, EvalVectors] = {}
    passes: dict[str, ModelPass] = {}
    tuning = {TUNING: inputs.sets.tuning} if inputs.sets.tuning is not None else {}
    for name, path in inputs.models.items():
        query_sets = {**inputs.sets.reported, **(tuning if name == "finetuned" else {})}
        queries = _query_texts(query_sets)
        # The seed's recipe trains and retrieves without prompts (llama-index's defaults): measured as it is used.
        prompts = NO_PROMPTS if name == "seed_recipe" else inputs.prompts
        with timer(f"encode {name}"):
            query_texts = [text for texts in queries.values() for text in texts]
            passes[name] = model_pass = open_model_pass(
                path, hardware, max_seq_length, params.batch_size, params.backend, corpus_texts + query_texts,
                [prompts.document] * len(corpus_texts) + [prompts.query] * len(query_texts), cache_dir)
            log.info(f"encode {name}: {model_pass.choice.reason}")
            vectors[name] = encode_eval_texts(corpus_texts, queries, model_pass.encode, model_pass.cache,
                                              f"[evaluate] encode {name}", prompts)
    for name in inputs.api_models:
        # Their vectors are cached by the embedder itself (JSONL, per model); nothing local to store.
        embedder = CachedAPIEmbedder(name, inputs.endpoint, cache_dir, params.api_batch_size,
                                     params.api_max_retries, params.api_timeout_s)
        with timer(f"encode api:{name}"):
            vectors[f"api:{name}"] = encode_eval_texts(corpus_texts, _query_texts(inputs.sets.reported), embedder.encode,
                                                       VectorCache(None), f"[evaluate] encode api:{name}",
                                                       Prompts(query=params.api_query_instruction))
        log.info(f"api:{name}: {embedder.requested_texts} texts sent, the rest from {cache_dir}/")
    return vectors, passes


def backend_metrics(passes: dict[str, ModelPass]) -> dict:
    """eval.json's record of the runtimes: the fine-tuned model's (the base's where there is none) and its probe."""
    chosen = passes.get("finetuned") or next(iter(passes.values()), None)
    return chosen.choice.metrics() if chosen else {}


def _query_texts(query_sets: dict[str, QADataset]) -> dict[str, list[str]]:
    return {name: list(dataset.queries.values()) for name, dataset in query_sets.items()}


def rank_every_set(inputs: Inputs, vectors: dict[str, EvalVectors], params: EvaluateParams, depth: int,
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
        # No questions written by people to choose on: the fusion that needs no tuning.
        return UNTUNED, "untuned: no golden val to choose on (synthetic questions flatter BM25)"
    dense = dense_rank(list(tuning.queries), vectors["finetuned"].queries[TUNING], list(inputs.test.corpus),
                       vectors["finetuned"].corpus, depth)
    choice = choose_fusion(dense, lexical.rank(tuning.queries, depth), tuning.relevant_docs, tried, params.rrf_k, depth)
    _print_choice(choice, inputs.sets.tuning_name)
    return choice.fusion, f"chosen on {inputs.sets.tuning_name}"


def _print_choice(choice: FusionChoice, tuned_on: str) -> None:
    # A progress line of the "fusion choice" phase, so it prints before that phase's timing, not in the report.
    rows = ", ".join(f"{name} MRR@10 {m['mrr@10']:.3f} hit@5 {m['hit@5']:.3f}" for name, m in choice.validation.items())
    log.info(f"fusion chosen on {tuned_on}: {choice.fusion.describe()} ({rows})")


def scored(sets: QuestionSets, rankings: dict[str, dict[str, Ranking]], k_values: list[int]) -> dict[str, dict]:
    """Set -> retriever -> metrics, with paired-bootstrap intervals for hit@5 and MRR@10 (and vs BM25)."""
    results = {}
    for set_name, dataset in sets.reported.items():
        query_ids = list(dataset.queries)
        per_retriever = {name: per_query(r, dataset.relevant_docs, query_ids) for name, r in rankings[set_name].items()}
        bands = intervals(per_retriever, baseline="bm25", compared=COMPARED_WITH_BASE)
        results[set_name] = {name: {**retrieval_metrics(r, dataset.relevant_docs, k_values), **bands.get(name, {})}
                             for name, r in rankings[set_name].items()}
    return results


def word_overlaps(sets: QuestionSets) -> dict[str, dict[str, float]]:
    """Set -> question id -> the share of its words found in its labelled passages (``lexical_overlap.py``)."""
    corpus = next(iter(sets.reported.values())).corpus
    language = corpus_language(corpus.values())
    return {name: {qid: word_overlap(text, [corpus[cid] for cid in dataset.relevant_docs[qid]], language)
                   for qid, text in dataset.queries.items()}
            for name, dataset in sets.reported.items()}


def mean_overlaps(overlaps: dict[str, dict[str, float]]) -> dict[str, float]:
    return {name: round(sum(values.values()) / len(values), 4) if values else 0.0 for name, values in overlaps.items()}


def by_overlap(sets: QuestionSets, rankings: dict[str, dict[str, Ranking]], overlaps: dict[str, dict[str, float]]) -> dict:
    """Every set's scores by word-overlap band (``metrics/eval_by_overlap.json``): how each retriever does on the
    questions that reuse their passage's words, and on those that do not."""
    out = {}
    for set_name, dataset in sets.reported.items():
        per_set: dict = {"word_overlap": mean_overlaps({set_name: overlaps[set_name]})[set_name]}
        for band, _, _ in BANDS:
            ids = [qid for qid, value in overlaps[set_name].items() if band_of(value) == band]
            relevant = {qid: dataset.relevant_docs[qid] for qid in ids}
            per_set[band] = {"queries": len(ids), **{name: {metric: value for metric, value in
                                                              retrieval_metrics(ranking, relevant, [5]).items()
                                                              if metric in ("hit@5", "mrr@10")}
                                                       for name, ranking in rankings[set_name].items()}}
        out[set_name] = per_set
    return out


def by_style(test: QADataset, rankings: dict, k_values: list[int]) -> dict:
    styles = sorted(set(test.query_styles.values()))
    out = {}
    for style in styles:
        relevant = {q: d for q, d in test.relevant_docs.items() if test.query_styles.get(q) == style}
        out[style] = {name: retrieval_metrics(r, relevant, k_values) for name, r in rankings.items()}
        out[style]["queries"] = len(relevant)
    return out
