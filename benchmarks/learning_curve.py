"""Benchmark: how much training data, and from where? Golden val and test of both laws against training pairs.

    python -m benchmarks.learning_curve                               # every point, both laws (about an hour, 2 cores)
    python -m benchmarks.learning_curve --law securities_law --source target --sizes 96 384
    python -m benchmarks.learning_curve --table                       # print the README tables from the results

For each judge law (the Securities Law and the Labor Contract Law, each with its golden set) and each
source of training text:
- ``target``: the law's own training chunks only (the default pipeline);
- ``related``: the law plus the ``--related`` laws of the bundled database most related to it
  (``python -m stages.related_laws``: the same department of law, closest by TF-IDF character bigrams),
  given to the pipeline as ``sample.extra_laws``, so training material only. The other judge law is
  never one of them, so that the transfer figures below stay clean;
a ``target`` point of size n runs the train stage with ``train.max_pairs`` n (a seeded sample; a size above
what the law holds runs once, with all of it). A ``related`` point of size n keeps ``--own-pairs`` of the
law's own pairs (``train.max_pairs``) and fills the rest from the related laws (``train.max_extra_pairs``), as
the pipeline samples them: extra text added to the target's, never in its place. (The first related points,
source ``related_uniform``, were one uniform sample of the union, which the pipeline did before the two
budgets existed: most of those pairs came from the related laws.) ``train.loss`` comes from ``--loss``
(mnrl unless asked: the first points were measured with it). Everything else is params.yaml's recipe. Each
point is scored
on the law's golden val and golden test, per language: base, fine-tuned, BM25 and the hybrid (fusion
chosen on golden val), with paired-bootstrap 95% intervals of fine-tuned - base, fine-tuned - BM25 and
hybrid - BM25; and on **transfer**: the fine-tuned model and its base searched over the *other* law's
chunks with that law's golden test questions. Knobs are chosen on val; test is reported, never chosen on.

Training time is the train stage's wall time on this machine (named in the results), with the training
work of each point in TFLOP (pairs x the model's FLOPs per pair, counted from its shapes as
``benchmarks/train_throughput.py`` counts them), from which a GPU's time follows. Chunks of the
target's val and test splits never reach training (the questions stage keeps them out, extra laws are
train-only). Results: benchmarks/results/learning_curve.json (one entry per law, source and size, kept
across runs) and learning_curve.csv, which ``dvc plots`` draws (dvc.yaml "Learning curve").
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks.project import REPO_ROOT, copy_pipeline, copy_prepared
from benchmarks.train_throughput import cpu_name
from benchmarks.training_variants import JUDGES, _set_params, _stage

RESULTS = REPO_ROOT / "benchmarks/results/learning_curve.json"
CURVE_CSV = REPO_ROOT / "benchmarks/results/learning_curve.csv"
LAW_NAMES = {law: settings["sample.laws"][0] for law, settings in JUDGES.items()}
SOURCES = ("target", "related")
# related_uniform: the first related points, one uniform sample of the union (before train.max_extra_pairs).
SOURCE_ORDER = ("target", "related_uniform", "related")
DEFAULT_SIZES = {"target": [96, 192, 384, 768], "related": [768, 1536, 3072]}
# Model work per training pair of multilingual-e5-small on the default chunks, forward and backward (benchmarks/
# results/train_throughput_e5_bf16.json, counted from the model's shapes); GIST adds the guide's forward pass,
# a third of that again.
GFLOP_PER_PAIR = {"mnrl": 14.67, "gist": 14.67 * 4 / 3}
PREPARED = ("data/sample", "data/sample_extra", "data/corpus", "data/questions", "models/base")
RETRIEVERS = ("base", "finetuned", "bm25", "hybrid")


def related_for(law: str, count: int) -> list[str]:
    from stages.lib.documents.law_pdf import law_database
    from stages.lib.documents.related_laws import related_laws

    others = tuple(name for other, name in LAW_NAMES.items() if other != law)
    return [related.name for related in related_laws(law_database(), [LAW_NAMES[law]], count, exclude=others)]


def prepared_project(law: str, source: str, extra_laws: list[str], root: Path) -> Path:
    """This law's documents (and extra laws), chunks, questions and base model, made once per source and reused."""
    project = root / f"prepared-{law}-{source}"
    marker = project / "extra_laws.json"
    settings = {**JUDGES[law], "sample.extra_laws": extra_laws}
    if all((project / path).exists() for path in PREPARED) and marker.is_file() and \
            json.loads(marker.read_text(encoding="utf-8")) == extra_laws:
        # Today's params.yaml (a key added since is not an error); the data stages' settings are the marker's.
        shutil.copyfile(REPO_ROOT / "params.yaml", project / "params.yaml")
        _set_params(project, settings)
        return project
    shutil.rmtree(project, ignore_errors=True)
    copy_pipeline(project)
    _set_params(project, settings)
    for stage in ("sample", "corpus", "questions", "base_model"):
        _stage(stage, project)
    marker.write_text(json.dumps(extra_laws, ensure_ascii=False), encoding="utf-8")
    return project


