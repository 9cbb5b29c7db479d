"""Paired-bootstrap confidence intervals for retrieval metrics, and for differences between retrievers.

Every retriever answers the same questions, so differences are judged per
question: each bootstrap resample draws questions with replacement and scores
every retriever on the same draw. Seeded, so the same inputs always give the
same intervals. A claim such as "hybrid beats BM25" holds only where the
interval of the difference lies above 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from stages.lib.retrieval.rankers import Ranking, first_relevant_rank, hit_at, reciprocal_rank

CONFIDENCE = 0.95
RESAMPLES = 2000


def per_query(ranking: Ranking, relevant_docs: dict[str, list[str]], query_ids: Sequence[str]) -> dict[str, np.ndarray]:
    """hit@5 (0/1) and reciprocal rank within the top 10 (0 below it), one value per query, in ``query_ids`` order."""
    hit5, rr10 = np.zeros(len(query_ids)), np.zeros(len(query_ids))
    for row, qid in enumerate(query_ids):
        rank = first_relevant_rank(ranking.get(qid, []), set(relevant_docs[qid]))
        hit5[row], rr10[row] = hit_at(rank, 5), reciprocal_rank(rank)
    return {"hit@5": hit5, "mrr@10": rr10}


def bootstrap_indices(n_queries: int, resamples: int = RESAMPLES, seed: int = 0) -> np.ndarray:
    """``resamples`` x ``n_queries`` question indices drawn with replacement: one draw shared by every retriever."""
    return np.random.default_rng(seed).integers(0, n_queries, size=(resamples, n_queries))


def percentile_interval(values: np.ndarray, indices: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The central ``confidence`` interval of the mean of ``values`` over the resamples."""
    means = values[indices].mean(axis=1)
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def intervals(scores: dict[str, dict[str, np.ndarray]], baseline: str, resamples: int = RESAMPLES,
              seed: int = 0, compared: dict[str, str] | None = None) -> dict[str, dict[str, float]]:
    """For each retriever and metric: the interval of its mean and of its difference from ``baseline``.

    ``scores``: retriever -> metric -> per-query values (same queries, same order, for all).
    ``compared``: extra differences, retriever -> the retriever it is compared with (e.g. a fine-tuned
    model with its base), on the same resamples.
    Returns retriever -> {"hit@5_ci_low", "hit@5_ci_high", "hit@5_diff_vs_<baseline>", ..._diff_ci_low/high}.
    """
    n = len(next(iter(next(iter(scores.values())).values())))
    if n == 0:
        return {}
    indices = bootstrap_indices(n, resamples, seed)
    out: dict[str, dict[str, float]] = {}
    for name, metrics in scores.items():
        row: dict[str, float] = {}
        others = [other for other in (baseline, (compared or {}).get(name)) if other in scores and other != name]
        for metric, values in metrics.items():
            row[f"{metric}_ci_low"], row[f"{metric}_ci_high"] = map(_round, percentile_interval(values, indices))
            for other in others:
                difference = values - scores[other][metric]
                row[f"{metric}_diff_vs_{other}"] = _round(float(difference.mean()))
                low, high = percentile_interval(difference, indices)
                row[f"{metric}_diff_vs_{other}_ci_low"], row[f"{metric}_diff_vs_{other}_ci_high"] = _round(low), _round(high)
        out[name] = row
    return out


def verdict(row: dict[str, float], metric: str, other: str) -> str:
    """'better', 'worse' or 'no difference shown', from where the interval of the difference lies."""
    key = f"{metric}_diff_vs_{other}"
    if row[key + "_ci_low"] > 0:
        return "better"
    if row[key + "_ci_high"] < 0:
        return "worse"
    return "no difference shown"


def format_gain(row: dict[str, float], name: str, other: str) -> str:
    """One plain line: did ``name`` beat ``other`` on this set (hit@5 and MRR@10, with intervals)?"""
    parts = []
    for metric in ("hit@5", "mrr@10"):
        key = f"{metric}_diff_vs_{other}"
        parts.append(f"{metric} {row[key]:+.3f} [{row[key + '_ci_low']:+.3f}, {row[key + '_ci_high']:+.3f}]: "
                     f"{verdict(row, metric, other)}")
    helped = all(verdict(row, m, other) == "better" for m in ("hit@5", "mrr@10"))
    hurt = any(verdict(row, m, other) == "worse" for m in ("hit@5", "mrr@10"))
    summary = ("fine-tuning helped" if helped else "fine-tuning made it worse" if hurt
               else "fine-tuning is not shown to help")
    return f"{name} - {other}: " + "; ".join(parts) + f" -> {summary}"


def _round(value: float) -> float:
    return round(value, 4)


def format_interval_table(scores: dict[str, dict[str, float]], baseline: str) -> str:
    """hit@5 and MRR@10 with their intervals, and each retriever's difference from ``baseline`` with its interval."""
    def cell(row: dict, key: str) -> str:
        return f"{row[key]:.3f} [{row[key + '_ci_low']:.3f}, {row[key + '_ci_high']:.3f}]"

    def diff(row: dict, metric: str) -> str:
        key = f"{metric}_diff_vs_{baseline}"
        if key not in row:
            return "-"
        verdict = " >" if row[key + "_ci_low"] > 0 else " <" if row[key + "_ci_high"] < 0 else ""
        return f"{row[key]:+.3f} [{row[key + '_ci_low']:+.3f}, {row[key + '_ci_high']:+.3f}]{verdict}"

    width = max(len(name) for name in scores) + 2
    header = ("retriever".ljust(width) + "hit@5 [95% CI]".ljust(25) + "MRR@10 [95% CI]".ljust(25)
              + f"hit@5 - {baseline}".ljust(29) + f"MRR@10 - {baseline}")
    lines = [header, "-" * (len(header) + 8)]
    for name, row in scores.items():
        lines.append(name.ljust(width) + cell(row, "hit@5").ljust(25) + cell(row, "mrr@10").ljust(25)
                     + diff(row, "hit@5").ljust(29) + diff(row, "mrr@10"))
    lines.append(f"(> / <: the whole interval of the difference lies above / below 0, i.e. better / worse than {baseline})")
    return "\n".join(lines)
