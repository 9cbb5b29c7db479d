"""Benchmark: two trainings side by side on one machine, as `dvc queue start -j 2` runs two experiments.

In a copy of the default pipeline (reproduced up to base_model with ``dvc repro``) and a second copy of it, it times
``dvc repro --force --single-item train``: in one copy alone; in both at once, each with torch's threads on every
usable core; in both at once with ``OMP_NUM_THREADS`` = the cores / 2 (``stages/lib/common/cores.py`` honours it).
It reports each run's seconds and, for the pairs, the time until both finished against two runs one after the other.

    python -m benchmarks.parallel_training                  # about 8 x one training: 9-10 minutes on 2 cores
    python -m benchmarks.parallel_training --json benchmarks/results/parallel_training.json
    python -m benchmarks.parallel_training --set train.max_pairs=96   # a shorter training (params set in the copies)

Two processes that each start a thread per core leave each thread half a core: OpenMP's threads spin at every
barrier waiting for one that is not running, and each step takes several times as long.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.project import make_dvc_project, offline_env, parse_setting, write_result
from benchmarks.train_throughput import cpu_name
from stages.lib.common.cores import usable_cores

TRAIN = ["dvc", "repro", "--force", "--single-item", "train"]


def timed_trainings(projects: list[Path], threads: int | None) -> list[float]:
    """Seconds of the train stage in each of ``projects``, all started at once; ``threads``: OMP_NUM_THREADS."""
    env = offline_env()
    env.pop("OMP_NUM_THREADS", None)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    started = time.perf_counter()
    running = [subprocess.Popen(TRAIN, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for project in projects]
    seconds = []
    for project, process in zip(projects, running, strict=True):
        output, _ = process.communicate()
        if process.returncode:
            raise SystemExit(f"training in {project} failed ({process.returncode}):\n{output[-3000:]}")
        seconds.append(round(time.perf_counter() - started, 1))
    return seconds


def measure(first: Path, second: Path, settings: dict[str, object]) -> dict:
    cores = usable_cores()
    alone = timed_trainings([first], None)[0]
    side_by_side = timed_trainings([first, second], None)
    shared = timed_trainings([first, second], max(1, cores // 2))
    return {
        "cpu": cpu_name(),
        "usable_cores": cores,
        "settings": settings,
        "steps": json.loads((first / "metrics/train.json").read_text(encoding="utf-8"))["steps"],
        "alone_seconds": alone,
        "one_after_the_other_seconds": round(2 * alone, 1),
        "side_by_side_every_core_each_seconds": side_by_side,
        "side_by_side_every_core_each_slowdown": round(max(side_by_side) / alone, 2),
        "side_by_side_omp_num_threads": max(1, cores // 2),
        "side_by_side_cores_shared_seconds": shared,
        "side_by_side_cores_shared_vs_one_after_the_other": round(max(shared) / (2 * alone), 3),
        "command": "python -m benchmarks.parallel_training" + "".join(f" --set {k}={v}" for k, v in settings.items()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, help="also write the result here")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a params.yaml value for the copies, e.g. train.max_pairs=96 (YAML syntax; repeatable)")
    args = parser.parse_args()
    settings = dict(parse_setting(text) for text in args.set)
    with tempfile.TemporaryDirectory() as folder:
        first, second = Path(folder) / "first", Path(folder) / "second"
        make_dvc_project(first, settings)
        shutil.copytree(first, second, symlinks=True)
        result = measure(first, second, settings)
    print(json.dumps(result, indent=2))
    write_result(args.json, result)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
