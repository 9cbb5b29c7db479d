"""Retrievers (dense, BM25, reciprocal-rank fusion) and ranking metrics."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from stages.lib.text import bm25_tokens, detect_language

Ranking = dict[str, list[str]]  # query id -> corpus ids, best first


class DenseIndex:
    """A corpus encoded once by a sentence-transformers model, ranked by cosine similarity."""

    def __init__(self, model, corpus: dict[str, str], batch_size: int) -> None:
        self.model, self.batch_size = model, batch_size
        self.corpus_ids = list(corpus)
        self.doc_vectors = model.encode(
            [corpus[c] for c in self.corpus_ids], batch_size=batch_size, normalize_embeddings=True,
            convert_to_numpy=True,
        )

    def rank(self, queries: dict[str, str], depth: int) -> Ranking:
        query_ids = list(queries)
        query_vectors = self.model.encode(
            [queries[q] for q in query_ids], batch_size=self.batch_size, normalize_embeddings=True,
            convert_to_numpy=True,
        )
        return _top_k(query_ids, self.corpus_ids, query_vectors @ self.doc_vectors.T, depth)


def _top_k(query_ids: Sequence[str], corpus_ids: Sequence[str], scores: np.ndarray, depth: int) -> Ranking:
    depth = min(depth, len(corpus_ids))
    rankings: Ranking = {}
    for row, qid in enumerate(query_ids):
        # Stable sort on the negated score: equal scores keep corpus order, so
        # results are deterministic.
        order = np.argsort(-scores[row], kind="stable")[:depth]
        rankings[qid] = [corpus_ids[i] for i in order]
    return rankings


class BM25Index:
    """BM25 over language-aware tokens: jieba words for Chinese, words for English."""

    def __init__(self, corpus: dict[str, str]) -> None:
        import bm25s

        self.corpus_ids = list(corpus)
        self.language = detect_language("".join(list(corpus.values())[:50]))
        tokens = [bm25_tokens(corpus[c], self.language) or ["<empty>"] for c in self.corpus_ids]
        self.retriever = bm25s.BM25()
        self.retriever.index(tokens, show_progress=False)

    def rank(self, queries: dict[str, str], depth: int) -> Ranking:
        query_ids = list(queries)
        scores = np.zeros((len(query_ids), len(self.corpus_ids)), dtype=np.float32)
        for row, qid in enumerate(query_ids):
            tokens = bm25_tokens(queries[qid], self.language)
            if tokens:
                scores[row] = self.retriever.get_scores(tokens)
        return _top_k(query_ids, self.corpus_ids, scores, depth)


def reciprocal_rank_fusion(rankings: Sequence[Ranking], k: int, depth: int, weights: Sequence[float] | None = None) -> Ranking:
    """Weighted RRF: score(d) = sum_i w_i / (k + rank_i(d))."""
    weights = weights or [1.0] * len(rankings)
    fused: Ranking = {}
    for qid in rankings[0]:
        scores: dict[str, float] = {}
        for weight, ranking in zip(weights, rankings, strict=True):
            for rank, cid in enumerate(ranking[qid], start=1):
                scores[cid] = scores.get(cid, 0.0) + weight / (k + rank)
        fused[qid] = sorted(scores, key=lambda c: (-scores[c], c))[:depth]
    return fused


def tune_fusion_weight(
    dense: Ranking, lexical: Ranking, relevant_docs: dict[str, list[str]], k: int, depth: int,
    candidates: Sequence[float],
) -> float:
    """The dense weight (lexical fixed at 1) with the best MRR@10 on held-out validation queries."""
    def score(weight: float) -> tuple[float, float]:
        fused = reciprocal_rank_fusion([dense, lexical], k, depth, [weight, 1.0])
        metrics = retrieval_metrics(fused, relevant_docs, [5])
        return metrics.get("mrr@10", 0.0), metrics.get("hit@5", 0.0)

    return max(candidates, key=lambda w: (score(w), -abs(w - 1.0)))


def first_relevant_rank(ranked: list[str], relevant: set[str]) -> int | None:
    for rank, cid in enumerate(ranked, start=1):
        if cid in relevant:
            return rank
    return None


def retrieval_metrics(ranking: Ranking, relevant_docs: dict[str, list[str]], k_values: Sequence[int]) -> dict[str, float]:
    """hit@k (any relevant in top k), recall@k, MRR@10 and NDCG@10 with binary relevance, averaged over queries."""
    qids = [qid for qid in relevant_docs if qid in ranking]
    if not qids:
        return {}
    totals: dict[str, float] = {f"hit@{k}": 0.0 for k in k_values}
    totals.update({f"recall@{k}": 0.0 for k in k_values})
    totals["mrr@10"] = totals["ndcg@10"] = 0.0
    for qid in qids:
        relevant = set(relevant_docs[qid])
        ranked = ranking[qid]
        for k in k_values:
            found = len(relevant.intersection(ranked[:k]))
            totals[f"hit@{k}"] += 1.0 if found else 0.0
            totals[f"recall@{k}"] += found / len(relevant)
        first = first_relevant_rank(ranked[:10], relevant)
        totals["mrr@10"] += 1.0 / first if first else 0.0
        dcg = sum(1.0 / math.log2(i + 2) for i, cid in enumerate(ranked[:10]) if cid in relevant)
        ideal = sum(1.0 / math.log2(i + 2) for i in range(min(len(relevant), 10)))
        totals["ndcg@10"] += dcg / ideal
    return {name: round(value / len(qids), 4) for name, value in totals.items()}


def format_table(results: dict[str, dict[str, float]], columns: Sequence[str]) -> str:
    width = max(len(name) for name in results) + 2
    header = "retriever".ljust(width) + "".join(c.rjust(9) for c in columns)
    lines = [header, "-" * len(header)]
    for name, metrics in results.items():
        lines.append(name.ljust(width) + "".join(f"{metrics.get(c, float('nan')):9.3f}" for c in columns))
    return "\n".join(lines)
