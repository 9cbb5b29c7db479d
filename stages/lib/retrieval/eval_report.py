"""What the ``evaluate`` stage makes of its side-by-side comparison: the metrics assembled, the report logged, the
files written.

It owns the line that says what is being evaluated, the assembly of the scores (``Report``: metrics per set with
intervals, word overlaps, scores by overlap band, the numbers of ``metrics/eval.json`` with the verdict said first,
``verdict.py``), the tables per question set (each golden set with its 95% intervals, then the synthetic test
split, not a judge, with its scores by word-overlap band), the plain "fine-tuning helped / did not help" lines, the
llama-index summary line, and the layout of what is written: ``metrics/eval.json``, ``eval_by_style.json``,
``eval_by_overlap.json``, ``metrics/transfer.json`` (``transfer.py``), the long-format hit-rate curve the plot
template reads, and one row per query for error analysis. The numbers themselves come from ``side_by_side.py``.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

from stages.lib.common.files import write_json, write_jsonl
from stages.lib.common.timers import PhaseTimer
from stages.lib.documents.lexical_overlap import BANDS
from stages.lib.models.hardware import Hardware
from stages.lib.retrieval.fusion import Fusion
from stages.lib.retrieval.intervals import format_gain, format_interval_table
from stages.lib.retrieval.question_sets import SYNTHETIC_TEST, QuestionSets
from stages.lib.retrieval.rankers import Ranking, first_relevant_rank, format_table, retrieval_metrics
from stages.lib.retrieval.side_by_side import (
    COMPARED_WITH_BASE,
    Inputs,
    by_overlap,
    by_style,
    mean_overlaps,
    scored,
    word_overlaps,
)
from stages.lib.retrieval.transfer import transfer_lines
from stages.lib.retrieval.verdict import build_verdict, judge_notice, verdict_lines

CURVE_MAX_K = 10
METRICS_FILE = Path("metrics/eval.json")
BY_STYLE_FILE = Path("metrics/eval_by_style.json")
BY_OVERLAP_FILE = Path("metrics/eval_by_overlap.json")
TRANSFER_FILE = Path("metrics/transfer.json")
CURVE_FILE = Path("metrics/hit_rate.csv")
PER_QUERY_FILE = Path("data/eval/per_query.jsonl")

log = logging.getLogger(__name__)


@dataclass
class Report:
    """One run's scores: ``results`` set -> retriever -> metrics with intervals; ``bands`` every set's scores by
    word-overlap band; ``summary`` the numbers of ``metrics/eval.json`` (the llama-index check adds its own)."""

    results: dict[str, dict]
    bands: dict
    summary: dict


def log_inputs(inputs: Inputs, hardware: Hardware) -> None:
    sets = inputs.sets
    listed = ", ".join(f"{name} {len(d.queries)}" + (f" of {sets.totals[name]}" if len(d.queries) < sets.totals[name] else "")
                       for name, d in sets.reported.items())
    tuning = f"; knobs tuned on {sets.tuning_name} ({len(sets.tuning.queries)})" if sets.tuning is not None else ""
    log.info(f"queries: {listed}{tuning}; over {len(inputs.test.corpus)} chunks; "
             f"{inputs.prompts.describe()}; encoding on {hardware.describe()}")
    for file in sets.skipped_golden:
        log.info(f"golden set {file}: none of its documents is in this corpus, skipped")


def build_report(inputs: Inputs, rankings: dict[str, dict[str, Ranking]], fusion: Fusion, hardware: Hardware,
                 k_values: list[int], timer: PhaseTimer) -> Report:
    """Every set's metrics with intervals, its word overlap and scores by overlap band, and eval.json's numbers."""
    results = scored(inputs.sets, rankings, k_values)
    with timer("word overlap"):
        overlaps = word_overlaps(inputs.sets)
    bands = by_overlap(inputs.sets, rankings, overlaps)
    return Report(results, bands, summary_metrics(inputs, results, fusion, hardware, mean_overlaps(overlaps)))


def write_outputs(report: Report, inputs: Inputs, rankings: dict[str, dict[str, Ranking]], k_values: list[int],
                  transfer: dict) -> None:
    """The metrics files (``transfer`` as ``transfer.py`` scored it), the hit-rate curve and the per-query rows."""
    write_json(METRICS_FILE, report.summary)
    write_json(BY_STYLE_FILE, by_style(inputs.test, rankings[SYNTHETIC_TEST], k_values))
    write_json(BY_OVERLAP_FILE, report.bands)
    write_json(TRANSFER_FILE, transfer)
    write_curve(CURVE_FILE, inputs.sets, rankings)
    write_per_query(PER_QUERY_FILE, inputs.sets, rankings)


def summary_metrics(inputs: Inputs, results: dict[str, dict], fusion: Fusion, hardware: Hardware,
                    overlaps: dict[str, float]) -> dict:
    """The numbers of ``metrics/eval.json``: the verdict, the synthetic test split's rows at the top level, each other
    set nested; ``overlaps``: each set's mean word overlap with its passages."""
    test = inputs.test
    queries = {name: len(dataset.queries) for name, dataset in inputs.sets.reported.items()}
    summary: dict = {
        "verdict": build_verdict(results, queries, overlaps, SYNTHETIC_TEST),
        **results[SYNTHETIC_TEST], "test_queries": len(test.queries), "test_queries_total": inputs.sets.totals[SYNTHETIC_TEST],
        "test_word_overlap": overlaps[SYNTHETIC_TEST],
        "corpus_size": len(test.corpus), "hybrid_fusion": fusion.method, "hybrid_dense_weight": fusion.weight,
        # Where the vectors were computed (as in metrics/train.json): bf16 vectors differ slightly from fp32 ones.
        **hardware.metrics(),
        **{name: {**scores, "queries": queries[name], "word_overlap": overlaps[name]}
           for name, scores in results.items() if name != SYNTHETIC_TEST},
    }
    if inputs.sets.tuning is not None:
        summary.update(tuning_queries=len(inputs.sets.tuning.queries), tuning_queries_total=inputs.sets.tuning_total)
    return summary


