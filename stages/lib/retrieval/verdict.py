"""The evaluation's verdict, said first: did fine-tuning beat the base model and BM25, and which retriever is best,
judged on which questions.

The judge is the largest golden test set about the corpus (questions people wrote, every labelled passage
included), per language as the evaluation reports it. A comparison is "better" or "worse" only where the 95%
paired-bootstrap interval of the hit@5 difference lies wholly above or below 0, else "not shown". Without a golden
set there is no judge: synthetic questions reuse their passages' words (their word overlap is printed beside the
verdict, with that of questions people wrote), which flatters BM25, and on the Civil Code every comparison they
made was reversed by real questions. The verdict then says "not shown" and names the hybrid as the default
retriever, by prior (untuned reciprocal-rank fusion; docs/evaluation.md, "Without a golden set", measures that prior on both
bundled laws), and points to the labelling view.

Written into ``metrics/eval.json`` under ``verdict``: numbers (outcomes as 1 / 0 / -1) and the judge's and the best
retriever's names; the sentences are made from those numbers, so the printed report, the UI's report and the
metrics say the same.
"""

from __future__ import annotations

from stages.lib.retrieval.intervals import verdict as interval_verdict

GOLDEN_TEST_PREFIX = "golden_test_"
JUDGED_PART = "_incl_trained_passages"
COMPARISONS = (("finetuned", "base"), ("finetuned", "bm25"))
OUTCOMES = {"better": 1, "no difference shown": 0, "worse": -1}
OUTCOME_WORDS = {1: "better", 0: "not shown", -1: "worse"}
NAMES = {"base": "base", "finetuned": "fine-tuned", "bm25": "BM25", "hybrid": "hybrid", "seed_recipe": "seed recipe"}
NO_JUDGE = "none"
DEFAULT_RETRIEVER = "hybrid"
LABEL_URL = "/label"
# Questions people wrote about the bundled laws: the mean share of their words found in their passages (Chinese
# golden sets, val and test of the Labor Contract Law and the Securities Law; benchmarks/results/lexical_overlap.json,
# which tests/retrieval/test_verdict.py holds this to).
PEOPLES_WORD_OVERLAP = (0.34, 0.50)


def judge_set(results: dict[str, dict], queries: dict[str, int]) -> str | None:
    """The reported set that judges: the golden test set (all its passages) with the most questions."""
    golden = [name for name in results if name.startswith(GOLDEN_TEST_PREFIX) and name.endswith(JUDGED_PART)
              and queries.get(name, 0) > 0]
    return max(golden, key=lambda name: (queries[name], name), default=None)


def build_verdict(results: dict[str, dict], queries: dict[str, int], overlaps: dict[str, float],
                  synthetic_set: str) -> dict:
    """``metrics/eval.json``'s ``verdict``: ``results`` set -> retriever -> scored row (with the intervals and
    differences of ``side_by_side.scored``), ``queries`` set -> its questions, ``overlaps`` set -> mean word overlap."""
    judge = judge_set(results, queries)
    verdict: dict = {
        "judge": judge or NO_JUDGE,
        "judge_questions": queries.get(judge, 0) if judge else 0,
        "judge_word_overlap": overlaps.get(judge, 0.0) if judge else 0.0,
        "synthetic_word_overlap": overlaps.get(synthetic_set, 0.0),
        "synthetic_questions": queries.get(synthetic_set, 0),
    }
    rows = results.get(judge, {}) if judge else {}
    for name, other in COMPARISONS:
        key = f"{name}_vs_{other}"
        row = rows.get(name, {})
        if f"hit@5_diff_vs_{other}" not in row:
            verdict[key] = 0
            continue
        verdict[key] = OUTCOMES[interval_verdict(row, "hit@5", other)]
        for suffix in ("", "_ci_low", "_ci_high"):
            verdict[f"{key}_hit@5_diff{suffix}"] = row[f"hit@5_diff_vs_{other}{suffix}"]
    if rows:
        ranked = sorted(rows, key=lambda name: (rows[name].get("hit@5", 0.0), rows[name].get("mrr@10", 0.0)), reverse=True)
        best = ranked[0]
        verdict.update(best=best, best_measured=1, **{f"best_hit@5{suffix}": rows[best][f"hit@5{suffix}"]
                                                     for suffix in ("", "_ci_low", "_ci_high")})
        if len(ranked) > 1:
            verdict.update(runner_up=ranked[1], runner_up_hit5=rows[ranked[1]]["hit@5"])
    else:
        verdict.update(best=DEFAULT_RETRIEVER, best_measured=0)
    return verdict


