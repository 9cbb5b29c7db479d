"""Benchmark: what a run without a golden set chooses, scored by the golden set it did not see.

    python -m benchmarks.selection_ablation                      # both laws (about 15 minutes on 2 cores)
    python -m benchmarks.selection_ablation --law labor_contract_law
    python -m benchmarks.selection_ablation --table              # print the docs' table from the results

For each law with a golden set (the Securities Law, the Labor Contract Law), three runs of the real stages on
the law's own documents, chunks, questions and base model:

- ``visible``: the pipeline as it is, the law's golden set in ``evaluate.golden_sets``: its val split selects the
  training step and the fusion, its test split is reported.
- ``hidden``: ``evaluate.golden_sets: []``, as for a user with no golden set: the train stage keeps its final step
  and the hybrid is the untuned fusion (``fusion.UNTUNED``); its report says what it says without a judge
  (``metrics/eval.json``'s ``verdict``: which retriever it calls best, and whether by measurement or by prior).
- ``hidden, scored``: the hidden run's model and fusion, evaluated again with the golden set listed and that fusion
  fixed in params.yaml (``evaluate.fusion``, ``evaluate.hybrid_dense_weight``), so the golden test scores what the
  hidden run chose, and nothing is chosen on it.

Also scored, on the hidden run's model: the fusion that tuning on the synthetic val split would choose (the rule
before this benchmark; the train stage's synthetic val curve says which step it would have kept).

Reported per law on golden test (Chinese, every question; English too): hit@5 of base, fine-tuned, BM25 and
hybrid with 95% paired-bootstrap intervals of hybrid - fine-tuned and hybrid - BM25 per question, the hybrid's
distance from the better of its two parts in questions (the target: not below it by more than one question), and
whether the hidden run's "best retriever" agrees with golden test's. Results:
benchmarks/results/selection_ablation.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.project import JUDGES, PREPARED, REPO_ROOT, copy_prepared, prepared_project, run_stage_module, set_params, write_result

# benchmarks.train_throughput and stages.lib.training.live_curves import torch and transformers (4 s): imported where
# a run needs them, so that rendering the docs' table (benchmarks.render_docs, markdown_table) stays quick.

RESULTS = Path("benchmarks/results/selection_ablation.json")
RETRIEVERS = ("base", "finetuned", "bm25", "hybrid")
JUDGED = ("golden_test_zh_incl_trained_passages", "golden_test_en_incl_trained_passages")


def _run_stages(project: Path, stages: tuple[str, ...]) -> float:
    started = time.perf_counter()
    for stage in stages:
        run_stage_module(stage, project)
    return round(time.perf_counter() - started, 1)


def _read(project: Path, name: str) -> dict:
    return json.loads((project / name).read_text(encoding="utf-8"))


def per_question_hits(project: Path, set_name: str) -> dict[str, dict[str, float]]:
    """Question id -> retriever -> hit@5 (0/1), from the evaluate stage's per-query ranks."""
    rows = [json.loads(line) for line in (project / "data/eval/per_query.jsonl").read_text(encoding="utf-8").splitlines()]
    return {row["id"]: {name: float(isinstance(row.get(f"{name}_rank"), int) and row[f"{name}_rank"] <= 5)
                        for name in RETRIEVERS}
            for row in rows if row["set"] == set_name}


def paired_interval(a: np.ndarray, b: np.ndarray) -> list[float]:
    """Mean of a - b with its 95% paired-bootstrap interval (the evaluate stage's resampling)."""
    from stages.lib.retrieval.intervals import bootstrap_indices, percentile_interval

    difference = a - b
    low, high = percentile_interval(difference, bootstrap_indices(len(difference)))
    return [round(float(difference.mean()), 4), round(low, 4), round(high, 4)]