def log_tables(report: Report, k_values: list[int], fusion: Fusion, chosen_on: str, top_k: int, checked: bool,
               transfer: dict) -> None:
    """The report, verdict first, as one message: its tables stay aligned, under one ``[evaluate]`` line."""
    summary, results = report.summary, report.results
    lines = ["the comparison:", "", "Verdict:"]
    lines += [f"  {line}" for line in verdict_lines(summary["verdict"], fusion=f"{fusion.describe()}, {chosen_on}")]
    notice = judge_notice(summary["verdict"])
    if notice:
        lines += ["", notice]
    for set_name, scores in results.items():
        if set_name == SYNTHETIC_TEST:
            continue
        lines += ["", f"{set_name}: {summary[set_name]['queries']} questions written by people, word overlap "
                      f"{summary[set_name]['word_overlap']:.2f} (95% paired-bootstrap intervals):", ""]
        lines.append(format_interval_table(scores, baseline="bm25"))
        lines += _gains(scores)
    columns = [f"hit@{k}" for k in k_values] + ["mrr@10", "ndcg@10"]
    sampled = (f" (a seeded sample of {summary['test_queries_total']})"
               if summary["test_queries"] < summary["test_queries_total"] else "")
    lines += ["", f"Synthetic test split, not a judge: {summary['test_queries']} generated questions{sampled} over "
                  f"{summary['corpus_size']} chunks, word overlap {summary['test_word_overlap']:.2f}:", ""]
    lines.append(format_table(results[SYNTHETIC_TEST], columns))
    lines.append(f"(hybrid = {fusion.describe()}, {chosen_on})")
    lines.append(format_band_table(report.bands[SYNTHETIC_TEST]))
    if checked:
        lines += ["", f"llama-index VectorStoreIndex retriever, fine-tuned hit@{top_k}: "
                      f"{summary[f'llamaindex_finetuned_hit@{top_k}']:.3f} (ours on the same "
                      f"{summary['llamaindex_sample_queries']} queries and {summary['llamaindex_sample_corpus']} chunks: "
                      f"{summary[f'ours_on_llamaindex_sample_hit@{top_k}']:.3f})"]
    if transfer:
        lines += ["", "Transfer (the models searched over documents that are not the corpus, their golden test):"]
        lines += [f"  {line}" for line in transfer_lines(transfer)]
    log.info("\n".join(lines) + "\n")


def format_band_table(by_band: dict) -> str:
    """hit@5 per retriever and word-overlap band of one set (``side_by_side.by_overlap``)."""
    bands = [band for band, _, _ in BANDS]
    retrievers = [name for name in by_band[bands[0]] if name != "queries"]
    header = "by word overlap".ljust(18) + "".join(
        f"{band} <{high:g} ({by_band[band]['queries']})".rjust(22) if high != float("inf") else
        f"{band} ({by_band[band]['queries']})".rjust(22) for band, _, high in BANDS)
    lines = [header + "   (hit@5; questions per band)"]
    for name in retrievers:
        cells = [by_band[band][name].get("hit@5") for band in bands]
        lines.append(name.ljust(18) + "".join((f"{cell:.3f}" if cell is not None else "-").rjust(22) for cell in cells))
    return "\n".join(lines)


def _gains(scores: dict[str, dict]) -> list[str]:
    """Say plainly, per set, whether fine-tuning beat the model it started from."""
    return [format_gain(scores[name], name, base) for name, base in COMPARED_WITH_BASE.items()
            if name in scores and f"hit@5_diff_vs_{base}" in scores[name]]


def write_curve(path: Path, sets: QuestionSets, rankings: dict[str, dict[str, Ranking]]) -> None:
    """Hit rate at k = 1..CURVE_MAX_K, one row per (question set, retriever, k): long format, so the plot
    template can give each retriever a colour and each set a panel."""
    ks = list(range(1, CURVE_MAX_K + 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["question_set", "retriever", "k", "hit_rate"])
        for set_name, dataset in sets.reported.items():
            for name, ranking in rankings[set_name].items():
                metrics = retrieval_metrics(ranking, dataset.relevant_docs, ks)
                writer.writerows([set_name, name, k, metrics[f"hit@{k}"]] for k in ks)


def write_per_query(path: Path, sets: QuestionSets, rankings: dict[str, dict[str, Ranking]]) -> None:
    rows = []
    for set_name, dataset in sets.reported.items():
        for qid, text in dataset.queries.items():
            relevant = set(dataset.relevant_docs[qid])
            row = {"set": set_name, "id": qid, "query": text, "style": dataset.query_styles.get(qid, ""),
                   "relevant": sorted(relevant)}
            for name, ranking in rankings[set_name].items():
                row[f"{name}_rank"] = first_relevant_rank(ranking[qid], relevant)
                row[f"{name}_top3"] = ranking[qid][:3]
            rows.append(row)
    write_jsonl(path, rows)
