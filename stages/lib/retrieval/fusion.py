"""Hybrid retrieval: fuse a dense and a lexical ranking, and choose how on labelled validation queries.

Two fusion functions:

* weighted reciprocal-rank fusion (RRF): ``w_dense / (k + rank_dense) + 1 / (k + rank_lexical)``;
  it sees ranks only.
* a convex combination of normalised scores, ``alpha * dense + (1 - alpha) * lexical``, with
  theoretical-min / observed-max normalisation (Bruch et al. 2023, "An Analysis of Fusion Functions
  for Hybrid Retrieval", TM2C2): it keeps how far apart the scores are, and its one weight needs
  only a small labelled set to tune. A chunk one retriever did not return gets that retriever's
  floor (0 after normalisation).

The choice (method and weight) maximises MRR@10 on validation queries, among the candidates whose
MRR@10 and hit@5 are both at least those of the better input there, so the hybrid is never chosen
below either of its inputs on the queries it was tuned on. Without validation questions written by people
the hybrid is ``UNTUNED``, reciprocal-rank fusion with equal weights (Cormack et al. 2009), the fusion that
needs no tuning: tuned on synthetic questions, which reuse their passages' words, the weight leans to BM25
(docs/evaluation.md, "Without a golden set", measures both on the two bundled laws).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from stages.lib.retrieval.rankers import Ranking, retrieval_metrics

RRF = "rrf"
CONVEX = "convex"
METHODS = (RRF, CONVEX)
RRF_WEIGHTS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0)
CONVEX_WEIGHTS = tuple(round(0.05 * i, 2) for i in range(21))  # alpha from 0 (lexical only) to 1 (dense only)
# Theoretical minimum of each retriever's score: cosine similarity of normalised vectors, BM25.
DENSE_FLOOR = -1.0
LEXICAL_FLOOR = 0.0


@dataclass(frozen=True)
class Fusion:
    method: str  # "rrf" or "convex"
    weight: float  # RRF: the dense ranking's weight (lexical has 1); convex: alpha, the dense share

    def describe(self) -> str:
        if self.method == RRF:
            return f"reciprocal-rank fusion of finetuned x{self.weight:g} and bm25 x1"
        return f"convex combination {self.weight:g} x finetuned + {1 - self.weight:g} x bm25 (normalised scores)"


def reciprocal_rank_fusion(rankings: Sequence[Ranking], k: int, depth: int, weights: Sequence[float] | None = None) -> Ranking:
    """Weighted RRF: score(d) = sum_i w_i / (k + rank_i(d))."""
    weights = weights or [1.0] * len(rankings)
    fused = Ranking()
    for qid in rankings[0]:
        scores: dict[str, float] = {}
        for weight, ranking in zip(weights, rankings, strict=True):
            for rank, cid in enumerate(ranking[qid], start=1):
                scores[cid] = scores.get(cid, 0.0) + weight / (k + rank)
        fused[qid] = sorted(scores, key=lambda c: (-scores[c], c))[:depth]
        fused.scores[qid] = [scores[c] for c in fused[qid]]
    return fused


def _normalised(ids: list[str], scores: list[float], floor: float) -> dict[str, float]:
    """Theoretical-min / observed-max scaling to [0, 1]: the best returned chunk gets 1, the floor 0."""
    if not ids:
        return {}
    top = max(scores)
    span = top - floor
    if span <= 0:
        return dict.fromkeys(ids, 0.0)
    return {cid: (score - floor) / span for cid, score in zip(ids, scores, strict=True)}


def convex_combination(dense: Ranking, lexical: Ranking, alpha: float, depth: int) -> Ranking:
    """alpha * normalised dense score + (1 - alpha) * normalised lexical score, over the union of both lists."""
    for name, ranking in (("dense", dense), ("lexical", lexical)):
        if any(qid not in ranking.scores for qid in ranking):
            raise ValueError(f"the {name} ranking carries no scores: convex fusion needs them")
    fused = Ranking()
    for qid in dense:
        d = _normalised(dense[qid], dense.scores[qid], DENSE_FLOOR)
        lex = _normalised(lexical[qid], lexical.scores[qid], LEXICAL_FLOOR)
        scores = {cid: alpha * d.get(cid, 0.0) + (1 - alpha) * lex.get(cid, 0.0) for cid in d.keys() | lex.keys()}
        fused[qid] = sorted(scores, key=lambda c: (-scores[c], c))[:depth]
        fused.scores[qid] = [scores[c] for c in fused[qid]]
    return fused


def fuse(dense: Ranking, lexical: Ranking, fusion: Fusion, rrf_k: int, depth: int) -> Ranking:
    if fusion.method == RRF:
        return reciprocal_rank_fusion([dense, lexical], rrf_k, depth, [fusion.weight, 1.0])
    return convex_combination(dense, lexical, fusion.weight, depth)


UNTUNED = Fusion(RRF, 1.0)


@dataclass(frozen=True)
class FusionChoice:
    fusion: Fusion
    # MRR@10 and hit@5 on the validation queries: of the chosen fusion, and of the two inputs.
    validation: dict[str, dict[str, float]]


def candidates(method: str, weight: float | str) -> list[Fusion]:
    """The fusions to try: every method and weight for "auto", only the given ones otherwise."""
    methods = METHODS if method == "auto" else (method,)
    out = []
    for m in methods:
        grid = RRF_WEIGHTS if m == RRF else CONVEX_WEIGHTS
        out.extend(Fusion(m, float(w)) for w in (grid if weight == "auto" else (weight,)))
    return out


def choose_fusion(dense: Ranking, lexical: Ranking, relevant_docs: dict[str, list[str]], tried: Sequence[Fusion],
                  rrf_k: int, depth: int) -> FusionChoice:
    """The candidate with the best MRR@10 (then hit@5) on validation queries, never below either input there.

    Ties go to the earlier candidate, so a fixed candidate list gives a fixed choice.
    """
    def quality(ranking: Ranking) -> tuple[float, float]:
        metrics = retrieval_metrics(ranking, relevant_docs, [5])
        return metrics.get("mrr@10", 0.0), metrics.get("hit@5", 0.0)

    inputs = {"finetuned": quality(dense), "bm25": quality(lexical)}
    floor_mrr, floor_hit = (max(pair) for pair in zip(*inputs.values(), strict=True))
    scored = [(quality(fuse(dense, lexical, f, rrf_k, depth)), f) for f in tried]
    admissible = [item for item in scored if item[0][0] >= floor_mrr and item[0][1] >= floor_hit] or scored
    best_quality, best = max(admissible, key=lambda item: item[0])
    validation = {name: {"mrr@10": mrr, "hit@5": hit}
                  for name, (mrr, hit) in {"hybrid": best_quality, **inputs}.items()}
    return FusionChoice(best, validation)
