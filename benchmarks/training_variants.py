"""Training variants as DVC experiments, judged on golden val (questions written by people) of two laws.

    python -m benchmarks.training_variants queue --dry-run                  # print every variant's command
    python -m benchmarks.training_variants queue default_recipe default_gist --law labor_contract_law
    dvc queue start -j 1                                                    # run them; `dvc queue status` to watch
    python -m benchmarks.training_variants collect                          # their table, read from DVC
    python -m benchmarks.training_variants history                          # the table of the earlier runs

Each variant is a named set of params (``VARIANTS``) queued once per judge law (the bundled Securities Law and
Labor Contract Law, each with its own golden set) as ``dvc exp run --queue --name <variant>-<law> -S
'sample.laws=["<law>"]' -S <key>=<value> ...``: the default pipeline with the knobs under study set explicitly,
so that a result does not depend on later changes of the defaults. DVC reruns what the changed params feed
(``questions`` for a ``questions.*`` knob, then ``train`` and ``evaluate``). A recipe choice must hold on both
laws. ``collect`` reads the experiments back from ``dvc exp show --json``: what the train stage records
(``metrics/train.json``: its training time, the step it kept and the golden val NDCG@10 of that step and of the
base model, on which it chose). The test sets are not part of this table: variants are compared on val.

The variants measured before they were DVC experiments (by this module's earlier version, which copied the
project per variant and also scored BM25 and the best fusion on golden val) are kept as measured in
benchmarks/results/training_variants_e5.json (``history``); the MiniLM-era results in
benchmarks/results/training_variants.json. The train stage picks its checkpoint (or the base model) on the same
golden val, so the fine-tuned scores lean optimistic; every variant gets the same advantage.
"""

from __future__ import annotations

import argparse
import json

from benchmarks.project import (
    JUDGES,
    LAW_NAMES,
    REPO_ROOT,
    Experiment,
    exp_run_command,
    queue_commands,
    show_experiments,
)

HISTORY = REPO_ROOT / "benchmarks/results/training_variants_e5.json"

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


def variant_command(name: str, law: str) -> list[str]:
    """One variant on one law: a named experiment (``<variant>-<law>``)."""
    return exp_run_command({"sample.laws": [LAW_NAMES[law]], **VARIANTS[name]}, name=f"{name}-{law}")


def experiment_variants(experiments: list[Experiment]) -> dict[str, dict[str, dict]]:
    """{law: {variant: figures}} of the experiments named ``<variant>-<law>``."""
    found: dict[str, dict[str, dict]] = {}
    for experiment in experiments:
        for law in JUDGES:
            variant = experiment.name.removesuffix(f"-{law}")
            if variant != experiment.name and variant in VARIANTS:
                train = experiment.metric("metrics/train.json")
                found.setdefault(law, {}).setdefault(variant, {
                    "experiment": experiment.name, "train_seconds": train.get("train_seconds"),
                    "steps": train.get("steps"), "best_step": train.get("best_step"),
                    "selected_on": train.get("selected_on"), "base_model_selected": train.get("base_model_selected"),
                    "val_ndcg@10_base": train.get("val_ndcg@10_base"), "val_ndcg@10": train.get("best_val_ndcg@10"),
                })
    return found


def experiments_table(found: dict[str, dict[str, dict]]) -> str:
    """Per variant and law: training time, the step kept, golden val NDCG@10 of the kept step against the base."""
    laws = [law for law in JUDGES if law in found]
    lines = ["| variant | " + " | ".join(f"{law}: train s | kept step | golden val NDCG@10 fine-tuned (base)"
                                          for law in laws) + " |",
             "| --- |" + " --- | --- | --- |" * len(laws)]
    for name in [name for name in VARIANTS if any(name in found[law] for law in laws)]:
        cells = [name]
        for law in laws:
            entry = found[law].get(name)
            if entry is None:
                cells += ["", "not run", ""]
                continue
            kept = "base model" if entry["base_model_selected"] else f"{entry['best_step']} of {entry['steps']}"
            if entry["selected_on"] != "golden val":
                cells += [f"{entry['train_seconds']:.0f}", f"{kept} ({entry['selected_on']})", "-"]
                continue
            cells += [f"{entry['train_seconds']:.0f}", kept,
                      f"{entry['val_ndcg@10']:.3f} ({entry['val_ndcg@10_base']:.3f})"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def history_table(results: dict) -> str:
    """The earlier runs (golden val, Chinese, per law): base, fine-tuned and best fusion (hit@5 / MRR@10)."""
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
    parser = argparse.ArgumentParser(prog="python -m benchmarks.training_variants", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("queue", "collect", "history"))
    parser.add_argument("variants", nargs="*", help=f"queue: default all of {', '.join(VARIANTS)}")
    parser.add_argument("--law", choices=sorted(JUDGES), action="append", help="queue: default both")
    parser.add_argument("--dry-run", action="store_true", help="queue: print the commands, queue nothing")
    parser.add_argument("--all-commits", action="store_true", help="collect: experiments of every commit")
    args = parser.parse_intermixed_args()  # variants may follow an option
    if args.action == "history":
        print(history_table(json.loads(HISTORY.read_text(encoding="utf-8"))))
        return
    if args.action == "collect":
        print(experiments_table(experiment_variants(show_experiments(REPO_ROOT, args.all_commits))))
        return
    unknown = [name for name in args.variants if name not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    queue_commands([variant_command(name, law) for name in args.variants or list(VARIANTS)
                    for law in args.law or list(JUDGES)], REPO_ROOT, args.dry_run)


if __name__ == "__main__":
    main()
