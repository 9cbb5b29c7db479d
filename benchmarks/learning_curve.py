"""How much training data, and from where? The learning curve as DVC experiments of the pipeline itself.

    python -m benchmarks.learning_curve queue --dry-run          # print the `dvc exp run --queue` grids
    python -m benchmarks.learning_curve queue --law labor_contract_law --source target --sizes 96 192
    dvc queue start -j 1                                         # run them (one at a time: training takes the cores)
    dvc queue status                                             # watch; `dvc queue logs <name>` for one
    python -m benchmarks.learning_curve collect                  # read them back: the curve CSV and the tables
    python -m benchmarks.learning_curve table                    # the tables only (nothing written)

For each judge law (the Securities Law and the Labor Contract Law, each with its golden set) and each source of
training text, one grid of experiments (``-S 'train.max_pairs=96,192,384,768'``: one experiment per value):

- ``target``: the law's own training chunks only (``sample.laws`` set to the law, ``sample.extra_laws: []``),
  ``train.max_pairs`` pairs (a seeded sample; a budget above what the law holds trains on all of it);
- ``related``: the law's own ``--own-pairs`` pairs plus ``train.max_extra_pairs`` pairs from the ``--related``
  laws of the bundled database most related to it (``python -m stages.related_laws``: the same department of
  law, closest by TF-IDF character bigrams), given as ``sample.extra_laws`` (training material only). The other
  judge law is never one of them, so that transfer stays clean.

Only ``sample.laws`` names the law: the default ``evaluate.golden_sets`` (every ``data/golden/*.jsonl``) then
scores the law's own golden set, and the evaluate stage scores transfer on the other judge law's golden set
(``metrics/transfer.json``). Everything else is params.yaml's recipe (``--loss`` sets ``train.loss``).

``collect`` reads every finished experiment named ``curve-...`` from ``dvc exp show --json``: golden test per language with 95%
paired-bootstrap intervals (``metrics/eval.json``), the selection's golden val NDCG@10 and the training figures
(``metrics/train.json``) and transfer (``metrics/transfer.json``, "-" where absent). It writes
benchmarks/results/learning_curve.csv, drawn by ``dvc plots show`` (dvc.yaml "Learning curve"), and prints the
tables. The points measured before the grids were experiments (by this module's earlier version, which copied
the project and scored each point itself, golden val with intervals included) are kept as measured in
benchmarks/results/learning_curve.json and drawn and tabled beside the experiments.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from benchmarks.project import JUDGES, LAW_NAMES, REPO_ROOT, Experiment, Sweep, exp_run_command, queue_commands, show_experiments

HISTORY = REPO_ROOT / "benchmarks/results/learning_curve.json"
CURVE_CSV = REPO_ROOT / "benchmarks/results/learning_curve.csv"
SOURCES = ("target", "related")
# related_uniform: the first related points, one uniform sample of the union (before train.max_extra_pairs).
SOURCE_ORDER = ("target", "related_uniform", "related")
DEFAULT_SIZES = {"target": [96, 192, 384, 768], "related": [384, 1152]}  # related: extra pairs on top of own
# Model work per training pair of multilingual-e5-small on the default chunks, forward and backward (benchmarks/
# results/train_throughput_e5_bf16.json, counted from the model's shapes); GIST adds the guide's forward pass,
# a third of that again.
GFLOP_PER_PAIR = {"mnrl": 14.67, "gist": 14.67 * 4 / 3}
RETRIEVERS = ("base", "finetuned", "bm25", "hybrid")
# eval.json's golden test of a language: every golden test question (the verdict's judge).
GOLDEN_TEST = "golden_test_{language}_incl_trained_passages"
LANGUAGES = ("zh", "en")
GRID_PREFIX = "curve-"  # the curve's experiments are named curve-<law>-<loss>-<source>-<i>


def related_for(law: str, count: int) -> list[str]:
    from stages.lib.documents.law_pdf import law_database
    from stages.lib.documents.related_laws import related_laws

    others = tuple(name for other, name in LAW_NAMES.items() if other != law)
    return [related.name for related in related_laws(law_database(), [LAW_NAMES[law]], count, exclude=others)]


def grid_commands(law: str, source: str, sizes: list[int], loss: str, related: list[str],
                  own_pairs: int) -> list[list[str]]:
    """The ``dvc exp run --queue`` grid of one law and source: one experiment per size, named
    ``curve-<law>-<loss>-<source>-<i>`` by DVC."""
    settings: dict[str, object] = {"sample.laws": [LAW_NAMES[law]], "train.loss": loss}
    if source == "target":
        settings.update({"sample.extra_laws": [], "train.max_pairs": Sweep(tuple(sizes))})
    else:
        settings.update({"sample.extra_laws": related, "train.max_pairs": own_pairs,
                         "train.max_extra_pairs": Sweep(tuple(sizes))})
    return [exp_run_command(settings, name=f"{GRID_PREFIX}{law}-{loss}-{source}")]


def judge_of(laws: list[str]) -> str:
    """The judge key of an experiment's ``sample.laws`` (its own name for any other corpus)."""
    for law, name in LAW_NAMES.items():
        if list(laws) == [name]:
            return law
    return "+".join(laws)


