"""Every figure a run produced, rendered into README.md and docs/*.md from the committed result files.

    python -m benchmarks.render_docs            # rewrite every rendered block in place
    python -m benchmarks.render_docs --check    # change nothing; exit 1 listing the blocks that are out of date

A rendered block is the text between ``<!-- render:NAME -->`` and ``<!-- /render:NAME -->``. When the start
marker ends its line the block is whole lines (a table, a list); otherwise it is inline, inside a sentence. Each
NAME is one small function below that reads only files committed to git (metrics/*.json,
benchmarks/results/*.json, params.yaml, the params schema), so a fresh clone renders the same text, and a number
in the documents cannot drift from the run that produced it. ``mkdocs build`` runs the check too
(benchmarks/mkdocs_hook.py), and tests/benchmarks/test_render_docs.py fails on a stale block.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import sys
import typing
from collections.abc import Callable
from pathlib import Path

from ruamel.yaml import YAML

REPO_ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"<!-- render:(?P<name>[a-z0-9-]+) -->(?P<body>.*?)<!-- /render:(?P=name) -->", re.S)
RETRIEVERS = ("base", "finetuned", "bm25", "hybrid")
NAMES = {"base": "base", "finetuned": "fine-tuned", "bm25": "BM25", "hybrid": "hybrid"}
JUDGE_ZH, JUDGE_EN = "golden_test_zh_incl_trained_passages", "golden_test_en_incl_trained_passages"
UNSEEN_ZH = "golden_test_zh_unseen_passages"


def documents(root: Path) -> list[Path]:
    """The files whose blocks are rendered: the README and every page of the docs site."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


class Sources:
    """Read-only access to the committed files a block may quote, each parsed once."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @functools.cache  # noqa: B019  (one Sources per render: the cache dies with it)
    def json(self, relative: str) -> typing.Any:
        return json.loads((self.root / relative).read_text(encoding="utf-8"))

    def metrics(self, name: str) -> dict:
        return self.json(f"metrics/{name}.json")

    def result(self, name: str) -> typing.Any:
        return self.json(f"benchmarks/results/{name}.json")

    @functools.cache  # noqa: B019
    def params_text(self) -> str:
        return (self.root / "params.yaml").read_text(encoding="utf-8")

    def params(self) -> dict:
        return YAML(typ="safe", pure=True).load(self.params_text())

    @functools.cache  # noqa: B019
    def lock(self) -> dict:
        return YAML(typ="safe", pure=True).load((self.root / "dvc.lock").read_text(encoding="utf-8"))

    def output_bytes(self, stage: str, path: str) -> int:
        """The size ``dvc.lock`` records for one output of one stage."""
        return next(out["size"] for out in self.lock()["stages"][stage]["outs"] if out["path"] == path)


BLOCKS: dict[str, Callable[[Sources], str]] = {}


def block(name: str) -> Callable[[Callable[[Sources], str]], Callable[[Sources], str]]:
    def register(function: Callable[[Sources], str]) -> Callable[[Sources], str]:
        BLOCKS[name] = function
        return function
    return register


# ---- formatting -------------------------------------------------------------------------------------------

def f3(value: float) -> str:
    return f"{value:.3f}"


def interval(row: dict, metric: str) -> str:
    return f"{row[metric]:.3f} [{row[metric + '_ci_low']:.3f}, {row[metric + '_ci_high']:.3f}]"


def difference(row: dict, key: str) -> str:
    return f"{row[key]:+.3f} [{row[key + '_ci_low']:+.3f}, {row[key + '_ci_high']:+.3f}]"


def seconds(value: float) -> str:
    return f"{value:,.0f} s"


def minutes(value: float) -> str:
    whole = round(value)
    return f"{whole // 60} min {whole % 60:02d} s"


def gib(mib: float) -> str:
    return f"{mib / 1024:.1f} GiB"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def count(share: float, total: int) -> int:
    return round(share * total)


# ---- the headline and the evaluation ----------------------------------------------------------------------

@block("headline")
def headline(sources: Sources) -> str:
    """README: the committed run on the questions people wrote, with the synthetic split beside it."""
    evaluation = sources.metrics("eval")
    zh, en = evaluation[JUDGE_ZH], evaluation[JUDGE_EN]
    rows = [[NAMES[name], interval(zh[name], "hit@5"), interval(zh[name], "mrr@10"), f3(en[name]["hit@5"]),
             f3(evaluation[name]["hit@5"])] for name in RETRIEVERS]
    return table(["retriever", f"golden test, {zh['queries']} Chinese questions: hit@5 [95% CI]", "MRR@10 [95% CI]",
                  f"{en['queries']} English questions: hit@5", f"synthetic test ({evaluation['test_queries']}): hit@5"],
                 rows)


@block("headline-caveats")
def headline_caveats(sources: Sources) -> str:
    evaluation = sources.metrics("eval")
    zh = evaluation[JUDGE_ZH]
    tuned, questions = zh["finetuned"], zh["queries"]
    found = {name: count(zh[name]["hit@5"], questions) for name in RETRIEVERS}
    gap = found["hybrid"] - found["finetuned"]
    hybrid = (f"the hybrid finds {abs(gap)} question{'s' if abs(gap) != 1 else ''} "
              f"{'fewer' if gap < 0 else 'more'} than the fine-tuned model alone in its top 5 "
              f"({found['hybrid']} against {found['finetuned']} of {questions})" if gap else
              f"the hybrid finds as many as the fine-tuned model alone ({found['hybrid']} of {questions})")
    synthetic = evaluation
    return "\n".join([
        f"* Judged on golden test: questions people wrote about the law, never used for training or selection. "
        f"Fine-tuned − base: {difference(tuned, 'hit@5_diff_vs_base')} hit@5; fine-tuned − BM25: "
        f"{difference(tuned, 'hit@5_diff_vs_bm25')}; {hybrid}. Brackets are 95% paired-bootstrap intervals.",
        f"* On the synthetic test split (template questions that reuse the law's own words) BM25 wins: "
        f"{f3(synthetic['bm25']['hit@5'])} hit@5 against the fine-tuned model's {f3(synthetic['finetuned']['hit@5'])}. "
        "That split measures the training signal, not what users ask.",
        f"* English questions about the Chinese law: BM25 finds {f3(evaluation[JUDGE_EN]['bm25']['hit@5'])} "
        "(no shared words); the dense models read both languages.",
        *_transfer_caveat(sources),
        f"* One run of one law ({evaluation['corpus_size']} chunks), on the CPU it was committed from; "
        "[Evaluation and results](docs/evaluation.md) has every set, the second law and what the intervals mean.",
    ])


def _transfer_caveat(sources: Sources) -> list[str]:
    """What the fine-tune learned beyond its own documents: the first other judge law's golden test, over that law."""
    sets = list(_transfer_sets(sources))
    first = [(label, entry) for law, label, entry in sets if law == sets[0][0]] if sets else []
    parts = [f"{label} {f3(entry['base']['hit@5'])} → {f3(entry['finetuned']['hit@5'])}, "
             f"{difference(entry['finetuned'], 'hit@5_diff_vs_base')}" for label, entry in first]
    return [f"* A law it was not trained on ({sets[0][0].replace('_', ' ').title()}, its own golden test over its own "
            f"chunks), base → fine-tuned hit@5: {'; '.join(parts)}."] if parts else []


