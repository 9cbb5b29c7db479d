"""Training variants judged on golden val (questions written by people) of two laws, never on a test set.

    python -m benchmarks.training_variants                          # every variant, both laws
    python -m benchmarks.training_variants lr_2e-5 frozen           # some of them
    python -m benchmarks.training_variants --law labor_contract_law lr_2e-5

Each variant is the default pipeline with the knobs under study set explicitly. For each law (the
"judges": the bundled Securities Law and the Labor Contract Law, each with its own golden set) the
benchmark prepares a project once (sample, corpus, questions, base_model), then runs `questions`
(when a `questions.*` param changes) and `train` in a fresh copy per variant, and scores the base
model, the fine-tuned model, BM25 and the best fusion on that law's golden val questions, per
language. A recipe choice must hold on both laws. What a variant costs is its training time on this
machine. Results go to benchmarks/results/training_variants_e5.json (one entry per law and variant,
kept across runs). The MiniLM-era results are in benchmarks/results/training_variants.json.

The train stage picks its checkpoint (or the base model) on the same golden val, so the fine-tuned
scores here lean optimistic; every variant gets the same advantage, and test sets stay untouched.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.project import REPO_ROOT, copy_pipeline, copy_prepared

RESULTS = REPO_ROOT / "benchmarks/results/training_variants_e5.json"
PREPARED = ("data/sample", "data/corpus", "data/questions", "models/base")
JUDGES = {
    "securities_law": {"sample.laws": ["中华人民共和国证券法"], "evaluate.golden_sets": ["data/golden/securities_law.jsonl"]},
    "labor_contract_law": {"sample.laws": ["中华人民共和国劳动合同法"],
                           "evaluate.golden_sets": ["data/golden/labor_contract_law.jsonl"]},
}
# Each variant sets the knobs under study explicitly (the rest are params.yaml's), so its result does not
# depend on later changes of the defaults.
FULL = {"train.freeze_token_embeddings": False}
FROZEN = {"train.freeze_token_embeddings": True}
DEFAULT_RECIPE = {**FROZEN, "train.learning_rate": 2e-5, "train.max_pairs": 384, "train.loss": "mnrl",
                  "train.round_trip_filter": "none", "train.wise_ft_alphas": [1.0]}
VARIANTS: dict[str, dict[str, object]] = {
    "base_lr_1e-4_all_weights": {**FULL, "train.learning_rate": 1e-4},
    "frozen_lr_1e-4": {**FROZEN, "train.learning_rate": 1e-4},
    "frozen_lr_5e-5": {**FROZEN, "train.learning_rate": 5e-5},
    "frozen_lr_2e-5": {**FROZEN, "train.learning_rate": 2e-5},
    "frozen_lr_5e-5_batch_16": {**FROZEN, "train.learning_rate": 5e-5, "train.batch_size": 16},
    # Half the pairs: what the 5-minute CPU budget allows.
    "frozen_lr_5e-5_384_pairs": {**FROZEN, "train.learning_rate": 5e-5, "train.max_pairs": 384},
    "frozen_lr_5e-5_384_pairs_batch_16": {**FROZEN, "train.learning_rate": 5e-5, "train.max_pairs": 384,
                                          "train.batch_size": 16},
    "frozen_lr_1e-5": {**FROZEN, "train.learning_rate": 1e-5},
    "frozen_lr_2e-5_384_pairs": {**FROZEN, "train.learning_rate": 2e-5, "train.max_pairs": 384},
    "frozen_lr_2e-5_384_pairs_model_negatives": {**FROZEN, "train.learning_rate": 2e-5, "train.max_pairs": 384,
                                                 "train.hard_negatives": True, "train.hard_negative_miner": "model"},
    "frozen_lr_2e-5_384_pairs_questions_only": {**FROZEN, "train.learning_rate": 2e-5, "train.max_pairs": 384,
                                                "questions.train_styles": {"question": 3, "keywords": 0, "sentence": 0,
                                                                           "topic": 0}},
    "frozen_lr_2e-5_384_pairs_no_topic": {**FROZEN, "train.learning_rate": 2e-5, "train.max_pairs": 384,
                                          "questions.train_styles": {"question": 3, "keywords": 1, "sentence": 0, "topic": 0}},
    "frozen_lr_2e-5_384_pairs_with_sentences": {**FROZEN, "train.learning_rate": 2e-5, "train.max_pairs": 384,
                                                "questions.train_styles": {"question": 2, "keywords": 1, "sentence": 2,
                                                                           "topic": 1}},
    "frozen_lr_5e-5_2_epochs": {**FROZEN, "train.learning_rate": 5e-5, "train.epochs": 2},
    "frozen_lr_5e-5_bm25_negatives": {**FROZEN, "train.learning_rate": 5e-5, "train.hard_negatives": True,
                                      "train.hard_negative_miner": "bm25"},
    "frozen_lr_5e-5_model_negatives": {**FROZEN, "train.learning_rate": 5e-5, "train.hard_negatives": True,
                                       "train.hard_negative_miner": "model"},
    "frozen_lr_5e-5_questions_only": {**FROZEN, "train.learning_rate": 5e-5,
                                      "questions.train_styles": {"question": 3, "keywords": 0, "sentence": 0, "topic": 0}},
    "frozen_lr_5e-5_no_topic": {**FROZEN, "train.learning_rate": 5e-5,
                                "questions.train_styles": {"question": 3, "keywords": 1, "sentence": 0, "topic": 0}},
    # Issue 22, "fine-tuning that generalises": each against the default recipe of the day (frozen, 2e-5, 384 pairs,
    # MNRL, no filter, no ensembling), run in the same session so that machine and precision match.
    "default_recipe": {**DEFAULT_RECIPE},
    "default_wise_ft": {**DEFAULT_RECIPE, "train.wise_ft_alphas": [0.25, 0.5, 0.75, 1.0]},
    "default_gist": {**DEFAULT_RECIPE, "train.loss": "gist"},
    "default_round_trip_bm25_top10": {**DEFAULT_RECIPE, "train.round_trip_filter": "bm25", "train.round_trip_top_k": 10},
    "default_round_trip_base_top10": {**DEFAULT_RECIPE, "train.round_trip_filter": "base", "train.round_trip_top_k": 10},
    # After GIST became the default: more passes over the same pairs (the Labor Contract Law has only 248, 7 steps).
    "default_gist_2_epochs": {**DEFAULT_RECIPE, "train.loss": "gist", "train.epochs": 2},
}


def _set_params(project: Path, changes: dict[str, object]) -> None:
    from ruamel.yaml import YAML

    yaml = YAML()
    path = project / "params.yaml"
    params = yaml.load(path.read_text(encoding="utf-8"))
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        node = params
        for key in parents:
            node = node[key]
        node[leaf] = value
    with path.open("w", encoding="utf-8") as handle:
        yaml.dump(params, handle)


def _stage(module: str, project: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-m", f"stages.{module}"], cwd=project, capture_output=True, text=True,
                            env=env)
    if result.returncode:
        raise SystemExit(f"stage {module} failed in {project}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")


def prepared_project(law: str, root: Path) -> Path:
    """A project with this law's documents, chunks, questions and the base model, made once and reused."""
    project = root / f"prepared-{law}"
    if all((project / path).exists() for path in PREPARED):
        return project
    shutil.rmtree(project, ignore_errors=True)
    copy_pipeline(project)
    _set_params(project, JUDGES[law])
    for stage in ("sample", "corpus", "questions", "base_model"):
        _stage(stage, project)
    return project