def experiment_point(experiment: Experiment) -> tuple[str, dict]:
    """(law, entry): one experiment as a point of the curve, in the layout of the history's points."""
    train, evaluation = experiment.metric("metrics/train.json"), experiment.metric("metrics/eval.json")
    loss = str(experiment.param("train.loss", "mnrl"))
    extra_laws = list(experiment.param("sample.extra_laws", []) or [])
    scores = {}
    for language in LANGUAGES:
        golden = evaluation.get(GOLDEN_TEST.format(language=language))
        if golden:
            scores[f"test_{language}"] = {"queries": golden.get("queries"),
                                          **{name: golden[name] for name in RETRIEVERS if name in golden}}
    transfer = {judge: {split: {"queries": entry.get("queries"), "base": entry["base"], "finetuned": entry["finetuned"]}
                        for split, entry in by_split.items()}
                for judge, by_split in experiment.metric("metrics/transfer.json").items()}
    pairs = train.get("train_pairs", 0)
    entry = {
        "experiment": experiment.name, "rev": experiment.rev, "source": "related" if extra_laws else "target",
        "extra_laws": extra_laws, "loss": loss, "train_pairs": pairs,
        "train_pairs_extra": train.get("train_pairs_extra", 0),
        "train_tflop": round(pairs * GFLOP_PER_PAIR[loss.removeprefix("cached_")] / 1000, 1),
        "steps": train.get("steps"), "best_step": train.get("best_step"), "selected_on": train.get("selected_on"),
        "train_seconds": train.get("train_seconds"), "precision": train.get("precision"),
        "val_ndcg@10": {"base": train.get("val_ndcg@10_base"), "finetuned": train.get("best_val_ndcg@10")},
        "scores": scores, "transfer": transfer,
    }
    return judge_of(list(experiment.param("sample.laws", []) or [])), entry


def merged_results(history: dict, experiments: list[Experiment]) -> dict:
    """The history's points (as measured) and the experiments', by law; experiments keyed by their name."""
    results = {**history, "points": {law: dict(points) for law, points in history.get("points", {}).items()}}
    for experiment in experiments:
        law, entry = experiment_point(experiment)
        if entry["scores"]:  # an experiment with no golden test (no golden set about its corpus) draws nothing
            results["points"].setdefault(law, {})[experiment.name] = entry
    return results


def write_csv(results: dict, path: Path = CURVE_CSV) -> None:
    """One row per law, source, point, split, language and retriever: what ``dvc plots`` draws."""
    rows = []
    for law, points in results.get("points", {}).items():
        for entry in points.values():
            for set_name, scores in entry["scores"].items():
                for retriever in RETRIEVERS:
                    if retriever not in scores:
                        continue
                    rows.append({"law": law, "source": entry["source"], "train_pairs": entry["train_pairs"],
                                 "question_set": f"{law} golden {set_name.replace('_', ' ')}", "retriever": retriever,
                                 "hit@5": scores[retriever]["hit@5"], "mrr@10": scores[retriever]["mrr@10"],
                                 "hit@5_ci_low": scores[retriever]["hit@5_ci_low"],
                                 "hit@5_ci_high": scores[retriever]["hit@5_ci_high"],
                                 "series": f"{retriever}, {entry['source']}, {entry.get('loss', 'mnrl')}"})
    rows.sort(key=lambda r: (r["question_set"], r["series"], r["train_pairs"]))
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["law"])
        writer.writeheader()
        writer.writerows(rows)


def _diff(row: dict | None, name: str, other: str, metric: str = "hit@5") -> str:
    """``name`` − ``other`` with its interval where the result has one, the bare difference where not."""
    if not row or name not in row or other not in row:
        return "-"
    key = f"{metric}_diff_vs_{other}"
    if key + "_ci_low" in row[name]:
        return f"{row[name][key]:+.3f} [{row[name][key + '_ci_low']:+.3f}, {row[name][key + '_ci_high']:+.3f}]"
    return f"{row[name][metric] - row[other][metric]:+.3f}"