def _transfer_sets(sources: Sources) -> typing.Iterator[tuple[str, str, dict]]:
    """(law, language, entry) for each golden test set of ``metrics/transfer.json``, Chinese before English."""
    for law, sets in sources.metrics("transfer").items():
        for name, label in (("test_zh", "Chinese"), ("test_en", "English")):
            if name in sets:
                yield law, label, sets[name]


@block("verdict")
def verdict(sources: Sources) -> str:
    """The verdict the evaluate stage prints, the UI's report and the model card open with, for the committed run."""
    from stages.lib.retrieval.verdict import verdict_lines
    return "```text\n" + "\n".join(verdict_lines(sources.metrics("eval")["verdict"])) + "\n```"


@block("golden-test-zh")
def golden_test_zh(sources: Sources) -> str:
    zh = sources.metrics("eval")[JUDGE_ZH]
    rows = []
    for name in RETRIEVERS:
        row = zh[name]
        against = ([difference(row, "hit@5_diff_vs_bm25"), difference(row, "mrr@10_diff_vs_bm25")]
                   if name != "bm25" else ["", ""])
        rows.append([NAMES[name], interval(row, "hit@5"), interval(row, "mrr@10"), *against])
    return table(["retriever", "hit@5 [95% CI]", "MRR@10 [95% CI]", "hit@5 − BM25 [95% CI]", "MRR@10 − BM25 [95% CI]"], rows)


@block("golden-findings")
def golden_findings(sources: Sources) -> str:
    evaluation, train = sources.metrics("eval"), sources.metrics("train")
    zh = evaluation[JUDGE_ZH]
    tuned, questions = zh["finetuned"], zh["queries"]
    found = {name: count(zh[name]["hit@5"], questions) for name in RETRIEVERS}
    kept = ("the base model itself (fine-tuning did not beat it)" if train["base_model_selected"]
            else f"step {train['best_step']} of {train['steps']}")
    weight = evaluation["hybrid_dense_weight"]
    fusion = (f"a convex combination, {weight:g} × the fine-tuned model's normalised score + {1 - weight:.2g} × BM25's"
              if evaluation["hybrid_fusion"] == "convex" else f"reciprocal-rank fusion, fine-tuned weight {weight:g}")
    return "\n".join([
        f"* **Fine-tuned − base:** {difference(tuned, 'hit@5_diff_vs_base')} hit@5 and "
        f"{difference(tuned, 'mrr@10_diff_vs_base')} MRR@10. Training kept {kept}, chosen on golden val "
        f"({train['val_queries']} questions): NDCG@10 {f3(train['best_val_ndcg@10'])} against the base model's "
        f"{f3(train['val_ndcg@10_base'])} there.",
        f"* **Fine-tuned − BM25:** {difference(tuned, 'hit@5_diff_vs_bm25')} hit@5 and "
        f"{difference(tuned, 'mrr@10_diff_vs_bm25')} MRR@10.",
        f"* **Hybrid:** {difference(zh['hybrid'], 'hit@5_diff_vs_bm25')} hit@5 over BM25; in its top 5 it finds "
        f"{found['hybrid']} of {questions} questions against the fine-tuned model's {found['finetuned']}, and its "
        f"MRR@10 is {f3(zh['hybrid']['mrr@10'])} against {f3(tuned['mrr@10'])}. The fusion chosen on golden val: "
        f"{fusion} (`hybrid_fusion`, `hybrid_dense_weight`).",
        f"* **Base model against BM25:** {f3(zh['base']['hit@5'])} and {f3(zh['bm25']['hit@5'])} hit@5: "
        "a multilingual base reads the law about as well as BM25 before any fine-tuning.",
    ])


