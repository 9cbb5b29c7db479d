"""Training variants judged on golden val (questions written by people), never on a test set.

    python -m benchmarks.training_variants                  # every variant
    python -m benchmarks.training_variants hard_negatives   # some of them

Each variant is the default pipeline with the knobs under study set explicitly: it runs `questions` (when a
`questions.*` param changes) and `train` in a fresh copy of the project, on the bundled corpus
and base model this checkout's `dvc repro` made, then scores the fine-tuned model and the best
fusion with BM25 on the golden set's val questions. What a variant costs is its training time.
Results go to benchmarks/results/training_variants.json (one entry per variant, kept across runs).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.project import REPO_ROOT, copy_pipeline

RESULTS = REPO_ROOT / "benchmarks/results/training_variants.json"
OUTPUTS = ("data/corpus", "data/questions", "models/base")
# Each variant sets every knob under study explicitly, so its result does not depend on the
# defaults in params.yaml at the time it ran (the other params are the defaults).
WITH_SENTENCES = {"question": 2, "keywords": 1, "sentence": 2, "topic": 1}  # the default before this benchmark
NO_SENTENCES = {"question": 3, "keywords": 1, "sentence": 0, "topic": 1}  # the default after it
MORE_SENTENCES = {"question": 1, "keywords": 1, "sentence": 4, "topic": 1}
VARIANTS: dict[str, dict[str, object]] = {
    "with_sentence_queries": {"questions.train_styles": WITH_SENTENCES, "train.hard_negatives": False},
    "with_sentence_queries_hard_negatives": {"questions.train_styles": WITH_SENTENCES, "train.hard_negatives": True},
    "no_sentence_queries": {"questions.train_styles": NO_SENTENCES, "train.hard_negatives": False},
    "more_sentence_queries": {"questions.train_styles": MORE_SENTENCES, "train.hard_negatives": False},
    "no_sentence_queries_hard_negatives": {"questions.train_styles": NO_SENTENCES, "train.hard_negatives": True},
    # What two of our changes to the seed's recipe are worth, each undone on the current default.
    "no_vocabulary_extension": {"questions.train_styles": NO_SENTENCES, "train.hard_negatives": False,
                                "train.extend_vocab": False},
    "no_duplicate_free_batches": {"questions.train_styles": NO_SENTENCES, "train.hard_negatives": False,
                                  "train.duplicate_free_batches": False},
    "no_embedding_learning_rate": {"questions.train_styles": NO_SENTENCES, "train.hard_negatives": False,
                                   "train.embedding_learning_rate": 0.0001},
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
    result = subprocess.run([sys.executable, "-m", f"stages.{module}"], cwd=project, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"stage {module} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")


def golden_val_scores(project: Path) -> dict[str, dict[str, float]]:
    """Finetuned, BM25 and the best fusion (chosen on these same val questions) per golden val language."""
    from stages.lib.corpus_io import load_chunks
    from stages.lib.dense_encoding import LazySentenceEncoder
    from stages.lib.device import resolve_device
    from stages.lib.fusion import candidates, choose_fusion
    from stages.lib.golden import golden_datasets, load_golden
    from stages.lib.params import load_params
    from stages.lib.retrieval import BM25Index, dense_rank, retrieval_metrics

    chunks = load_chunks(project / "data/corpus/chunks.jsonl")
    corpus = {c.id: c.text for c in chunks}
    encoder = LazySentenceEncoder(project / "models/finetuned", resolve_device("auto"),
                                  load_params(project / "params.yaml").model.max_seq_length, 64)
    doc_vectors = encoder(list(corpus.values()))
    lexical_index = BM25Index(corpus)
    scores = {}
    for (split, language), dataset in golden_datasets(load_golden(project / "data/golden/securities_law.jsonl"),
                                                      chunks).items():
        if split != "val":
            continue
        ids = list(dataset.queries)
        dense = dense_rank(ids, encoder([dataset.queries[q] for q in ids]), list(corpus), doc_vectors, 100)
        lexical = lexical_index.rank(dataset.queries, 100)
        choice = choose_fusion(dense, lexical, dataset.relevant_docs, candidates("auto", "auto"), 60, 100)
        scores[language] = {
            "queries": len(ids),
            "finetuned": {k: v for k, v in retrieval_metrics(dense, dataset.relevant_docs, [5]).items()
                          if k in ("hit@5", "mrr@10")},
            "bm25": {k: v for k, v in retrieval_metrics(lexical, dataset.relevant_docs, [5]).items()
                     if k in ("hit@5", "mrr@10")},
            "best_fusion": {"method": choice.fusion.method, "weight": choice.fusion.weight,
                            **{k: round(v, 4) for k, v in choice.validation["hybrid"].items()}},
        }
    return scores


def run_variant(name: str, changes: dict[str, object]) -> dict:
    missing = [p for p in OUTPUTS if not (REPO_ROOT / p).exists()]
    if missing:
        raise SystemExit(f"{', '.join(missing)} missing: run `dvc repro` in {REPO_ROOT} first.")
    with tempfile.TemporaryDirectory(prefix=f"variant-{name}-") as tmp:
        project = Path(tmp)
        copy_pipeline(project)
        for output in OUTPUTS:
            shutil.copytree(REPO_ROOT / output, project / output)
        _set_params(project, changes)
        if any(key.startswith("questions.") for key in changes):
            _stage("questions", project)
        started = time.perf_counter()
        _stage("train", project)
        seconds = time.perf_counter() - started
        train = json.loads((project / "metrics/train.json").read_text(encoding="utf-8"))
        result = {"changes": changes, "train_stage_seconds": round(seconds, 1), "train_pairs": train["train_pairs"],
                  "steps": train["steps"], "best_val_ndcg@10_synthetic": train["best_val_ndcg@10"],
                  "golden_val": golden_val_scores(project)}
    return result


def main() -> None:
    wanted = sys.argv[1:] or list(VARIANTS)
    unknown = [name for name in wanted if name not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    results = json.loads(RESULTS.read_text(encoding="utf-8")) if RESULTS.is_file() else {}
    for name in wanted:
        print(f"[variants] {name}: {VARIANTS[name] or 'the default params'}", flush=True)
        results[name] = run_variant(name, VARIANTS[name])
        zh = results[name]["golden_val"].get("zh", {})
        print(f"[variants] {name}: train {results[name]['train_stage_seconds']}s; golden val zh finetuned "
              f"{zh.get('finetuned')}, best fusion {zh.get('best_fusion')}", flush=True)
        RESULTS.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
