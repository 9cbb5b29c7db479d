"""Retrievers (dense, BM25) and ranking metrics; fusing them is in ``fusion.py``."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from stages.lib.common.progress import progress
from stages.lib.documents.text import bm25_tokens, corpus_language


class Ranking(dict[str, list[str]]):
    """Query id -> corpus ids, best first; ``scores`` holds the matching retrieval scores where the retriever has them."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.scores: dict[str, list[float]] = {}


# Query rows scored against the whole corpus at once: 256 x 20,000 float32 scores are 20 MB,
# so memory stays flat however many queries there are.
QUERY_BLOCK = 256


def top_k(scores: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the ``depth`` best columns and their scores: higher score first, ties in column order.

    The same result as a stable full sort of every row, at the cost of a partition:
    ``argpartition`` picks an arbitrary subset of the columns tied at the cut-off, so
    rows with such ties are redone exactly (rare for dense scores, common for BM25).
    """
    n_rows, n_cols = scores.shape
    depth = min(depth, n_cols)
    if depth == 0 or n_rows == 0:
        return np.zeros((n_rows, depth), dtype=np.int64), np.zeros((n_rows, depth), dtype=scores.dtype)
    if depth < n_cols:
        chosen = np.argpartition(scores, n_cols - depth, axis=1)[:, n_cols - depth:]
    else:
        chosen = np.tile(np.arange(n_cols), (n_rows, 1))
    chosen_scores = np.take_along_axis(scores, chosen, axis=1)
    cutoff = chosen_scores.min(axis=1, keepdims=True)
    tied_everywhere = (scores == cutoff).sum(axis=1)
    tied_chosen = (chosen_scores == cutoff).sum(axis=1)
    for row in np.flatnonzero(tied_everywhere > tied_chosen):
        above = np.flatnonzero(scores[row] > cutoff[row])
        tied = np.flatnonzero(scores[row] == cutoff[row])[: depth - len(above)]
        chosen[row] = np.concatenate([above, tied])
        chosen_scores[row] = scores[row, chosen[row]]
    order = np.lexsort((chosen, -chosen_scores), axis=1)
    return np.take_along_axis(chosen, order, axis=1), np.take_along_axis(chosen_scores, order, axis=1)


def dense_rank(query_ids: Sequence[str], query_vectors: np.ndarray, corpus_ids: Sequence[str],
               doc_vectors: np.ndarray, depth: int, desc: str | None = None) -> Ranking:
    """Cosine ranking (vectors are normalised) of every query over the corpus, a block of queries at a time."""
    rankings = Ranking()
    bar = progress(len(query_ids), desc, unit="query") if desc else None
    for start in range(0, len(query_ids), QUERY_BLOCK):
        block = query_vectors[start:start + QUERY_BLOCK]
        indices, scores = top_k(block @ doc_vectors.T, depth)
        for qid, row, row_scores in zip(query_ids[start:start + QUERY_BLOCK], indices, scores, strict=True):
            rankings[qid] = [corpus_ids[i] for i in row]
            rankings.scores[qid] = row_scores.tolist()
        if bar is not None:
            bar.update(len(block))
    if bar is not None:
        bar.close()
    return rankings


class BM25Index:
    """BM25 over language-aware tokens: jieba words for Chinese, words for English."""

    def __init__(self, corpus: dict[str, str], desc: str | None = None) -> None:
        import bm25s

        self.corpus_ids = list(corpus)
        self.language = corpus_language(corpus.values())
        # jieba is the slow part (about 10 s for 20,000 chunks on 2 cores): show it.
        bar = progress(len(self.corpus_ids), desc, unit="chunk") if desc else None
        tokens = []
        for cid in self.corpus_ids:
            # A document without tokens still needs one, or bm25s cannot index it.
            tokens.append(bm25_tokens(corpus[cid], self.language) or ["<empty>"])
            if bar is not None and len(tokens) % 512 == 0:
                bar.update(512)
        if bar is not None:
            bar.update(len(tokens) % 512)
            bar.close()
        self.retriever = bm25s.BM25()
        self.retriever.index(tokens, show_progress=False)

    def rank(self, queries: dict[str, str], depth: int, desc: str | None = None) -> Ranking:
        """Top ``depth`` per query from bm25s's own top-k; among the returned, ties keep corpus order."""
        query_ids = list(queries)
        depth = min(depth, len(self.corpus_ids))
        rankings = Ranking()
        if depth == 0:
            rankings.update((qid, []) for qid in query_ids)
            rankings.scores.update((qid, []) for qid in query_ids)
            return rankings
        bar = progress(len(query_ids), desc, unit="query") if desc else None
        for start in range(0, len(query_ids), QUERY_BLOCK):
            block = query_ids[start:start + QUERY_BLOCK]
            tokens = [bm25_tokens(queries[qid], self.language) for qid in block]
            indices, scores = self.retriever.retrieve(tokens, k=depth, show_progress=False, n_threads=0,
                                                      backend_selection="numpy")
            order = np.lexsort((indices, -scores), axis=1)
            indices, scores = np.take_along_axis(indices, order, axis=1), np.take_along_axis(scores, order, axis=1)
            for qid, row, row_scores in zip(block, indices, scores, strict=True):
                # A chunk that shares no term with the query scores 0: not retrieved. bm25s still fills the
                # top k with such chunks (for a query of only stop words or punctuation, all of them), and
                # counting them would reward corpus order.
                kept = row_scores > 0
                rankings[qid] = [self.corpus_ids[i] for i in row[kept]]
                rankings.scores[qid] = row_scores[kept].tolist()
            if bar is not None:
                bar.update(len(block))
        if bar is not None:
            bar.close()
        return rankings


def first_relevant_rank(ranked: list[str], relevant: set[str]) -> int | None:
    for rank, cid in enumerate(ranked, start=1):
        if cid in relevant:
            return rank
    return None


# One query's share of the metrics, from the rank of its first relevant chunk (None: not ranked at all). Every
# hit@k and MRR@10 of the project (the averages, the bootstrap's per-query values, export's checks) is these.
def hit_at(rank: int | None, k: int) -> float:
    """1.0 when a relevant chunk is in the top ``k``, else 0.0."""
    return 1.0 if rank is not None and rank <= k else 0.0


def reciprocal_rank(rank: int | None, depth: int = 10) -> float:
    """1/rank of the first relevant chunk when it is in the top ``depth`` (MRR@10's term), else 0.0."""
    return 1.0 / rank if rank is not None and rank <= depth else 0.0


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
        first = first_relevant_rank(ranked, relevant)
        for k in k_values:
            totals[f"hit@{k}"] += hit_at(first, k)
            totals[f"recall@{k}"] += len(relevant.intersection(ranked[:k])) / len(relevant)
        totals["mrr@10"] += reciprocal_rank(first)
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