def golden_val_scores(project: Path) -> dict[str, dict]:
    """Base, fine-tuned, BM25 and the best fusion (chosen on these same val questions) per golden val language."""
    from stages.lib.common.params import parse_params
    from stages.lib.documents.chunk_file import load_chunks
    from stages.lib.models.hardware import resolve_device
    from stages.lib.models.prompts import resolve_prompts
    from stages.lib.retrieval.dense_encoding import LazySentenceEncoder
    from stages.lib.retrieval.fusion import candidates, choose_fusion
    from stages.lib.retrieval.golden import golden_datasets, load_golden
    from stages.lib.retrieval.rankers import BM25Index, dense_rank, retrieval_metrics

    params = parse_params((project / "params.yaml").read_text(encoding="utf-8"))
    prompts = resolve_prompts(params.model.query_prompt, params.model.document_prompt, project / "models/base")
    chunks = load_chunks(project / "data/corpus/chunks.jsonl")
    corpus = {c.id: c.text for c in chunks}
    lexical_index = BM25Index(corpus)
    # The train stage's output is models/trained (model_card, not run here, ships it as models/finetuned).
    encoders = {name: LazySentenceEncoder(project / "models" / folder, resolve_device("auto"), params.model.max_seq_length, 64)
                for name, folder in (("base", "base"), ("finetuned", "trained"))}
    doc_vectors = {name: encoder(list(corpus.values()), prompts.document) for name, encoder in encoders.items()}
    scores: dict[str, dict] = {}
    for file in params.evaluate.golden_sets:
        for (split, language), dataset in golden_datasets(load_golden(project / file), chunks).items():
            if split != "val":
                continue
            ids = list(dataset.queries)
            queries = [dataset.queries[q] for q in ids]
            dense = {name: dense_rank(ids, encoder(queries, prompts.query), list(corpus), doc_vectors[name], 100)
                     for name, encoder in encoders.items()}
            lexical = lexical_index.rank(dataset.queries, 100)
            choice = choose_fusion(dense["finetuned"], lexical, dataset.relevant_docs, candidates("auto", "auto"), 60, 100)

            def short(ranking, relevant=dataset.relevant_docs):
                metrics = retrieval_metrics(ranking, relevant, [5])
                return {k: round(v, 4) for k, v in metrics.items() if k in ("hit@5", "mrr@10")}

            scores[language] = {
                "queries": len(ids), "base": short(dense["base"]), "finetuned": short(dense["finetuned"]),
                "bm25": short(lexical),
                "best_fusion": {"method": choice.fusion.method, "weight": choice.fusion.weight,
                                **{k: round(v, 4) for k, v in choice.validation["hybrid"].items()}},
            }
    return scores


