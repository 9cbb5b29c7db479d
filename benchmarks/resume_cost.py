"""Benchmark: what a `kill -9` of training costs, as a share of an uninterrupted run.

In a fresh copy of the default pipeline (sample, corpus, questions and base_model
reproduced first, with ``dvc repro``), it times ``dvc repro --force --single-item train``
uninterrupted (F), runs it again and kills the whole process tree with SIGKILL at
``--kill-at`` x F (60% by default), then times the rerun that resumes it (R).
It reports R / F, the checkpoint step resumed from, and whether the resumed model's
weights equal the uninterrupted run's (on one machine they should, bit for bit).

    python -m benchmarks.resume_cost                  # about 2.5 x F: 3-8 minutes on 2 cores
    python -m benchmarks.resume_cost --json benchmarks/results/resume_cost.json
    python -m benchmarks.resume_cost --set train.epochs=3   # a longer training (params set in the copy)

What a resumed run cannot save is its start-up (imports, the model, the data: 9-12 s on a 2-core CPU, plus DVC's)
and the work since the last checkpoint; the steps after the kill point, 40% of the stepping, it must redo. So the
rerun costs about 0.4 x F + start-up, and the share falls towards 0.4 as training gets longer.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.project import dvc, make_dvc_project, offline_env, parse_setting, write_result
from benchmarks.train_throughput import cpu_name

WEIGHTS = Path("models/trained/model.safetensors")


def timed_train(project: Path) -> tuple[float, str]:
    started = time.perf_counter()
    result = dvc(["repro", "--force", "--single-item", "train"], project)
    return time.perf_counter() - started, result.stdout


def kill_tree(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGKILL)  # dvc, the shell it starts and the Python process under it
    process.wait()


def measure(project: Path, kill_at: float, settings: dict[str, object] | None = None) -> dict:
    full, _ = timed_train(project)
    reference = (project / WEIGHTS).read_bytes()
    interrupted = subprocess.Popen(["dvc", "repro", "--force", "--single-item", "train"], cwd=project, env=offline_env(),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    time.sleep(kill_at * full)
    kill_tree(interrupted)
    checkpoints = sorted(int(p.parent.name.split("-")[-1])
                         for p in project.glob("models/.train-work/*/checkpoint-*/trainer_state.json"))
    # The rerun is forced too: DVC would otherwise restore the first run's model from its cache, which says
    # nothing about resuming (a user's killed run has no such earlier run).
    rerun, output = timed_train(project)
    metrics = json.loads((project / "metrics/train.json").read_text(encoding="utf-8"))
    return {
        "cpu": cpu_name(),
        "settings": settings or {},
        "full_train_seconds": round(full, 1),
        "killed_after_seconds": round(kill_at * full, 1),
        "complete_checkpoints_at_kill": checkpoints,
        "resumed_from_step": metrics["resumed_from_step"],
        "steps": metrics["steps"],
        "rerun_seconds": round(rerun, 1),
        "rerun_share_of_full": round(rerun / full, 3),
        "checkpoints_saved_in_rerun": metrics["checkpoints_saved"],
        "checkpoint_seconds_in_rerun": metrics["checkpoint_seconds"],
        "resumed_weights_identical": (project / WEIGHTS).read_bytes() == reference,
        "resume_line": next((line for line in output.splitlines() if "resuming from" in line), ""),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kill-at", type=float, default=0.6, help="share of the uninterrupted run's time (default 0.6)")
    parser.add_argument("--json", type=Path, help="also write the result here")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a params.yaml value for the copy, e.g. train.epochs=3 (YAML syntax; repeatable)")
    args = parser.parse_args()
    settings = dict(parse_setting(text) for text in args.set)
    with tempfile.TemporaryDirectory() as folder:
        project = Path(folder) / "project"
        make_dvc_project(project, settings)
        result = measure(project, args.kill_at, settings)
    print(json.dumps(result, indent=2))
    write_result(args.json, result)


if __name__ == "__main__":
    main()