def score_set(hits: dict[str, dict[str, float]]) -> dict:
    ids = sorted(hits)
    column = {name: np.array([hits[q][name] for q in ids]) for name in RETRIEVERS}
    better_part = max(("finetuned", "bm25"), key=lambda name: column[name].sum())
    best = max(RETRIEVERS, key=lambda name: (column[name].sum(), name == "hybrid"))
    return {
        "questions": len(ids),
        **{f"{name}_hit@5": round(float(column[name].mean()), 4) for name in RETRIEVERS},
        "hybrid_minus_finetuned": paired_interval(column["hybrid"], column["finetuned"]),
        "hybrid_minus_bm25": paired_interval(column["hybrid"], column["bm25"]),
        "finetuned_minus_base": paired_interval(column["finetuned"], column["base"]),
        "better_part": better_part,
        # Questions the hybrid answers in its top 5 minus those the better of its two parts does (target: >= -1).
        "hybrid_vs_better_part_questions": int(column["hybrid"].sum() - column[better_part].sum()),
        "best": best,
    }


def synthetic_val_fusion(project: Path) -> tuple[dict, dict[str, float]]:
    """The fusion that tuning on the synthetic val split picks for this run's model (the rule before), and its
    hybrid's hit@5 per golden test question (Chinese)."""
    import os

    cwd = os.getcwd()
    os.chdir(project)  # the stages' paths are relative to the project
    try:
        from stages.lib.common.params import load_params
        from stages.lib.documents.chunk_file import load_chunks
        from stages.lib.models.hardware import resolve_hardware
        from stages.lib.models.prompts import resolve_prompts
        from stages.lib.questions.qa_dataset import QADataset
        from stages.lib.retrieval.dense_encoding import LazySentenceEncoder
        from stages.lib.retrieval.fusion import candidates, choose_fusion, fuse
        from stages.lib.retrieval.question_sets import golden_parts, merge
        from stages.lib.retrieval.rankers import BM25Index, dense_rank, retrieval_metrics

        params = load_params(project / "params.yaml")  # by its own path: load_params caches per path
        hardware = resolve_hardware(params.compute.device, params.compute.precision)
        prompts = resolve_prompts(params.model.query_prompt, params.model.document_prompt, Path("models/base"))
        chunks = load_chunks()
        corpus = {c.id: c.text for c in chunks}
        val = QADataset.load(Path("data/questions/val.json"))
        test = merge(golden_parts(chunks, params.evaluate.golden_sets).test[JUDGED[0]])
        encoder = LazySentenceEncoder(Path("models/trained"), hardware.device, params.model.max_seq_length, 8,
                                      hardware.precision)
        corpus_vectors = encoder(list(corpus.values()), prompts.document)
        lexical = BM25Index(corpus)

        def ranked(dataset: QADataset):
            dense = dense_rank(list(dataset.queries), encoder(list(dataset.queries.values()), prompts.query), list(corpus),
                               corpus_vectors, 100)
            return dense, lexical.rank(dataset.queries, 100)

        choice = choose_fusion(*ranked(val), val.relevant_docs, candidates("auto", "auto"), params.evaluate.rrf_k, 100)
        dense, bm25 = ranked(test)
        hybrid = fuse(dense, bm25, choice.fusion, params.evaluate.rrf_k, 100)
        hits = {qid: float(bool(set(hybrid[qid][:5]) & set(test.relevant_docs[qid]))) for qid in test.queries}
        return {"fusion": choice.fusion.describe(), "method": choice.fusion.method, "weight": choice.fusion.weight,
                "golden_test_zh_hybrid_hit@5": retrieval_metrics(hybrid, test.relevant_docs, [5])["hit@5"],
                "synthetic_val_questions": len(val.queries)}, hits
    finally:
        os.chdir(cwd)