def run_variant(law: str, name: str, changes: dict[str, object], root: Path) -> dict:
    prepared = prepared_project(law, root)
    with tempfile.TemporaryDirectory(prefix=f"variant-{name}-", dir=root) as tmp:
        project = Path(tmp)
        copy_prepared(prepared, project, PREPARED)
        # Recomputing activations changes memory, not results (bit-identical weights): off, for speed.
        _set_params(project, {**JUDGES[law], "train.gradient_checkpointing": False, **changes})
        if any(key.startswith("questions.") for key in changes):
            _stage("questions", project)
        started = time.perf_counter()
        _stage("train", project)
        seconds = time.perf_counter() - started
        train = json.loads((project / "metrics/train.json").read_text(encoding="utf-8"))
        return {"changes": changes, "train_stage_seconds": round(seconds, 1), "train_pairs": train["train_pairs"],
                "steps": train["steps"], "best_step": train["best_step"],
                "base_model_selected": train.get("base_model_selected", 0),
                # What ensembling and the round-trip filter decided (absent for runs before they existed).
                **{key: value for key, value in train.items() if key.startswith(("wise_ft", "round_trip"))},
                "golden_val": golden_val_scores(project)}


def markdown_table(results: dict) -> str:
    """Golden val, Chinese, per law: base, fine-tuned and best fusion (hit@5 / MRR@10), with training time."""
    laws = [law for law in JUDGES if law in results]
    header = "| variant | " + " | ".join(f"{law}: train s | fine-tuned hit@5 / MRR@10 | best fusion hit@5 / MRR@10"
                                          for law in laws) + " |"
    lines = [header, "| --- |" + " --- | --- | --- |" * len(laws)]
    base_row = ["base model (step 0)"]
    for law in laws:
        any_result = next(iter(results[law].values()))["golden_val"]["zh"]
        base_row += ["–", f"{any_result['base']['hit@5']:.3f} / {any_result['base']['mrr@10']:.3f}",
                     f"BM25 {any_result['bm25']['hit@5']:.3f} / {any_result['bm25']['mrr@10']:.3f}"]
    lines.append("| " + " | ".join(base_row) + " |")
    names = list(dict.fromkeys(name for law in laws for name in results[law]))
    for name in names:
        cells = [name]
        for law in laws:
            entry = results[law].get(name)
            if entry is None or "error" in entry:
                cells += ["", "not run" if entry is None else "cannot run: " + entry["error"].split(":")[0], ""]
                continue
            zh = entry["golden_val"]["zh"]
            cells += [f"{entry['train_stage_seconds']:.0f}", f"{zh['finetuned']['hit@5']:.3f} / {zh['finetuned']['mrr@10']:.3f}",
                      f"{zh['best_fusion']['hit@5']:.3f} / {zh['best_fusion']['mrr@10']:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.training_variants")
    parser.add_argument("variants", nargs="*", help=f"default: all of {', '.join(VARIANTS)}")
    parser.add_argument("--table", action="store_true", help="print the results as a Markdown table and stop")
    parser.add_argument("--law", choices=sorted(JUDGES), action="append", help="default: both")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "embedding-ft-variants",
                        help="where prepared projects are kept between runs")
    args = parser.parse_args()
    if args.table:
        print(markdown_table(json.loads(RESULTS.read_text(encoding="utf-8"))))
        return
    unknown = [name for name in args.variants if name not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    args.work.mkdir(parents=True, exist_ok=True)
    results = json.loads(RESULTS.read_text(encoding="utf-8")) if RESULTS.is_file() else {}
    for name in args.variants or list(VARIANTS):
        for law in args.law or list(JUDGES):
            print(f"[variants] {law} / {name}: {VARIANTS[name]}", flush=True)
            try:
                result = run_variant(law, name, VARIANTS[name], args.work)
            except SystemExit as failure:  # e.g. batches a small corpus cannot fill: recorded, the rest still runs
                text = str(failure)
                # The stage's one-paragraph error, unwrapped (the output's last lines otherwise).
                message = " ".join((text.split("ERROR in stage", 1)[1].split("\n", 1)[1] if "ERROR in stage" in text
                                    else "\n".join(text.strip().splitlines()[-3:])).split())
                results.setdefault(law, {})[name] = {"changes": VARIANTS[name], "error": message}
                print(f"[variants] {law} / {name} failed: {message}", flush=True)
                RESULTS.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
                continue
            results.setdefault(law, {})[name] = result
            zh = result["golden_val"].get("zh", {})
            print(f"[variants] {law} / {name}: train {result['train_stage_seconds']}s, best step {result['best_step']}; "
                  f"golden val zh base {zh.get('base')} finetuned {zh.get('finetuned')} bm25 {zh.get('bm25')} "
                  f"fusion {zh.get('best_fusion')}; en finetuned {result['golden_val'].get('en', {}).get('finetuned')}",
                  flush=True)
            RESULTS.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