def describe_judge(name: str) -> str:
    """``golden_test_zh_incl_trained_passages`` -> ``golden test, zh``."""
    return "golden test, " + name.removeprefix(GOLDEN_TEST_PREFIX).removesuffix(JUDGED_PART)


def _interval(verdict: dict, key: str) -> str:
    return f"{verdict[key]:+.3f} [{verdict[key + '_ci_low']:+.3f}, {verdict[key + '_ci_high']:+.3f}]"


def verdict_lines(verdict: dict, judge_title: str = "", fusion: str = "") -> list[str]:
    """The verdict as sentences, from ``metrics/eval.json``'s ``verdict`` alone (the UI reads them from there too).

    ``judge_title``: how to name the judge set (default: its name); ``fusion``: how the hybrid fuses.
    """
    judge = verdict.get("judge", NO_JUDGE)
    if judge == NO_JUDGE:
        lines = ["No questions written by people cover this corpus, so nothing here shows whether fine-tuning helped."]
    else:
        lines = [f"Judged on {verdict['judge_questions']} questions written by people ({judge_title or describe_judge(judge)}; "
                 f"they share {verdict['judge_word_overlap']:.0%} of their words with their passages)."]
    for name, other in COMPARISONS:
        key = f"{name}_vs_{other}"
        outcome = OUTCOME_WORDS[verdict.get(key, 0)]
        if f"{key}_hit@5_diff" in verdict:
            lines.append(f"Fine-tuned vs {NAMES[other]}: {outcome}, hit@5 {_interval(verdict, f'{key}_hit@5_diff')}"
                         + (" (the interval includes 0)." if outcome == "not shown" else "."))
        else:
            lines.append(f"Fine-tuned vs {NAMES[other]}: {outcome} (no golden set).")
    hybrid = f" ({fusion})" if fusion else ""
    if verdict.get("best_measured"):
        best = verdict["best"]
        runner_up = (f"; next: {NAMES.get(verdict['runner_up'], verdict['runner_up'])} {verdict['runner_up_hit5']:.3f}"
                     if "runner_up" in verdict else "")
        lines.append(f"Best: {NAMES.get(best, best)}{hybrid if best == DEFAULT_RETRIEVER else ''}, hit@5 "
                     f"{verdict['best_hit@5']:.3f} [{verdict['best_hit@5_ci_low']:.3f}, {verdict['best_hit@5_ci_high']:.3f}]"
                     f"{runner_up}.")
    else:
        lines.append(f"Best: {verdict.get('best', DEFAULT_RETRIEVER)}{hybrid}, by default, not measured here: on both "
                     "bundled laws' golden tests the untuned hybrid was at or above the better of its two parts.")
    return lines


def judge_notice(verdict: dict) -> str | None:
    """Where the judge is synthetic: say that it is lexical, with the measured overlap, and how to get a real one."""
    if verdict.get("judge", NO_JUDGE) != NO_JUDGE:
        return None
    low, high = PEOPLES_WORD_OVERLAP
    return (f"The only questions here are synthetic, and they are lexical: the {verdict.get('synthetic_questions', 0)} "
            f"questions of the synthetic test split share {verdict.get('synthetic_word_overlap', 0.0):.0%} of their words "
            f"with their passages, against {low:.0%}-{high:.0%} for questions people wrote about the bundled laws. "
            "That flatters BM25 and says little about the models, so they are not used as a judge. Label about 50 "
            f"questions your users ask in the labelling view (python -m stages.ui, then {LABEL_URL}), run `dvc repro`, "
            "and the verdict is judged on them.")
