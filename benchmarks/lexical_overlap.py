"""Benchmark: how lexical each kind of question is, on the two laws with golden sets.

    python -m benchmarks.lexical_overlap              # both laws (about a minute on 2 cores)
    python -m benchmarks.lexical_overlap --root DIR   # reuse the prepared projects of another benchmark's DIR

Word overlap is the share of a question's words (BM25's: jieba words, stopwords out) that its labelled passages
hold (``stages/lib/documents/lexical_overlap.py``). Measured per law for the golden sets' questions (written by
people; Chinese and English, val and test, and the Chinese ones by style) and for the offline generator's
synthetic splits, on the law's own chunks. The range of the Chinese golden sets' means is the reference the
evaluation's verdict quotes when no golden set covers a corpus (``retrieval/verdict.py``'s PEOPLES_WORD_OVERLAP,
held to this file by tests/retrieval/test_verdict.py). Results: benchmarks/results/lexical_overlap.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
from pathlib import Path

from benchmarks.project import JUDGES, REPO_ROOT, prepared_project, write_result
from benchmarks.train_throughput import cpu_name

RESULTS = Path("benchmarks/results/lexical_overlap.json")


def _mean(values: list[float]) -> float:
    return round(sum(values) / len(values), 4) if values else 0.0


def measure(project: Path, golden_file: str) -> dict:
    from stages.lib.documents.chunk_file import load_chunks
    from stages.lib.documents.lexical_overlap import mean_word_overlap, word_overlap
    from stages.lib.documents.text import corpus_language
    from stages.lib.questions.qa_dataset import QADataset
    from stages.lib.retrieval.golden import load_golden, resolve

    cwd = os.getcwd()
    os.chdir(project)  # the stages' paths are relative to the project
    try:
        chunks = load_chunks()
        texts = {c.id: c.text for c in chunks}
        language = corpus_language(texts.values())
        golden = load_golden(REPO_ROOT / golden_file)
        relevant = resolve(golden, chunks)
        out: dict = {}
        for question in golden.scored():
            value = word_overlap(question.query, [texts[cid] for cid in relevant[question.id]], language)
            for key in (f"golden_{question.language}_{question.split}", f"golden_{question.language}_{question.style}"):
                out.setdefault(key, []).append(value)
        result = {key: {"questions": len(values), "word_overlap": _mean(values)} for key, values in sorted(out.items())}
        for split in ("train", "val", "test"):
            dataset = QADataset.load(Path(f"data/questions/{split}.json"))
            result[f"synthetic_{split}"] = {"questions": len(dataset.queries),
                                            "word_overlap": mean_word_overlap(dataset, language)}
        return result
    finally:
        os.chdir(cwd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, help="work folder holding prepared-<law> projects (default: a temporary one)")
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args()
    root = args.root or Path(tempfile.mkdtemp(prefix="lexical-overlap-"))
    laws = {}
    for law, settings in sorted(JUDGES.items()):
        laws[law] = measure(prepared_project(law, root), settings["evaluate.golden_sets"][0])
        print(f"[lexical overlap] {law}: " + ", ".join(f"{k} {v['word_overlap']:.2f} ({v['questions']})"
                                                      for k, v in laws[law].items()), flush=True)
    people = [entry["word_overlap"] for measured in laws.values() for key, entry in measured.items()
              if key in ("golden_zh_val", "golden_zh_test")]
    write_result(args.json, {
        "command": "python -m benchmarks.lexical_overlap", "cpu": cpu_name(), "machine": platform.machine(),
        "laws": laws,
        # The verdict's reference: the Chinese golden sets' means (val and test of both laws), rounded as it quotes them.
        "peoples_word_overlap_range": [round(min(people), 2), round(max(people), 2)],
    })


if __name__ == "__main__":
    main()