@block("unseen-passages")
def unseen_passages(sources: Sources) -> str:
    unseen = sources.metrics("eval")[UNSEEN_ZH]
    tuned = unseen["finetuned"]
    rows = [[NAMES[name], f3(unseen[name]["hit@5"]), f3(unseen[name]["mrr@10"])] for name in RETRIEVERS]
    return (table([f"retriever ({unseen['queries']} questions)", "hit@5", "MRR@10"], rows) + "\n\n"
            f"Fine-tuned − base on these: {difference(tuned, 'hit@5_diff_vs_base')} hit@5, "
            f"{difference(tuned, 'mrr@10_diff_vs_base')} MRR@10; fine-tuned − BM25 "
            f"{difference(tuned, 'hit@5_diff_vs_bm25')} hit@5.")


@block("english")
def english(sources: Sources) -> str:
    en = sources.metrics("eval")[JUDGE_EN]
    rows = [[NAMES[name], interval(en[name], "hit@5"), interval(en[name], "mrr@10")] for name in RETRIEVERS]
    return (table([f"retriever ({en['queries']} English questions)", "hit@5 [95% CI]", "MRR@10 [95% CI]"], rows) + "\n\n"
            f"Fine-tuned − base: {difference(en['finetuned'], 'hit@5_diff_vs_base')} hit@5.")


@block("synthetic-test")
def synthetic_test(sources: Sources) -> str:
    evaluation = sources.metrics("eval")
    metrics = ("hit@1", "hit@3", "hit@5", "hit@10", "mrr@10", "ndcg@10")
    rows = [[NAMES[name], *(f3(evaluation[name][m]) for m in metrics)] for name in RETRIEVERS]
    return table([f"retriever ({evaluation['test_queries']} questions)", "hit@1", "hit@3", "hit@5", "hit@10", "MRR@10", "NDCG@10"],
                 rows)


@block("llamaindex-check")
def llamaindex_check(sources: Sources) -> str:
    evaluation = sources.metrics("eval")
    return (f"hit@5 {f3(evaluation['llamaindex_finetuned_hit@5'])} through llama-index against "
            f"{f3(evaluation['ours_on_llamaindex_sample_hit@5'])} by our evaluator, on "
            f"{evaluation['llamaindex_sample_queries']} queries over {evaluation['llamaindex_sample_corpus']} chunks")


@block("word-overlap")
def word_overlap(sources: Sources) -> str:
    verdict = sources.metrics("eval")["verdict"]
    return (f"the synthetic test questions share {verdict['synthetic_word_overlap']:.0%} of their words with their "
            f"passages, the golden test questions {verdict['judge_word_overlap']:.0%}")


@block("transfer")
def transfer(sources: Sources) -> str:
    rows = [[law.replace("_", " "), label, str(entry["queries"]), f3(entry["base"]["hit@5"]),
             f3(entry["finetuned"]["hit@5"]), difference(entry["finetuned"], "hit@5_diff_vs_base")]
            for law, label, entry in _transfer_sets(sources)]
    return table(["other law's golden test", "language", "questions", "base hit@5", "fine-tuned hit@5",
                  "fine-tuned − base [95% CI]"], rows)


@block("base-models")
def base_models(sources: Sources) -> str:
    from benchmarks.base_models import readme_table
    return readme_table(sources.result("base_models"))


@block("selection-ablation")
def selection_ablation(sources: Sources) -> str:
    from benchmarks.selection_ablation import markdown_table
    return markdown_table(sources.result("selection_ablation"))


@block("lexical-overlap")
def lexical_overlap(sources: Sources) -> str:
    laws = sources.result("lexical_overlap")["laws"]
    labels = {"synthetic_train": "offline generator, train", "synthetic_val": "offline generator, val",
              "synthetic_test": "offline generator, test", "golden_zh_colloquial": "people, colloquial Chinese",
              "golden_zh_professional": "people, professional Chinese", "golden_zh_keywords": "people, keyword queries",
              "golden_zh_test": "people, Chinese golden test"}
    rows = []
    for key, label in labels.items():
        cells = [f"{laws[law][key]['word_overlap']:.2f} ({laws[law][key]['questions']})" if key in laws[law] else "–"
                 for law in laws]
        rows.append([label, *cells])
    return table(["questions", *(f"{law.replace('_', ' ')}: overlap (questions)" for law in laws)], rows)


# ---- experiments ------------------------------------------------------------------------------------------

@block("learning-curve")
def learning_curve(sources: Sources) -> str:
    from benchmarks.learning_curve import markdown_tables
    return markdown_tables(sources.result("learning_curve")).rstrip("\n")


@block("training-variants")
def training_variants(sources: Sources) -> str:
    from benchmarks.training_variants import history_table
    return history_table(sources.result("training_variants_e5"))


@block("training-variant-settings")
def training_variant_settings(sources: Sources) -> str:
    """What each variant of the training-variants table set, on top of the params of its day."""
    results = sources.result("training_variants_e5")
    settings: dict[str, dict] = {}
    for law in results.values():
        for name, entry in law.items():
            settings.setdefault(name, entry.get("changes", {}))
    rows = [[f"`{name}`", ", ".join(f"`{key}={json.dumps(value, ensure_ascii=False)}`" for key, value in changes.items())]
            for name, changes in settings.items()]
    return table(["variant", "settings"], rows)


@block("seed-recipe")
def seed_recipe(sources: Sources) -> str:
    result = sources.result("seed_recipe_eval")
    golden = result.get(JUDGE_ZH, {})
    rows = []
    for name in ("base", "seed_recipe", "finetuned", "bm25", "hybrid"):
        cells = [name.replace("_", " "), f3(result[name]["hit@5"]), f3(result[name]["mrr@10"])]
        cells += [interval(golden[name], "hit@5"), f3(golden[name]["mrr@10"])] if name in golden else ["–", "–"]
        rows.append(cells)
    return table(["retriever (MiniLM base, an earlier default)", "synthetic test hit@5", "synthetic test MRR@10",
                  "golden test zh hit@5 [95% CI]", "golden test zh MRR@10"], rows)


