"""Benchmark: two reproduced runs of the pipeline compared question by question, with paired intervals.

Each run's evaluation writes every question's rank per retriever (``data/eval/per_query.jsonl``); the same
questions are in both, so the intervals are of the paired difference candidate - baseline, for every retriever
and question set. Also: each run's train time, steps, the step model selection chose and its golden val score.

    python -m benchmarks.paired_runs --candidate after=/tmp/after --baseline before=/tmp/before \\
        --json benchmarks/results/<name>.json

A run is a project folder (or a copy of its ``data/eval`` and ``metrics``) after ``dvc repro``.

Does training in bf16 cost quality? (``benchmarks/results/bf16_training.json``; needs native bf16 or a GPU)

    git clone <repo> /tmp/bf16 && (cd /tmp/bf16 && dvc repro)                                   # auto: bf16 here
    git clone <repo> /tmp/fp32 && (cd /tmp/fp32 && dvc exp run -S compute.precision=fp32)
    python -m benchmarks.paired_runs --candidate bf16=/tmp/bf16 --baseline fp32=/tmp/fp32 \\
        --json benchmarks/results/bf16_training.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from benchmarks.project import write_result
from benchmarks.train_throughput import cpu_name
from stages.lib.retrieval.rankers import hit_at, reciprocal_rank

RETRIEVERS = ("base", "finetuned", "bm25", "hybrid")
TRAIN_KEYS = ("precision", "train_seconds", "steps", "best_step", "best_val_ndcg@10", "pairs_per_second")


def per_query_values(project: Path) -> dict[str, dict[str, dict[str, tuple[float, float]]]]:
    """set -> query id -> {retriever: (hit@5, reciprocal rank within 10)} from the evaluation's per-query file."""
    out: dict[str, dict[str, dict]] = {}
    for line in (project / "data/eval/per_query.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        values = {}
        for retriever in RETRIEVERS:
            rank = row.get(f"{retriever}_rank")
            values[retriever] = (hit_at(rank, 5), reciprocal_rank(rank))
        out.setdefault(row["set"], {})[row["id"]] = values
    return out


def compare(candidate: tuple[str, Path], baseline: tuple[str, Path]) -> dict:
    """Per set and retriever: both runs' hit@5 and MRR@10, their paired difference with its interval, and how many
    questions' hit@5 changed. ``candidate``/``baseline``: (name, project folder)."""
    from stages.lib.retrieval.intervals import intervals

    (new_name, new_project), (old_name, old_project) = candidate, baseline
    new, old = per_query_values(new_project), per_query_values(old_project)
    result: dict = {"cpu": cpu_name(), "runs": {}, "sets": {}}
    for name, project in (candidate, baseline):
        train = json.loads((project / "metrics/train.json").read_text(encoding="utf-8"))
        result["runs"][name] = {key: train.get(key) for key in TRAIN_KEYS}
    for set_name in sorted(set(new) & set(old)):
        ids = sorted(set(new[set_name]) & set(old[set_name]))
        row: dict = {"queries": len(ids)}
        for retriever in RETRIEVERS:
            scores = {name: {metric: np.array([values[q][retriever][m] for q in ids])
                             for m, metric in enumerate(("hit@5", "mrr@10"))}
                      for name, values in ((new_name, new[set_name]), (old_name, old[set_name]))}
            bounds = intervals(scores, baseline=old_name)[new_name]
            row[retriever] = {
                **{f"{metric}_{name}": round(float(scores[name][metric].mean()), 4) for name in scores
                   for metric in ("hit@5", "mrr@10")},
                **{key.replace(f"_vs_{old_name}", ""): value for key, value in bounds.items() if "diff" in key},
                "hit@5_queries_changed": int(np.sum(scores[new_name]["hit@5"] != scores[old_name]["hit@5"])),
            }
        result["sets"][set_name] = row
    return result


def print_summary(result: dict, candidate: str, baseline: str) -> None:
    for set_name, row in result["sets"].items():
        for metric in ("hit@5", "mrr@10"):
            ft = row["finetuned"]
            print(f"{set_name:<40} finetuned {metric} {baseline} {ft[f'{metric}_{baseline}']:.3f} "
                  f"{candidate} {ft[f'{metric}_{candidate}']:.3f} diff {ft[f'{metric}_diff']:+.3f} "
                  f"[{ft[f'{metric}_diff_ci_low']:+.3f}, {ft[f'{metric}_diff_ci_high']:+.3f}]")


def _named_folder(text: str) -> tuple[str, Path]:
    name, _, folder = text.partition("=")
    if not folder:
        raise argparse.ArgumentTypeError(f"{text!r}: write it as NAME=FOLDER")
    return name, Path(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidate", type=_named_folder, required=True, help="NAME=FOLDER of the run to judge")
    parser.add_argument("--baseline", type=_named_folder, required=True, help="NAME=FOLDER of the run it replaces")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    result = compare(args.candidate, args.baseline)
    print_summary(result, args.candidate[0], args.baseline[0])
    write_result(args.json, result)


if __name__ == "__main__":
    main()