def run_law(law: str, root: Path) -> dict:
    prepared = prepared_project(law, root)
    golden = JUDGES[law]
    out: dict = {"law": golden["sample.laws"][0]}

    visible = root / f"{law}-visible"
    shutil.rmtree(visible, ignore_errors=True)
    copy_prepared(prepared, visible, PREPARED)
    set_params(visible, golden)
    seconds = _run_stages(visible, ("train", "evaluate"))
    out["visible"] = {"seconds": seconds, **_choices(visible), **_scores(visible)}
    print(f"[ablation] {law} visible: {out['visible']['choice']}", flush=True)

    hidden = root / f"{law}-hidden"
    shutil.rmtree(hidden, ignore_errors=True)
    copy_prepared(prepared, hidden, PREPARED)
    set_params(hidden, {**golden, "evaluate.golden_sets": []})
    seconds = _run_stages(hidden, ("train", "evaluate"))
    verdict = _read(hidden, "metrics/eval.json")["verdict"]
    # step,ndcg@10 from DVCLive's series
    from stages.lib.training.live_curves import read_val_curve
    val_curve = [f"{step},{score}" for step, score in read_val_curve(hidden / "metrics/train_live").items()]
    out["hidden"] = {"seconds": seconds, **_choices(hidden), "report_best": verdict["best"],
                     "report_best_measured": verdict["best_measured"], "verdict": verdict,
                     "synthetic_val_curve": val_curve}
    # The same model and fusion, scored on the golden set they did not see (the fusion fixed, nothing chosen).
    fusion = _read(hidden, "metrics/eval.json")
    set_params(hidden, {"evaluate.golden_sets": golden["evaluate.golden_sets"], "evaluate.fusion": fusion["hybrid_fusion"],
                         "evaluate.hybrid_dense_weight": fusion["hybrid_dense_weight"]})
    _run_stages(hidden, ("evaluate",))
    out["hidden"].update(_scores(hidden))
    judged = out["hidden"][JUDGED[0]]
    out["hidden"]["report_agrees_with_golden_test"] = int(verdict["best"] == judged["best"])
    out["synthetic_val"] = _synthetic_val_rule(hidden, out, golden_test_hits=per_question_hits(hidden, JUDGED[0]))
    print(f"[ablation] {law} hidden: {out['hidden']['choice']}; hybrid vs the better part "
          f"{judged['hybrid_vs_better_part_questions']:+d} questions; report says {verdict['best']}, golden test "
          f"{judged['best']}", flush=True)
    return out


def _synthetic_val_rule(hidden: Path, law: dict, golden_test_hits: dict[str, dict[str, float]]) -> dict:
    """What the rule before (choosing on the synthetic val split) would have kept: the step its curve ranks first
    (ties to the earlier, as the train stage's keeper did), and the fusion tuned on it, scored on golden test with
    the hidden run's model (the fine-tuned model at that step is known only when it is the base model, the visible
    run's step or the final one)."""
    from stages.lib.training.live_curves import read_val_curve
    curve = list(read_val_curve(hidden / "metrics/train_live").items())
    step = max(curve, key=lambda entry: (entry[1], -entry[0]))[0]
    fusion, hybrid_hits = synthetic_val_fusion(hidden)
    ids = sorted(golden_test_hits)
    column = {name: np.array([golden_test_hits[q][name] for q in ids]) for name in ("finetuned", "bm25")}
    hybrid = np.array([hybrid_hits[q] for q in ids])
    better = max(column, key=lambda name: column[name].sum())
    known = {0: ("base", law["hidden"]), law["visible"]["step"]: ("finetuned", law["visible"]),
             law["hidden"]["step"]: ("finetuned", law["hidden"])}
    finetuned = (known[step][1][JUDGED[0]][f"{known[step][0]}_hit@5"] if step in known else None)
    return {"step": step, "synthetic_val_curve_ndcg@10": dict(curve), "finetuned_at_that_step_hit@5": finetuned,
            "fusion": fusion, "hybrid_hit@5": round(float(hybrid.mean()), 4),
            "hybrid_minus_finetuned": paired_interval(hybrid, column["finetuned"]),
            "hybrid_minus_bm25": paired_interval(hybrid, column["bm25"]),
            "hybrid_vs_better_part_questions": int(hybrid.sum() - column[better].sum())}


def _choices(project: Path) -> dict:
    train, evaluation = _read(project, "metrics/train.json"), _read(project, "metrics/eval.json")
    return {"step": train["best_step"], "steps": train["steps"], "selected_on": train["selected_on"],
            "fusion": evaluation["hybrid_fusion"], "fusion_weight": evaluation["hybrid_dense_weight"],
            "choice": f"step {train['best_step']} of {train['steps']} ({train['selected_on']}), "
                      f"{evaluation['hybrid_fusion']} {evaluation['hybrid_dense_weight']:g}"}