@block("training-step-quality")
def training_step_quality(sources: Sources) -> str:
    result = sources.result("training_step_quality")
    before, after = result["runs"]["before"], result["runs"]["after"]
    zh = result["sets"][JUDGE_ZH]["finetuned"]
    return (f"train stage {before['train_seconds']:.1f} s before, {after['train_seconds']:.1f} s after; fine-tuned "
            f"golden test zh hit@5 {f3(zh['hit@5_before'])} before, {f3(zh['hit@5_after'])} after "
            f"(difference {difference(zh, 'hit@5_diff')})")


# ---- hardware, scale, crashes -----------------------------------------------------------------------------

def _repro(sources: Sources, run: str) -> dict:
    return sources.result("default_repro")[run]


@block("repro-time")
def repro_time(sources: Sources) -> str:
    """The fresh-clone default run on the fastest measured 2-core CPU and the slowest."""
    fast, slow = _repro(sources, "intel_amx"), _repro(sources, "after")
    return (f"{minutes(fast['wall_seconds'])} on a 2-core Intel Xeon with AMX (bf16), {minutes(slow['wall_seconds'])} "
            f"on a 2-core AMD EPYC with AVX2 only (fp32, older code)")


@block("model-size")
def model_size(sources: Sources) -> str:
    """The base model folder as the committed run wrote it (``dvc.lock``); the trained and shipped ones are its size."""
    return f"{sources.output_bytes('base_model', 'models/base') / 1e6:,.0f} MB"


@block("peak-memory")
def peak_memory(sources: Sources) -> str:
    """The largest process of any measured run: training, whatever the corpus."""
    peaks = [run["stages"]["train"]["peak_mib"] for name in ("scale_all_laws", "scale_all_laws_bf16",
                                                              "scale_all_laws_intel_amx") for run in sources.result(name)]
    repro = [run["largest_process_rss_mib"] for run in sources.result("default_repro").values()
             if isinstance(run, dict) and "largest_process_rss_mib" in run]
    return f"{gib(min(repro + peaks))}–{gib(max(repro + peaks))}"


@block("cpu-speeds")
def cpu_speeds(sources: Sources) -> str:
    machines = [("Intel Xeon with AMX (today's code)", "intel_amx", "scale_all_laws_intel_amx", "resume_cost_intel_amx"),
                ("AMD EPYC, `avx512_bf16` (GIST, before the faster training step)", "native_bf16_gist",
                 "scale_all_laws_bf16", None),
                ("AMD EPYC, AVX2 only (older code: the default run with the MNRL loss)", "after", "scale_all_laws",
                 "resume_cost")]
    rows = []
    for cpu, repro_run, scale_file, resume_file in machines:
        repro = _repro(sources, repro_run)
        scale = sources.result(scale_file)[0]
        evaluate = scale["stages"]["evaluate"]
        resume = (f"{sources.result(resume_file)['rerun_share_of_full']:.2f}x" if resume_file else "not measured")
        rows.append([cpu, scale["precision"], f"{seconds(repro['wall_seconds'])} (`default_repro.json`: `{repro_run}`)",
                     f"{seconds(evaluate['seconds'])}, {gib(evaluate['peak_mib'])} (`{scale_file}.json`)", resume])
    return table(["CPU (2 cores)", "`auto` precision", "default run, fresh clone", "all laws: `evaluate`, peak memory",
                  "kill -9 at 60% of training: rerun / full"], rows)


@block("repro-stages")
def repro_stages(sources: Sources) -> str:
    runs = [("intel_amx", "Intel Xeon, AMX, bf16"), ("native_bf16_gist", "AMD EPYC, avx512_bf16, bf16"),
            ("after", "AMD EPYC, AVX2, fp32 (MNRL loss)")]
    stages = ("sample", "corpus", "questions", "base_model", "train", "evaluate", "model_card")
    rows = [[f"`{stage}`", *(f"{_repro(sources, run)['stage_seconds'].get(stage, 0):.1f}" for run, _ in runs)]
            for stage in stages]
    rows.append(["whole `dvc repro`", *(f"{_repro(sources, run)['wall_seconds']:.1f}" for run, _ in runs)])
    return table(["stage, seconds", *(label for _, label in runs)], rows)


@block("scale-all-laws")
def scale_all_laws(sources: Sources) -> str:
    rows = []
    for name in ("scale_all_laws_intel_amx", "scale_all_laws_bf16", "scale_all_laws"):
        run = sources.result(name)[0]
        stages = run["stages"]
        early = sum(stages[s]["seconds"] for s in ("sample", "corpus", "questions"))
        rows.append([f"{run['cpu']} ({run['precision']})", f"{run['chunks']:,}", seconds(early),
                     f"{seconds(stages['train']['seconds'])}, {gib(stages['train']['peak_mib'])}",
                     f"{seconds(stages['evaluate']['seconds'])}, {gib(stages['evaluate']['peak_mib'])}",
                     run.get("evaluate_phases", "").split(";")[0]])
    return table(["CPU (2 cores)", "chunks", "`sample` + `corpus` + `questions`", "`train`, peak", "`evaluate`, peak",
                  "`evaluate`'s phases"], rows)