def _val_cell(entry: dict, named: bool) -> str:
    """Golden val, fine-tuned − base. The history's points scored golden val zh hit@5 themselves, with intervals;
    an experiment has the train stage's own figure: NDCG@10 on every golden val question (all languages) of the
    step it kept, against the base model's, no interval."""
    if "val_zh" in entry["scores"]:
        return ("zh hit@5 " if named else "") + _diff(entry["scores"]["val_zh"], "finetuned", "base")
    val = entry.get("val_ndcg@10", {})
    if entry.get("selected_on") != "golden val" or val.get("finetuned") is None or val.get("base") is None:
        return "-"
    return f"NDCG@10 {val['finetuned'] - val['base']:+.3f}"


def markdown_tables(results: dict) -> str:
    """Per law: golden val and test zh/en of the fine-tuned model by source and size, time, transfer. Points
    that are experiments carry their name (``dvc exp apply <name>`` restores one)."""
    lines = []
    for law, points in results.get("points", {}).items():
        entries = sorted(points.values(), key=lambda e: (e.get("loss", "mnrl"), SOURCE_ORDER.index(e["source"]),
                                                         e["train_pairs"], e.get("experiment", "")))
        named = any("experiment" in entry for entry in entries)
        lines += [f"**{law}** (related laws: {', '.join(results.get('related', {}).get(law, [])) or 'none'})", "",
                  ("| experiment " if named else "")
                  + "| loss | source | pairs (own + related) | train s | TFLOP | "
                  + ("golden val ft - base" if named else "val zh ft - base") + " | test zh ft - base "
                  "| test zh ft - BM25 | test zh hybrid - BM25 | test en ft | transfer ft - base |",
                  "| --- |" + " --- |" * (10 + named)]
        for entry in entries:
            scores = entry["scores"]
            transfer = next(iter(entry["transfer"].values()), {}).get("test_zh")
            seconds = entry.get("train_stage_seconds", entry.get("train_seconds"))
            cells = [entry.get("experiment", "-")] if named else []
            cells += [
                entry.get("loss", "mnrl"), entry["source"], _pairs_cell(entry),
                f"{seconds:.0f}" if seconds is not None else "-",
                f"{entry['train_tflop']:g}" if "train_tflop" in entry else "-",
                _val_cell(entry, named), _diff(scores.get("test_zh"), "finetuned", "base"),
                _diff(scores.get("test_zh"), "finetuned", "bm25"), _diff(scores.get("test_zh"), "hybrid", "bm25"),
                f"{scores['test_en']['finetuned']['hit@5']:.3f}" if "test_en" in scores else "-",
                _diff(transfer, "finetuned", "base"),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _pairs_cell(entry: dict) -> str:
    if entry["source"] != "related":  # target, or the uniform sample whose split was not recorded
        return str(entry["train_pairs"])
    extra = entry.get("train_pairs_extra", 0)
    return f"{entry['train_pairs']} ({entry['train_pairs'] - extra} + {extra})"


def read_history(path: Path = HISTORY) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.learning_curve", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("queue", "collect", "table"))
    parser.add_argument("--law", choices=sorted(JUDGES), action="append", help="queue: default both")
    parser.add_argument("--source", choices=SOURCES, action="append", help="queue: default both")
    parser.add_argument("--sizes", type=int, nargs="+",
                        help=f"queue: train.max_pairs (target) or train.max_extra_pairs (related); default {DEFAULT_SIZES}")
    parser.add_argument("--loss", default="gist", choices=("mnrl", "gist"), help="queue: train.loss (default gist)")
    parser.add_argument("--related", type=int, default=6, help="queue: related laws of a 'related' grid (default 6)")
    parser.add_argument("--own-pairs", type=int, default=384,
                        help="queue: the law's own pairs in a 'related' grid (train.max_pairs; default 384)")
    parser.add_argument("--dry-run", action="store_true", help="queue: print the commands, queue nothing")
    parser.add_argument("--all-commits", action="store_true", help="collect/table: experiments of every commit")
    parser.add_argument("--prefix", default=GRID_PREFIX,
                        help=f"collect/table: the experiments whose names start with this (default {GRID_PREFIX!r}: "
                             "the grids queued here, not the training variants)")
    args = parser.parse_args()
    if args.action == "queue":
        commands = []
        for law in args.law or list(JUDGES):
            for source in args.source or list(SOURCES):
                related = related_for(law, args.related) if source == "related" else []
                commands += grid_commands(law, source, args.sizes or DEFAULT_SIZES[source], args.loss, related,
                                          args.own_pairs)
        queue_commands(commands, REPO_ROOT, args.dry_run)
        return
    experiments = [e for e in show_experiments(REPO_ROOT, args.all_commits) if e.name.startswith(args.prefix)]
    results = merged_results(read_history(), experiments)
    if args.action == "collect":
        write_csv(results)
        print(f"wrote {CURVE_CSV.relative_to(REPO_ROOT)}", flush=True)
    print(markdown_tables(results))


if __name__ == "__main__":
    main()
