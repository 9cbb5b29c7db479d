"""Benchmark: how each stage's cost grows with the corpus, from one law to the whole law database.

For each size it builds a fresh project (dvc.yaml, params.yaml, stages/) with
``sample.laws`` set to that many laws (the Securities Law first, then a fixed,
seeded selection; ``all`` is every law in the database) and runs every stage as
its own process, as ``dvc repro`` would, recording wall time and peak memory
(the largest resident set of the stage's process tree, from ``wait4``). At the
largest size it also reruns ``evaluate`` after changing only the fine-tuned
model, which is what a new training run costs to evaluate (base-model vectors
come from the cache).

    python -m benchmarks.scale                        # 1, 10, 100 and all laws: about 1.5 hours on 2 cores
    python -m benchmarks.scale --sizes 1 10           # a quick look
    python -m benchmarks.scale --readme               # also render the docs' numbers (benchmarks.render_docs)
    python -m benchmarks.scale --sizes all --json benchmarks/results/scale_all_laws.json --no-rerun

Writes benchmarks/results/scale.json (or --json), with the CPU and the precision evaluate encoded in.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ruamel.yaml import YAML

from benchmarks.project import REPO_ROOT, copy_pipeline
from benchmarks.train_throughput import cpu_name

STAGES = ("sample", "corpus", "questions", "base_model", "train", "evaluate")
DEFAULT_LAW = "中华人民共和国证券法"
RESULTS = REPO_ROOT / "benchmarks/results/scale.json"


def select_laws(size: str) -> list[str]:
    """The Securities Law, then others in a fixed pseudo-random order; 'all' for the whole database."""
    from stages.lib.documents.law_pdf import ALL_LAWS, law_database, read_laws

    if size == "all":
        return [ALL_LAWS]
    names = [law.name for law in read_laws(law_database(), [ALL_LAWS])]
    others = sorted((n for n in names if n != DEFAULT_LAW), key=lambda n: hashlib.sha256(n.encode()).hexdigest())
    return [DEFAULT_LAW, *others[: int(size) - 1]]


def make_project(folder: Path, laws: list[str]) -> None:
    copy_pipeline(folder)
    yaml = YAML()
    params = yaml.load((folder / "params.yaml").read_text(encoding="utf-8"))
    params["sample"]["laws"] = laws
    with (folder / "params.yaml").open("w", encoding="utf-8") as handle:
        yaml.dump(params, handle)


def run_stage(folder: Path, stage: str, log: Path) -> tuple[float, float]:
    """Run one stage as its own process; return (wall seconds, peak RSS in MiB of its process tree)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    with log.open("a", encoding="utf-8") as handle:
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-m", f"stages.{stage}"], cwd=folder, env=env,
                                   stdout=handle, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"stage {stage} failed in {folder}; see {log}")
    return seconds, usage.ru_maxrss / 1024  # Linux reports KiB


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def perturb_finetuned(folder: Path) -> None:
    """Change the fine-tuned weights slightly, as a new training run would, without training."""
    from safetensors.torch import load_file, save_file

    weights = folder / "models/trained/model.safetensors"  # what evaluate reads (models/finetuned is its shipped copy)
    tensors = load_file(str(weights))
    name = sorted(tensors)[-1]
    tensors[name] = tensors[name] + 1e-4
    save_file(tensors, str(weights), metadata={"format": "pt"})