@block("scale-table")
def scale_table(sources: Sources) -> str:
    from benchmarks.scale import markdown_table
    return markdown_table(sources.result("scale"))


@block("resume-cost")
def resume_cost(sources: Sources) -> str:
    lines = []
    for name, machine in (("resume_cost_intel_amx", "2-core Intel Xeon with AMX, bf16"),
                          ("resume_cost_intel_amx_3_epochs", "2-core Intel Xeon with AMX, bf16"),
                          ("resume_cost", "2-core AMD EPYC with AVX2 only, fp32, older code")):
        run = sources.result(name)
        settings = ", ".join(f"`{key}: {value}`" for key, value in run.get("settings", {}).items())
        machine += f" ({settings})" if settings else ""
        lines.append(f"* {machine} (`{name}.json`): training took {run['full_train_seconds']:.0f} s uninterrupted; "
                     f"killed at {run['killed_after_seconds']:.0f} s, the rerun resumed from step "
                     f"{run['resumed_from_step']} of {run['steps']} and took {run['rerun_seconds']:.0f} s, "
                     f"**{run['rerun_share_of_full']:.2f}x** the full training; weights identical to the "
                     f"uninterrupted run's: {'yes' if run['resumed_weights_identical'] else 'no'}.")
    return "\n".join(lines)


@block("parallel-training")
def parallel_training(sources: Sources) -> str:
    run = sources.result("parallel_training_intel_amx")
    return (f"on the {run['usable_cores']}-core Intel Xeon with AMX (`parallel_training_intel_amx.json`, the default "
            f"training of {run['steps']} steps) one training alone took {run['alone_seconds']:.0f} s; two side by side "
            f"with every core each took {max(run['side_by_side_every_core_each_seconds']):.0f} s, "
            f"{run['side_by_side_every_core_each_slowdown']:.1f}x as long; with `OMP_NUM_THREADS="
            f"{run['side_by_side_omp_num_threads']}` both were done after {max(run['side_by_side_cores_shared_seconds']):.0f} s, "
            f"{run['side_by_side_cores_shared_vs_one_after_the_other']:.2f}x the {run['one_after_the_other_seconds']:.0f} s "
            "of one after the other")


@block("checkpoints")
def checkpoints(sources: Sources) -> str:
    train = sources.metrics("train")
    return f"{train['checkpoints_saved']} checkpoints took {train['checkpoint_seconds']:.1f} s together"


@block("precision-probe")
def precision_probe(sources: Sources) -> str:
    probe = sources.result("precision_probe_intel_amx")
    model = probe["model"]
    return (f"the probe took {probe['probe_seconds_median']:.2f} s (median of {len(probe['probe_choices'])} cold runs), "
            f"chose {'/'.join(sorted(set(probe['probe_choices'])))} each time (fp32 {probe['probe_gflops_median']['fp32']:.0f}, "
            f"bf16 {probe['probe_gflops_median']['bf16']:.0f} GFLOP/s), and the model agreed: encoding "
            f"{model['fp32']['encode_texts_per_second']:.1f} vs {model['bf16']['encode_texts_per_second']:.1f} texts/s, "
            f"a training pass {model['fp32']['train_pairs_per_second']:.1f} vs {model['bf16']['train_pairs_per_second']:.1f} "
            "pairs/s, fp32 vs bf16.")


@block("bf16-vs-fp32")
def bf16_vs_fp32(sources: Sources) -> str:
    train32, train16 = sources.result("train_throughput_e5_fp32_same_cpu"), sources.result("train_throughput_e5_bf16")
    enc32, enc16 = sources.result("encode_throughput_fp32_same_cpu"), sources.result("encode_throughput_bf16")

    def at(result: dict, size: int) -> dict:
        return next(row for row in result["by_batch_size"] if row["batch_size"] == size)

    e32, e16 = at(enc32, 8), at(enc16, 8)
    return table(["AMD EPYC with `avx512_bf16`, 2 threads", "fp32", "bf16", "bf16 / fp32"], [
        ["training step, 32 pairs (seconds)", f"{train32['seconds_per_step']:.2f}", f"{train16['seconds_per_step']:.2f}",
         f"{train32['seconds_per_step'] / train16['seconds_per_step']:.2f}x faster"],
        ["encoding, chunks/s at 8 per pass", f"{e32['texts_per_second']:.1f}", f"{e16['texts_per_second']:.1f}",
         f"{e16['texts_per_second'] / e32['texts_per_second']:.2f}x faster"],
        ["encoding: share of the matrix-product peak", f"{e32['utilisation']:.0%}", f"{e16['utilisation']:.0%}", ""],
        ["training: share of the matrix-product peak", f"{train32['utilisation']:.0%}", f"{train16['utilisation']:.0%}", ""],
    ])


@block("bf16-quality")
def bf16_quality(sources: Sources) -> str:
    runs = sources.result("bf16_training")
    zh = runs["sets"][JUDGE_ZH]["finetuned"]
    native = sources.result("bf16_quality_native")["models"]["base"][JUDGE_ZH]
    return (f"both selected step {runs['runs']['bf16']['best_step']} (golden val NDCG@10 "
            f"{f3(runs['runs']['bf16']['best_val_ndcg@10'])} vs {f3(runs['runs']['fp32']['best_val_ndcg@10'])}); the "
            f"fine-tuned model's golden test zh hit@5 was {f3(zh['hit@5_bf16'])} in bf16 and {f3(zh['hit@5_fp32'])} in fp32 "
            f"(difference {difference(zh, 'hit@5_diff')}). These runs used the MNRL loss of the time, so their absolute "
            f"figures are not today's. Encoding alone: of {native['queries']} Chinese golden test questions, "
            f"{native['hit@5_queries_changed']} changed its hit@5 in bf16 (base model {f3(native['hit@5_fp32'])} → "
            f"{f3(native['hit@5_bf16'])}).")


