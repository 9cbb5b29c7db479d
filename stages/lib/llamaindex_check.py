"""Cross-check our evaluator against a llama-index ``VectorStoreIndex`` retriever (how the seed evaluated)."""

from __future__ import annotations


def llamaindex_hit_rate(model_dir: str, queries: dict[str, str], corpus: dict[str, str],
                        relevant_docs: dict[str, list[str]], top_k: int) -> float:
    from llama_index.core import VectorStoreIndex
    from llama_index.core.schema import TextNode
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    embed_model = HuggingFaceEmbedding(model_name=model_dir, device="cpu", normalize=True, show_progress_bar=False)
    nodes = [TextNode(id_=cid, text=text) for cid, text in corpus.items()]
    index = VectorStoreIndex(nodes, embed_model=embed_model, show_progress=False)
    retriever = index.as_retriever(similarity_top_k=top_k)
    hits = 0
    for qid, text in queries.items():
        retrieved = {result.node.node_id for result in retriever.retrieve(text)}
        hits += bool(retrieved.intersection(relevant_docs[qid]))
    return round(hits / len(queries), 4) if queries else 0.0
