"""Cross-check our evaluator against a llama-index ``VectorStoreIndex`` retriever (how the seed evaluated).

llama-index embeds with its own code path (``HuggingFaceEmbedding``), so the
check is on a seeded sample (``evaluate.llamaindex_check_queries`` queries in a
sub-corpus of about ``evaluate.llamaindex_check_corpus`` chunks) rather than a
third pass over the corpus. Our side of the comparison is computed on exactly
that sample, from the fine-tuned vectors the stage already has.
"""

from __future__ import annotations

import logging

import numpy as np

from stages.lib.models.hardware import Hardware, autocast
from stages.lib.models.prompts import NO_PROMPTS, Prompts
from stages.lib.questions.qa_dataset import QADataset
from stages.lib.retrieval.eval_sample import check_sample
from stages.lib.retrieval.rankers import dense_rank, retrieval_metrics

log = logging.getLogger(__name__)


def llamaindex_hit_rate(model_dir: str, device: str, max_seq_length: int, queries: dict[str, str],
                        corpus: dict[str, str], relevant_docs: dict[str, list[str]], top_k: int,
                        batch_size: int = 64, prompts: Prompts = NO_PROMPTS, precision: str = "fp32") -> float:
    from llama_index.core import VectorStoreIndex
    from llama_index.core.schema import TextNode
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    # llama-index's default of 10 texts per call pads each tiny batch to its longest text: several times slower.
    # The prompts as llama-index's own instructions: how a user of the fine-tuned model would set it up.
    embed_model = HuggingFaceEmbedding(model_name=model_dir, device=device, max_length=max_seq_length, normalize=True,
                                       embed_batch_size=batch_size, show_progress_bar=False,
                                       query_instruction=prompts.query, text_instruction=prompts.document)
    nodes = [TextNode(id_=cid, text=text) for cid, text in corpus.items()]
    hits = 0
    # In the precision our side's vectors were computed in, so the two differ only by code path.
    with autocast(device, precision):
        index = VectorStoreIndex(nodes, embed_model=embed_model, show_progress=False)
        retriever = index.as_retriever(similarity_top_k=top_k)
        for qid, text in queries.items():
            retrieved = {result.node.node_id for result in retriever.retrieve(text)}
            hits += bool(retrieved.intersection(relevant_docs[qid]))
    return round(hits / len(queries), 4) if queries else 0.0


def cross_check(model_dir: str, hardware: Hardware, max_seq_length: int, test: QADataset, query_vectors: np.ndarray,
                doc_vectors: np.ndarray, n_queries: int, corpus_size: int, top_k: int,
                batch_size: int = 64, prompts: Prompts = NO_PROMPTS) -> dict[str, float | int]:
    """llama-index's hit@k and ours on the same sample; vectors are rows in ``test.queries`` / ``test.corpus`` order."""
    sample = check_sample(test, n_queries, corpus_size)
    query_row = {qid: i for i, qid in enumerate(test.queries)}
    doc_row = {cid: i for i, cid in enumerate(test.corpus)}
    ours = dense_rank(
        sample.query_ids, query_vectors[[query_row[q] for q in sample.query_ids]],
        sample.corpus_ids, doc_vectors[[doc_row[c] for c in sample.corpus_ids]], top_k,
    )
    relevant = {qid: test.relevant_docs[qid] for qid in sample.query_ids}
    theirs = llamaindex_hit_rate(
        model_dir, hardware.device, max_seq_length, {qid: test.queries[qid] for qid in sample.query_ids},
        {cid: test.corpus[cid] for cid in sample.corpus_ids}, relevant, top_k, batch_size, prompts, hardware.precision,
    )
    return {
        f"llamaindex_finetuned_hit@{top_k}": theirs,
        f"ours_on_llamaindex_sample_hit@{top_k}": retrieval_metrics(ours, relevant, [top_k]).get(f"hit@{top_k}", 0.0),
        "llamaindex_sample_queries": len(sample.query_ids),
        "llamaindex_sample_corpus": len(sample.corpus_ids),
    }


def warn_if_apart(check: dict, top_k: int) -> None:
    """Warn when the two hit rates of ``cross_check``'s result differ by more than one query of the sample."""
    theirs, ours = check[f"llamaindex_finetuned_hit@{top_k}"], check[f"ours_on_llamaindex_sample_hit@{top_k}"]
    if abs(theirs - ours) > 1.0 / check["llamaindex_sample_queries"] + 1e-9:
        log.warning(f"WARNING: llama-index retriever hit@{top_k} {theirs} differs from ours {ours} "
                    "on the same sample by more than one query")
