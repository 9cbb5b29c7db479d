"""The questions stage's work between reading chunks and writing files: the generator ``questions.generator`` names,
run over the target's chunks and the extra training documents', and the per-split numbers of
``metrics/questions.json``."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from stages.lib.common.endpoint import env_or_param
from stages.lib.common.params import QuestionsParams
from stages.lib.documents.chunking import SPLITS, Chunk
from stages.lib.documents.lexical_overlap import mean_word_overlap
from stages.lib.questions.llm import generate_with_llm
from stages.lib.questions.offline import generate_offline, inverse_document_frequency
from stages.lib.questions.qa_dataset import GeneratedQuery, QADataset


def generate_questions(chunks: list[Chunk], extra_chunks: list[Chunk], params: QuestionsParams,
                       store_dir: Path) -> tuple[dict[str, list[GeneratedQuery]], dict[str, float]]:
    """split -> its queries (the extra chunks' join the train split), and the generator's own numbers (an LLM's calls
    and cost; none offline)."""
    if params.generator in ("llm", "llamaindex"):
        model = env_or_param(params.llm.model, "LLM_MODEL", "questions.llm.model")
        if params.generator == "llm":
            run = generate_with_llm(chunks + extra_chunks, params.llm, model, store_dir, params.max_query_chars)
        else:
            from stages.lib.questions.llamaindex import generate_with_llamaindex

            run = generate_with_llamaindex(chunks + extra_chunks, params.llm, model, store_dir)
        return run.queries, run.stats
    idf = inverse_document_frequency(chunks)
    generated = {
        split: generate_offline(
            [c for c in chunks if c.split == split],
            params.train_styles if split == "train" else params.eval_styles,
            idf, params.seed, params.max_query_chars,
        )
        for split in SPLITS
    }
    if extra_chunks:  # the target's questions stay exactly what they are without extra documents
        generated["train"] += generate_offline(extra_chunks, params.train_styles,
                                               inverse_document_frequency(chunks + extra_chunks), params.seed,
                                               params.max_query_chars)
    return generated, {}


def split_metrics(split: str, dataset: QADataset, language: str, extra_ids: set[str]) -> dict[str, float]:
    """One split's lines of ``metrics/questions.json``: queries, pairs, word overlap, queries per style (and, for train,
    how many are about the extra training documents)."""
    metrics: dict[str, float] = {
        f"{split}_queries": len(dataset.queries),
        f"{split}_pairs": sum(len(docs) for docs in dataset.relevant_docs.values()),
        # How lexical the split is: the mean share of a question's words its passages hold (people's: 0.34-0.50).
        f"{split}_word_overlap": mean_word_overlap(dataset, language),
    }
    for style, count in sorted(Counter(dataset.query_styles.values()).items()):
        metrics[f"{split}_{style}"] = count
    if split == "train":
        metrics["train_queries_from_extra_documents"] = sum(
            1 for docs in dataset.relevant_docs.values() if set(docs) <= extra_ids)
    return metrics
