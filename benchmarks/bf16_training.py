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
from pathlib import Path

from benchmarks.paired_runs import compare as compare_runs
from benchmarks.paired_runs import print_summary
from benchmarks.project import write_result


def compare(bf16: Path, fp32: Path) -> dict:
    return compare_runs(("bf16", bf16), ("fp32", fp32))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bf16", type=Path, required=True, help="a project reproduced with compute.precision bf16")
    parser.add_argument("--fp32", type=Path, required=True, help="the same, reproduced with compute.precision fp32")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    result = compare(args.bf16, args.fp32)
    print_summary(result, "bf16", "fp32")
    write_result(args.json, result)


if __name__ == "__main__":
    main()