def _scores(project: Path) -> dict:
    return {name: score_set(per_question_hits(project, name)) for name in JUDGED}


def markdown_table(results: dict) -> str:
    lines = ["| law | golden set | kept step | hybrid | base | fine-tuned | BM25 | hybrid | hybrid − fine-tuned | "
             "hybrid − BM25 | hybrid vs better part | report's best / golden test's |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]

    def interval(values: list[float]) -> str:
        return f"{values[0]:+.3f} [{values[1]:+.3f}, {values[2]:+.3f}]"

    for entry in results["laws"].values():
        for setting, title in (("visible", "chooses"), ("hidden", "hidden")):
            run = entry[setting]
            s = run[JUDGED[0]]
            said = (f"{run['report_best']} (prior) / {s['best']}" if setting == "hidden" and not run["report_best_measured"]
                    else f"{run.get('report_best', s['best'])} / {s['best']}")
            fusion = f"{run['fusion']} {run['fusion_weight']:g}"
            lines.append(f"| {entry['law']} | {title} | {run['step']} of {run['steps']} | {fusion} | {s['base_hit@5']:.3f} | "
                         f"{s['finetuned_hit@5']:.3f} | {s['bm25_hit@5']:.3f} | {s['hybrid_hit@5']:.3f} | "
                         f"{interval(s['hybrid_minus_finetuned'])} | {interval(s['hybrid_minus_bm25'])} | "
                         f"{s['hybrid_vs_better_part_questions']:+d} of {s['questions']} | {said} |")
        if "synthetic_val" in entry:
            rule, hidden = entry["synthetic_val"], entry["hidden"][JUDGED[0]]
            finetuned = rule["finetuned_at_that_step_hit@5"]
            step = f"{rule['step']} of {entry['hidden']['steps']}" + (" (the base model)" if rule["step"] == 0 else "")
            lines.append(f"| {entry['law']} | hidden, tuned on synthetic val (the rule before) | {step} | "
                         f"{rule['fusion']['method']} {rule['fusion']['weight']:g} | {hidden['base_hit@5']:.3f} | "
                         f"{'–' if finetuned is None else f'{finetuned:.3f}'} | {hidden['bm25_hit@5']:.3f} | "
                         f"{rule['hybrid_hit@5']:.3f}¹ | {interval(rule['hybrid_minus_finetuned'])}¹ | "
                         f"{interval(rule['hybrid_minus_bm25'])}¹ | {rule['hybrid_vs_better_part_questions']:+d} of "
                         f"{hidden['questions']}¹ | – |")
    lines.append("")
    lines.append("¹ that fusion applied to the final step's model (the hidden run's), compared with that model and BM25.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--law", choices=sorted(JUDGES), action="append", help="default: both")
    parser.add_argument("--root", type=Path, help="work folder (default: a temporary one)")
    parser.add_argument("--json", type=Path, default=RESULTS)
    parser.add_argument("--table", action="store_true", help="print the docs' table from the results file")
    args = parser.parse_args()
    path = args.json if args.json.is_absolute() else REPO_ROOT / args.json
    if args.table:
        print(markdown_table(json.loads(path.read_text(encoding="utf-8"))))
        return
    from benchmarks.train_throughput import cpu_name
    root = args.root or Path(tempfile.mkdtemp(prefix="selection-ablation-"))
    results = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {"laws": {}}
    for law in args.law or sorted(JUDGES, reverse=True):
        results["laws"][law] = {**run_law(law, root), "command": f"python -m benchmarks.selection_ablation --law {law}",
                                "cpu": cpu_name()}
        results.update(cpu=cpu_name(), machine=platform.machine(), command="python -m benchmarks.selection_ablation")
        write_result(args.json, results)
    print(markdown_table(results))


if __name__ == "__main__":
    main()