def available_pairs(project: Path) -> tuple[int, int]:
    """(the law's own training pairs, the related laws' pairs) in a prepared project."""
    train = json.loads((project / "data/questions/train.json").read_text(encoding="utf-8"))
    own_ids = {json.loads(line)["id"] for line in (project / "data/corpus/chunks.jsonl").read_text(encoding="utf-8").splitlines()}
    relevant = [chunk_id for docs in train["relevant_docs"].values() for chunk_id in docs]
    own = sum(chunk_id in own_ids for chunk_id in relevant)
    return own, len(relevant) - own


def pair_budgets(source: str, size: int, own_available: int, own_pairs: int) -> dict:
    """The train params of a point: a target point samples ``size`` own pairs; a related point keeps
    ``own_pairs`` of them and takes the rest of ``size`` from the related laws."""
    if source == "target":
        return {"train.max_pairs": size}
    own = min(own_pairs, own_available)
    return {"train.max_pairs": own, "train.max_extra_pairs": size - own}


class Judge:
    """One law's golden questions over its own chunks, with the base model's and BM25's rankings computed once."""

    def __init__(self, project: Path) -> None:
        from stages.lib.common.params import parse_params
        from stages.lib.documents.chunk_file import load_chunks
        from stages.lib.models.hardware import resolve_hardware
        from stages.lib.models.prompts import resolve_prompts
        from stages.lib.retrieval.golden import golden_datasets, load_golden
        from stages.lib.retrieval.rankers import BM25Index

        params = parse_params((project / "params.yaml").read_text(encoding="utf-8"))
        self.hardware = resolve_hardware(params.compute.device, params.compute.precision)
        self.max_seq_length = params.model.max_seq_length
        self.prompts = resolve_prompts(params.model.query_prompt, params.model.document_prompt, project / "models/base")
        chunks = load_chunks(project / "data/corpus/chunks.jsonl")
        self.corpus_ids, texts = [c.id for c in chunks], [c.text for c in chunks]
        self.sets = {}
        for file in params.evaluate.golden_sets:
            for key, dataset in golden_datasets(load_golden(project / file), chunks).items():
                self.sets[key] = dataset
        self.texts = texts
        lexical = BM25Index(dict(zip(self.corpus_ids, texts, strict=True)))
        self.bm25 = {key: lexical.rank(dataset.queries, 100) for key, dataset in self.sets.items()}
        self.base = self.dense(project / "models/base")

    def dense(self, model_dir: Path) -> dict:
        from stages.lib.models.hardware import encoding_batch_size
        from stages.lib.retrieval.dense_encoding import LazySentenceEncoder
        from stages.lib.retrieval.rankers import dense_rank

        encoder = LazySentenceEncoder(model_dir, self.hardware.device, self.max_seq_length,
                                      encoding_batch_size("auto", self.hardware.device), self.hardware.precision)
        documents = encoder(self.texts, self.prompts.document)
        rankings = {}
        for key, dataset in self.sets.items():
            ids = list(dataset.queries)
            rankings[key] = dense_rank(ids, encoder([dataset.queries[q] for q in ids], self.prompts.query),
                                       self.corpus_ids, documents, 100)
        return rankings

    def score(self, tuned: dict, splits=("val", "test")) -> dict:
        """Per split and language: every retriever with intervals, the hybrid's fusion chosen on golden val."""
        from stages.lib.retrieval.fusion import candidates, choose_fusion, fuse
        from stages.lib.retrieval.intervals import intervals, per_query

        out: dict[str, dict] = {}
        for language in sorted({language for _, language in self.sets}):
            val_key = ("val", language)
            if val_key not in self.sets:
                continue
            choice = choose_fusion(tuned[val_key], self.bm25[val_key], self.sets[val_key].relevant_docs,
                                   candidates("auto", "auto"), 60, 100)
            for split in splits:
                key = (split, language)
                if key not in self.sets:
                    continue
                dataset, ids = self.sets[key], list(self.sets[key].queries)
                rankings = {"base": self.base[key], "finetuned": tuned[key], "bm25": self.bm25[key],
                            "hybrid": fuse(tuned[key], self.bm25[key], choice.fusion, 60, 100)}
                values = {name: per_query(ranking, dataset.relevant_docs, ids) for name, ranking in rankings.items()}
                bounds = intervals(values, "bm25", compared={"finetuned": "base"})
                out[f"{split}_{language}"] = {
                    "queries": len(ids), "fusion": choice.fusion.describe(),
                    **{name: {"hit@5": round(float(values[name]["hit@5"].mean()), 4),
                              "mrr@10": round(float(values[name]["mrr@10"].mean()), 4), **bounds[name]}
                       for name in RETRIEVERS},
                }
        return out

    def transfer(self, tuned: dict) -> dict:
        """Base and fine-tuned only (a model trained on another law), on this law's golden test."""
        from stages.lib.retrieval.intervals import intervals, per_query

        out = {}
        for (split, language), dataset in self.sets.items():
            if split != "test":
                continue
            ids = list(dataset.queries)
            values = {name: per_query(ranking[(split, language)], dataset.relevant_docs, ids)
                      for name, ranking in (("base", self.base), ("finetuned", tuned))}
            bounds = intervals(values, "base")
            out[f"test_{language}"] = {"queries": len(ids), **{
                name: {"hit@5": round(float(values[name]["hit@5"].mean()), 4),
                       "mrr@10": round(float(values[name]["mrr@10"].mean()), 4), **bounds[name]} for name in values}}
        return out