def measure(size: str, root: Path) -> dict:
    from stages.lib.models.hardware import cpu_bf16_flags

    folder = root / f"laws-{size}"
    folder.mkdir(parents=True)
    laws = select_laws(size)
    make_project(folder, laws)
    log = folder / "stages.log"
    result: dict = {"size": size, "stages": {}}
    for stage in STAGES:
        seconds, peak = run_stage(folder, stage, log)
        result["stages"][stage] = {"seconds": round(seconds, 1), "peak_mib": round(peak)}
        print(f"[scale] {size} laws: {stage} {seconds:.1f}s, peak {peak:.0f} MiB", flush=True)
    corpus, questions = read_json(folder / "metrics/corpus.json"), read_json(folder / "metrics/questions.json")
    train, evaluation = read_json(folder / "metrics/train.json"), read_json(folder / "metrics/eval.json")
    result.update({
        "laws": len(list((folder / "data/sample").glob("*.pdf"))),
        "chunks": corpus["chunks"],
        "train_queries": questions["train_queries"],
        "test_queries": questions["test_queries"],
        "train_pairs_used": train["train_pairs"],
        "evaluated_queries": evaluation["test_queries"],
        "finetuned_hit@5": evaluation["finetuned"]["hit@5"],
        "bm25_hit@5": evaluation["bm25"]["hit@5"],
        "cpu": cpu_name(),
        "cpu_native_bf16_flags": cpu_bf16_flags(),
        "precision": evaluation.get("precision", "fp32"),
        "evaluate_phases": _phases(log),
    })
    return result


def _phases(log: Path) -> str:
    """The last ``[evaluate] phases: ...`` line of the stage log: where evaluate's time went."""
    lines = [line for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if "[evaluate] phases:" in line]
    return lines[-1].split("phases:", 1)[1].strip() if lines else ""


def measure_finetuned_only(size: str, root: Path) -> dict:
    folder = root / f"laws-{size}"
    perturb_finetuned(folder)
    seconds, peak = run_stage(folder, "evaluate", folder / "stages.log")
    print(f"[scale] {size} laws: evaluate after only the fine-tuned model changed {seconds:.1f}s", flush=True)
    return {"seconds": round(seconds, 1), "peak_mib": round(peak)}


def markdown_table(results: list[dict]) -> str:
    header = "| stage | " + " | ".join(f"{r['laws']} law{'s' if r['laws'] > 1 else ''}" for r in results) + " |"
    lines = [header, "| --- |" + " --- |" * len(results)]
    for stage in STAGES:
        cells = [f"{r['stages'][stage]['seconds']:.0f} s, {r['stages'][stage]['peak_mib']} MiB" for r in results]
        lines.append(f"| `{stage}` | " + " | ".join(cells) + " |")
    if any("evaluate_finetuned_changed" in r for r in results):
        cells = [f"{r['evaluate_finetuned_changed']['seconds']:.0f} s" if "evaluate_finetuned_changed" in r else ""
                 for r in results]
        lines.append("| `evaluate`, only the fine-tuned model changed | " + " | ".join(cells) + " |")
    for key, label in (("chunks", "chunks"), ("train_queries", "training queries"),
                       ("train_pairs_used", "training pairs used (budget `train.max_pairs`)"),
                       ("test_queries", "test queries"), ("evaluated_queries", "test queries evaluated (`evaluate.max_queries`)")):
        lines.append(f"| {label} | " + " | ".join(f"{r[key]:,}" for r in results) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["1", "10", "100", "all"])
    parser.add_argument("--keep", type=Path, help="run in this folder and keep the projects (default: a temp folder)")
    parser.add_argument("--readme", action="store_true", help="render the docs' numbers from the results (benchmarks.render_docs)")
    parser.add_argument("--json", type=Path, default=RESULTS, help=f"where to write the results (default {RESULTS})")
    parser.add_argument("--no-rerun", action="store_true", help="skip the rerun of evaluate with only the fine-tuned model changed")
    args = parser.parse_args()
    output = args.json if args.json.is_absolute() else REPO_ROOT / args.json
    root = args.keep or Path(tempfile.mkdtemp(prefix="scale-"))
    root.mkdir(parents=True, exist_ok=True)
    results = []
    for size in args.sizes:
        results.append(measure(size, root))
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if not args.no_rerun:
        results[-1]["evaluate_finetuned_changed"] = measure_finetuned_only(args.sizes[-1], root)
        output.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    table = markdown_table(results)
    print(table)
    if args.readme:  # the table is the scale-table block of docs/hardware.md, read from benchmarks/results/scale.json
        from benchmarks.render_docs import render_all
        render_all()
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