@block("encode-throughput")
def encode_throughput(sources: Sources) -> str:
    parts = []
    for name, label in (("encode_throughput_intel_amx", "Intel Xeon with AMX, bf16"),
                        ("encode_throughput", "AMD EPYC with AVX2 only, fp32")):
        result = sources.result(name)
        sizes = result["by_batch_size"]
        parts.append(f"{label} (`{name}.json`, median of {result['repeats']}):\n\n" + table(
            ["texts per pass", *(str(row["batch_size"]) for row in sizes)],
            [["chunks/s", *(f"{row['texts_per_second']:.1f}" for row in sizes)],
             [f"share of the {result['matmul_peak_gflops']:,.0f} GFLOP/s peak", *(f"{row['utilisation']:.0%}" for row in sizes)],
             ["padding, length-sorted", *(f"{row['padding_overhead_sorted']:.1%}" for row in sizes)]]))
    return "\n\n".join(parts)


@block("train-throughput")
def train_throughput(sources: Sources) -> str:
    e5 = sources.result("train_throughput_e5")
    profile = sources.result("train_step_profile_intel_amx")
    variants = list(profile["variants"].values())
    return (f"* AMD EPYC with AVX2 only, fp32 (`train_throughput_e5.json`): {e5['pairs_per_second']:.2f} pairs/s "
            f"({e5['seconds_per_step']:.2f} s per batch of {e5['batch_size']}), {e5['gflop_per_pair']:.2f} GFLOP of useful "
            f"work per pair, {e5['utilisation']:.0%} of the {e5['matmul_peak_gflops']:.0f} GFLOP/s the same threads reach "
            "on a large matrix product.\n"
            f"* Intel Xeon with AMX, bf16, the whole default epoch (`train_step_profile_intel_amx.json`): "
            f"{variants[0]['seconds_per_step_all_included']:.2f} s per step fed the old way (random batches, the guide "
            f"model in every step), {variants[-1]['seconds_per_step_all_included']:.2f} s the current way (batches of "
            f"similar length, the guide's embeddings computed once): **{profile['speedup']:.2f}x**. Padding "
            f"{variants[0]['padding_overhead']:.3f} → {variants[-1]['padding_overhead']:.3f} of the real tokens.")


# ---- serving, the UI, questions from an LLM -------------------------------------------------------------------

@block("export")
def export(sources: Sources) -> str:
    result = sources.result("export")
    torch = result["pytorch"]
    rows = [["PyTorch (`models/finetuned`)", f3(torch["hit@5"]), f3(torch["mrr@10"]), "", "",
             f"{torch['cpu_texts_per_s']:.1f}", "1.00"]]
    for key, label in (("onnx", "ONNX fp32"), ("onnx_int8", "ONNX int8")):
        row = result[key]
        changed = row["hit@5_queries_changed_vs_pytorch"]
        rows.append([label, f3(row["hit@5"]), f3(row["mrr@10"]),
                     f"{row['hit@5_diff_vs_pytorch']:+.3f}"
                     + (f" ({changed} of {result['queries']} queries changed)" if changed else ""),
                     f"{row['cosine_gap_max']:.0e}" if row["cosine_gap_max"] < 1e-3 else f"{row['cosine_gap_max']:.3f}",
                     f"{row['cpu_texts_per_s']:.1f}", f"{row['cpu_speedup_vs_pytorch_cpu']:.2f}"])
    return table([f"model ({result['queries']} golden test questions)", "hit@5", "MRR@10", "− PyTorch hit@5",
                  "cosine gap to PyTorch (max)", "CPU texts/s", "× PyTorch"], rows)


@block("serve-load")
def serve_load(sources: Sources) -> str:
    run = sources.result("serve_load")
    latency = run["latency_all"]
    return (f"{run['clients']} concurrent clients, {run['requests']:,} requests ({run['texts']:,} texts), "
            f"{run['errors']} errors, {run['vectors_off_direct']} vectors off direct encoding; "
            f"{run['requests_per_s']:.1f} requests/s, {run['texts_per_s']:.1f} texts/s, latency p50 "
            f"{latency['p50_ms'] / 1000:.2f} s and p95 {latency['p95_ms'] / 1000:.2f} s on a {run['usable_cores']}-core CPU "
            f"with the {run['backend']} backend")


@block("ui-latency")
def ui_latency(sources: Sources) -> str:
    idle, loaded = sources.result("ui_latency")["runs"], sources.result("ui_latency_under_load")["runs"]
    columns = [(f"{run['threads']} thread{'s' if run['threads'] > 1 else ''}", run) for run in idle]
    columns += [(f"{run['threads']} thread, beside other jobs", run) for run in loaded[:1]]
    rows = [["start-up: command to page answering, models loaded", *(f"{run['startup_s']:.1f} s" for _, run in columns)],
            ["check against `dvc.lock` done (background)", *(f"{run['stale_check_done_after_s']:.1f} s" for _, run in columns)],
            [f"a question ({columns[0][1]['questions']} golden questions, k = 5, HTTP round trip): median",
             *(f"{run['median_ms']:.0f} ms" for _, run in columns)],
            ["p90 / max", *(f"{run['p90_ms']:.0f} / {run['max_ms']:.0f} ms" for _, run in columns)],
            ["a 10,000-character question (cut to the model's window)", *(f"{run['long_question_ms']:.0f} ms" for _, run in columns)]]
    return table(["", *(label for label, _ in columns)], rows)