def run_point(law: str, prepared: Path, budgets: dict, root: Path, judges: dict[str, Judge], loss: str) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"curve-{law}-", dir=root) as tmp:
        project = Path(tmp)
        copy_prepared(prepared, project, PREPARED)
        _set_params(project, {**JUDGES[law], "sample.extra_laws": json.loads((prepared / "extra_laws.json").read_text()),
                              **budgets, "train.loss": loss})
        started = time.perf_counter()
        _stage("train", project)
        seconds = time.perf_counter() - started
        train = json.loads((project / "metrics/train.json").read_text(encoding="utf-8"))
        own = judges[law]
        tuned_own = own.dense(project / "models/trained")
        transfer = {}
        for other, judge in judges.items():
            if other != law:
                transfer[other] = judge.transfer(judge.dense(project / "models/trained"))
        return {
            "train_pairs": train["train_pairs"], "train_pairs_available": train["train_pairs_available"],
            "train_pairs_extra": train.get("train_pairs_extra", 0),
            "train_tflop": round(train["train_pairs"] * GFLOP_PER_PAIR[loss] / 1000, 1),
            "steps": train["steps"], "best_step": train["best_step"], "base_model_selected": train["base_model_selected"],
            "wise_ft_alpha": train.get("wise_ft_alpha"), "precision": train["precision"], "loss": loss,
            "train_stage_seconds": round(seconds, 1), "train_seconds": train["train_seconds"],
            "scores": own.score(tuned_own), "transfer": transfer,
        }


def write_csv(results: dict, path: Path = CURVE_CSV) -> None:
    """One row per law, source, point, split, language and retriever: what ``dvc plots`` draws."""
    rows = []
    for law, points in results.get("points", {}).items():
        for entry in points.values():
            for set_name, scores in entry["scores"].items():
                for retriever in RETRIEVERS:
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


