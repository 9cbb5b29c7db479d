"""Benchmark: does training in bf16 cost retrieval quality? Two reproduced runs of the default, bf16 against fp32.

Needs a CPU with native bf16 (avx512_bf16 / amx_bf16) or a GPU. On the same machine:

    git clone <repo> /tmp/bf16 && (cd /tmp/bf16 && dvc repro)                                   # auto: bf16 here
    git clone <repo> /tmp/fp32 && (cd /tmp/fp32 && dvc exp run -S compute.precision=fp32)
    python -m benchmarks.bf16_training --bf16 /tmp/bf16 --fp32 /tmp/fp32 --json benchmarks/results/bf16_training.json

Each run trains, selects its checkpoint and encodes in its own precision; the comparison is per question
(``data/eval/per_query.jsonl``: the same questions in both), so the intervals are of the paired
difference bf16 - fp32, for every retriever and question set. Also: each run's train time, steps, the
step model selection chose and its golden val score.
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


def per_query_values(project: Path) -> dict[str, dict[str, dict[str, float]]]:
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


def compare(bf16: Path, fp32: Path) -> dict:
    from stages.lib.retrieval.intervals import intervals

    low, full = per_query_values(bf16), per_query_values(fp32)
    result: dict = {"cpu": cpu_name(), "runs": {}, "sets": {}}
    for name, project in (("bf16", bf16), ("fp32", fp32)):
        train = json.loads((project / "metrics/train.json").read_text(encoding="utf-8"))
        result["runs"][name] = {key: train.get(key) for key in ("precision", "train_seconds", "steps", "best_step",
                                                                "best_val_ndcg@10", "pairs_per_second")}
    for set_name in sorted(set(low) & set(full)):
        ids = sorted(set(low[set_name]) & set(full[set_name]))
        row: dict = {"queries": len(ids)}
        for retriever in RETRIEVERS:
            scores = {precision: {metric: np.array([values[q][retriever][m] for q in ids])
                                  for m, metric in enumerate(("hit@5", "mrr@10"))}
                      for precision, values in (("bf16", low[set_name]), ("fp32", full[set_name]))}
            bounds = intervals(scores, baseline="fp32")["bf16"]
            row[retriever] = {
                **{f"{metric}_{p}": round(float(scores[p][metric].mean()), 4) for p in scores for metric in ("hit@5", "mrr@10")},
                **{key.replace("_vs_fp32", ""): value for key, value in bounds.items() if "diff" in key},
                "hit@5_queries_changed": int(np.sum(scores["bf16"]["hit@5"] != scores["fp32"]["hit@5"])),
            }
        result["sets"][set_name] = row
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bf16", type=Path, required=True, help="a project reproduced with compute.precision bf16")
    parser.add_argument("--fp32", type=Path, required=True, help="the same, reproduced with compute.precision fp32")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    result = compare(args.bf16, args.fp32)
    for set_name, row in result["sets"].items():
        ft = row["finetuned"]
        print(f"{set_name:<40} finetuned hit@5 fp32 {ft['hit@5_fp32']:.3f} bf16 {ft['hit@5_bf16']:.3f} "
              f"diff {ft['hit@5_diff']:+.3f} [{ft['hit@5_diff_ci_low']:+.3f}, {ft['hit@5_diff_ci_high']:+.3f}]")
    write_result(args.json, result)


if __name__ == "__main__":
    main()