@block("labelling-run")
def labelling_run(sources: Sources) -> str:
    run = sources.result("labelling_run")

    def spread(stats: dict, fmt: str) -> list[str]:
        return [format(stats["median"], fmt), f"{format(stats['p10'], fmt)} – {format(stats['p90'], fmt)}",
                f"{format(stats['min'], fmt)} – {format(stats['max'], fmt)}"]

    recall = run["pool_recall"]
    return (table(["", "median", "p10 – p90", "min – max"], [
        ["seconds per question, as the page measured them", *spread(run["seconds_per_question"], ".1f")],
        [f"chunks in the pool (`pool_depth` {run['pool_depth']}, four retrievers)", *spread(run["pool_size"], ".0f")],
    ]) + "\n\n" +
        f"{run['questions']} questions took {minutes(run['labelling_wall_s'])} of wall time, the UI {run['ui_startup_s']:.0f} s "
        f"to start. Pool recall: {recall['any_relevant_at_depth_5']:.0%} of the questions had at least one chunk of their "
        f"golden article in the pool at depth {run['pool_depth']}, {recall['all_relevant_at_depth_5']:.0%} all of them "
        f"({recall['any_relevant_at_depth_10']:.0%} and {recall['any_relevant_at_depth_20']:.0%} with at least one at "
        f"depths 10 and 20); {run['no_relevant_chunk']} were saved as \"no relevant chunk\". The seeded split put "
        f"{run['labelled_splits']['val']} in val and {run['labelled_splits']['test']} in test.")


@block("labelling-evaluation")
def labelling_evaluation(sources: Sources) -> str:
    evaluation = sources.result("labelling_run")["evaluation"]
    labels = {"full_golden_set": "the whole Securities Law set (the run's models)",
              "same_50_article_labels": "the 50, with their article labels (split as labelled)",
              "labelled_50": "the 50, as labelled in the browser"}
    rows = []
    for key, entry in evaluation.items():
        scored = entry.get(JUDGE_ZH) if isinstance(entry, dict) else None
        if scored is None:
            continue
        retrievers = scored["retrievers"]
        rows.append([labels.get(key, key.replace("_", " ")), str(scored["queries"]),
                     *(f3(retrievers[name]["hit@5"]) for name in RETRIEVERS)])
    return table(["golden set", "test questions scored", "base", "fine-tuned", "BM25", "hybrid"], rows)


@block("seed-generator")
def seed_generator(sources: Sources) -> str:
    result = sources.result("seed_generator")
    rows = [[row["condition"], "seed (`generate_qa_embedding_pairs`)" if row["generator"] == "seed" else "ours",
             f"{row['wall_s']:.1f} s", str(row["requests"]), str(row["answered_before_kill"]),
             str(row["paid_requests_repeated_after_kill"])] for row in result["rows"]]
    return table([f"server ({result['latency_s'] * 1000:.0f} ms per answer, {result['chunks']} chunks)", "generator",
                   "wall time", "requests sent", "answered before the kill", "paid requests sent again after it"], rows)


def _questions_per_chunk(params: dict) -> dict[str, int]:
    llm = params["questions"]["llm"]
    return {"train": llm["train_questions_per_chunk"], "val": llm["eval_questions_per_chunk"],
            "test": llm["eval_questions_per_chunk"]}


@block("llm-cost")
def llm_cost(sources: Sources) -> str:
    """An upper-bound estimate for the default corpus: one request per chunk, the chunk and the prompt in, at most
    ``questions.llm.max_tokens`` out, priced by the params (0 in params.yaml: set your provider's)."""
    from stages.lib.documents.chunking import Chunk
    from stages.lib.questions.llm_prompts import build_prompt

    corpus, params = sources.metrics("corpus"), sources.params()
    llm = params["questions"]["llm"]
    chunk_tokens = corpus["chunks"] * corpus["chunk_tokens_median"]
    prompt_tokens = 0
    for split, questions in _questions_per_chunk(params).items():
        empty = Chunk(id="", text="", source="", split=split, language="zh", section="", position=0, n_tokens=0)
        prompt_tokens += corpus[f"chunks_{split}"] * len(build_prompt(empty, questions))
    input_tokens, output_tokens = chunk_tokens + prompt_tokens, corpus["chunks"] * llm["max_tokens"]
    price_in, price_out = llm["price_per_million_input_tokens"], llm["price_per_million_output_tokens"]
    cost = (input_tokens * price_in + output_tokens * price_out) / 1e6
    priced = (f"at the prices in `params.yaml` ({price_in:g} and {price_out:g} per million input and output tokens) "
              f"at most **{cost:.2f}**" if price_in or price_out else
              "`params.yaml` leaves both prices at 0: set `questions.llm.price_per_million_input_tokens` and "
              "`price_per_million_output_tokens` to your provider's")
    return (f"**Cost.** The default corpus is {corpus['chunks']} chunks of about {corpus['chunk_tokens_median']} tokens "
            f"each (one token per Chinese character or English word): one request per chunk, about "
            f"{input_tokens / 1e6:.2f} million input tokens (the chunks and the prompt) and at most "
            f"{output_tokens / 1e6:.2f} million output tokens ({llm['max_tokens']} per answer, `questions.llm.max_tokens`). "
            f"At a price of 1 per million tokens each way that is at most {(input_tokens + output_tokens) / 1e6:.2f}; "
            f"{priced}. Providers' tokenizers count Chinese differently (often 0.6–1.5 tokens a character); "
            "`metrics/questions.json` records the tokens a run used and, with the prices set, its cost.")