def markdown_tables(results: dict) -> str:
    """Per law: golden val and test zh/en of the fine-tuned model by source and size, time, transfer."""
    lines = []
    for law, points in results.get("points", {}).items():
        entries = sorted(points.values(), key=lambda e: (e.get("loss", "mnrl"), SOURCE_ORDER.index(e["source"]),
                                                         e["train_pairs"]))
        lines += [f"**{law}** (related laws: {', '.join(results['related'].get(law, [])) or 'none'})", "",
                  "| loss | source | pairs (own + related) | train s | TFLOP | val zh ft - base | test zh ft - base "
                  "| test zh ft - BM25 | test zh hybrid - BM25 | test en ft | transfer ft - base |",
                  "| --- |" + " --- |" * 10]

        def diff(row, name, other, metric="hit@5"):
            key = f"{metric}_diff_vs_{other}"
            return f"{row[name][key]:+.3f} [{row[name][key + '_ci_low']:+.3f}, {row[name][key + '_ci_high']:+.3f}]"

        for entry in entries:
            scores = entry["scores"]
            transfer = next(iter(entry["transfer"].values()), {}).get("test_zh")
            lines.append("| " + " | ".join([
                entry.get("loss", "mnrl"), entry["source"], _pairs_cell(entry), f"{entry['train_stage_seconds']:.0f}",
                f"{entry['train_tflop']:g}" if "train_tflop" in entry else "-",
                diff(scores["val_zh"], "finetuned", "base"), diff(scores["test_zh"], "finetuned", "base"),
                diff(scores["test_zh"], "finetuned", "bm25"), diff(scores["test_zh"], "hybrid", "bm25"),
                f"{scores['test_en']['finetuned']['hit@5']:.3f}" if "test_en" in scores else "-",
                diff(transfer, "finetuned", "base") if transfer else "-",
            ]) + " |")
        lines.append("")
    return "\n".join(lines)


def _pairs_cell(entry: dict) -> str:
    if entry["source"] != "related":  # target, or the uniform sample whose split was not recorded
        return str(entry["train_pairs"])
    extra = entry.get("train_pairs_extra", 0)
    return f"{entry['train_pairs']} ({entry['train_pairs'] - extra} + {extra})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--law", choices=sorted(JUDGES), action="append", help="default: both")
    parser.add_argument("--source", choices=SOURCES, action="append", help="default: both")
    parser.add_argument("--sizes", type=int, nargs="+", help=f"training pairs (default per source: {DEFAULT_SIZES})")
    parser.add_argument("--loss", default="mnrl", choices=("mnrl", "gist"),
                        help="train.loss of every point (default mnrl: the curve was measured with it)")
    parser.add_argument("--related", type=int, default=6, help="related laws added by the 'related' source (default 6)")
    parser.add_argument("--own-pairs", type=int, default=384,
                        help="the law's own pairs in a 'related' point (train.max_pairs; default 384, the pipeline's)")
    parser.add_argument("--table", action="store_true", help="print the results as Markdown tables and stop")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "embedding-ft-curve",
                        help="where prepared projects are kept between runs")
    args = parser.parse_args()
    results = json.loads(RESULTS.read_text(encoding="utf-8")) if RESULTS.is_file() else {}
    if args.table:
        print(markdown_tables(results))
        return
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args.work.mkdir(parents=True, exist_ok=True)
    results.setdefault("points", {})
    results["related"] = {law: related_for(law, args.related) for law in JUDGES}
    results["related_how"] = (f"the {args.related} current laws of the bundled database closest to the judge law: same "
                              "department of law (law_department), ranked by TF-IDF character-bigram cosine "
                              "(stages/lib/documents/related_laws.py); the other judge law excluded")
    results["machine"] = f"{cpu_name()}, {os.cpu_count()} cores, {platform.machine()}"
    # Judges score every point, on its own law and (transfer) on the other: built once, over the target-only corpus.
    judges = {law: Judge(prepared_project(law, "target", [], args.work)) for law in JUDGES}
    for law in args.law or list(JUDGES):
        for source in args.source or list(SOURCES):
            extra = results["related"][law] if source == "related" else []
            prepared = prepared_project(law, source, extra, args.work)
            own, related = available_pairs(prepared)
            available = own + related
            sizes = sorted({min(size, available) for size in (args.sizes or DEFAULT_SIZES[source])})
            for size in sizes:
                label = f"{args.loss}_{source}_{size}"
                budgets = pair_budgets(source, size, own, args.own_pairs)
                print(f"[curve] {law} / {source}: {size} of {available} pairs ({budgets})", flush=True)
                entry = {"source": source, "extra_laws": extra,
                         **run_point(law, prepared, budgets, args.work, judges, args.loss)}
                results["points"].setdefault(law, {})[label] = entry
                zh = entry["scores"].get("test_zh", {})
                print(f"[curve] {law} / {label}: train {entry['train_stage_seconds']}s; golden val zh ft "
                      f"{entry['scores'].get('val_zh', {}).get('finetuned', {}).get('hit@5')} base "
                      f"{entry['scores'].get('val_zh', {}).get('base', {}).get('hit@5')}; test zh ft "
                      f"{zh.get('finetuned', {}).get('hit@5')}", flush=True)
                results["precision"] = entry["precision"]
                RESULTS.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
                write_csv(results)
    print(markdown_tables(results))


if __name__ == "__main__":
    main()