# ---- configuration: the params reference --------------------------------------------------------------------

def _yaml_comments(text: str) -> dict[str, str]:
    """Each key path of params.yaml with the comment lines above it and the comment at the end of its line."""
    comments: dict[str, str] = {}
    path: list[tuple[int, str]] = []
    pending: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            pending = []
            continue
        if stripped.startswith("#"):
            pending.append(stripped.lstrip("#").strip())
            continue
        match = re.match(r"^(\s*)([A-Za-z_][\w]*):(.*)$", line)
        if not match:
            continue
        indent, key, rest = len(match.group(1)), match.group(2), match.group(3)
        while path and path[-1][0] >= indent:
            path.pop()
        path.append((indent, key))
        trailing = rest.split(" #", 1)[1].strip() if " #" in rest else ""
        comments[".".join(name for _, name in path)] = " ".join([*pending, trailing]).strip()
        pending = []
    return comments


def _type_of(annotation: typing.Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " \\| ".join(f"`{value}`" for value in typing.get_args(annotation))
    if origin in (typing.Union, __import__("types").UnionType):
        return " or ".join(_type_of(arg) for arg in typing.get_args(annotation))
    if origin in (list, dict):
        return f"{origin.__name__} of " + ", ".join(_type_of(arg) for arg in typing.get_args(annotation))
    return getattr(annotation, "__name__", str(annotation))


def _bounds(field: typing.Any) -> str:
    words = []
    for item in field.metadata:
        for attribute, symbol in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<"), ("min_length", "length ≥")):
            value = getattr(item, attribute, None)
            if value is not None:
                words.append(f"{symbol} {value:g}" if isinstance(value, float) else f"{symbol} {value}")
    return ", ".join(words)


def _value(value: typing.Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return f"`{text}`" if len(text) < 60 else f"`{text[:57]}…`"


@block("params-reference")
def params_reference(sources: Sources) -> str:
    from pydantic import BaseModel

    from stages.lib.common.params import Params

    values, comments = sources.params(), _yaml_comments(sources.params_text())
    parts = []

    def walk(model: type[BaseModel], prefix: str, data: dict, rows: list[list[str]]) -> None:
        for name, field in model.model_fields.items():
            key = f"{prefix}.{name}"
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                walk(annotation, key, data[name], rows)
                continue
            comment = comments.get(key, "").replace("|", "\\|")
            rows.append([f"`{key}`", _value(data[name]), _type_of(annotation) + (f" ({_bounds(field)})" if _bounds(field) else ""),
                         comment])

    for section, field in Params.model_fields.items():
        rows: list[list[str]] = []
        walk(field.annotation, section, values[section], rows)
        intro = comments.get(section, "")
        parts.append(f"### `{section}`\n\n" + (f"{intro}\n\n" if intro else "")
                     + table(["key", "value in params.yaml", "type", "what it does (params.yaml's comment)"], rows))
    return "\n\n".join(parts)


# ---- rendering and checking -----------------------------------------------------------------------------------

def render_text(text: str, sources: Sources, where: str = "") -> str:
    def replace(match: re.Match) -> str:
        name = match.group("name")
        if name not in BLOCKS:
            raise SystemExit(f"{where}: unknown rendered block '{name}' (known: {', '.join(sorted(BLOCKS))})")
        content = BLOCKS[name](sources)
        line_start = match.string.rfind("\n", 0, match.start()) + 1
        if not match.group("body").startswith("\n") and not match.string[line_start:match.start()].strip():
            raise SystemExit(f"{where}: the inline block '{name}' starts a line, where Markdown reads it as an HTML block "
                             "and the rest of the paragraph breaks: put it after some words of its sentence")
        if match.group("body").startswith("\n"):  # a block of whole lines, apart from the markers as Markdown wants
            return f"<!-- render:{name} -->\n\n{content}\n\n<!-- /render:{name} -->"
        return f"<!-- render:{name} -->{content}<!-- /render:{name} -->"
    return BLOCK.sub(replace, text)


def stale_blocks(root: Path = REPO_ROOT) -> list[str]:
    """``file: block`` for every rendered block whose text differs from what the committed files give."""
    sources, stale = Sources(root), []
    for path in documents(root):
        text = path.read_text(encoding="utf-8")
        rendered = render_text(text, sources, str(path.relative_to(root)))
        old = {m.start(): m.group(0) for m in BLOCK.finditer(text)}
        new = [m.group(0) for m in BLOCK.finditer(rendered)]
        stale += [f"{path.relative_to(root)}: {BLOCK.match(after).group('name')}"
                  for before, after in zip(old.values(), new, strict=True) if before != after]
    return stale


def render_all(root: Path = REPO_ROOT) -> list[str]:
    """Rewrite every document whose blocks are stale; the files changed."""
    sources, changed = Sources(root), []
    for path in documents(root):
        text = path.read_text(encoding="utf-8")
        rendered = render_text(text, sources, str(path.relative_to(root)))
        if rendered != text:
            path.write_text(rendered, encoding="utf-8")
            changed.append(str(path.relative_to(root)))
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.render_docs", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 listing the stale blocks")
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="the repository (default: this one)")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_blocks(args.root)
        for entry in stale:
            print(f"stale: {entry}")
        if stale:
            print(f"{len(stale)} rendered block(s) out of date: run `python -m benchmarks.render_docs`", file=sys.stderr)
            return 1
        print("every rendered block is up to date")
        return 0
    changed = render_all(args.root)
    print("rewrote " + ", ".join(changed) if changed else "every rendered block was up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
