"""English documents end to end through real `dvc repro`: Markdown in, metrics out."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.helpers import MINILM, REPO_ROOT, make_project, ran_every_stage, run

pytestmark = pytest.mark.slow  # runs the pipeline, a stage, a browser or a server: not in `make test-quick`


def test_english_markdown_pipeline(tmp_path):
    project = make_project(tmp_path / "project", {
        "sample": {"laws": ["中华人民共和国国歌法"], "transfer_laws": []},
        "corpus": {"documents_dir": "docs", "chunk_size": 48, "split": {"val_fraction": 0.2, "test_fraction": 0.3}},
        "model": {"max_seq_length": 64, **MINILM},
        "train": {"epochs": 1, "batch_size": 8, "learning_rate": 1e-4},
        "evaluate": {"llamaindex_check": False},
    }, git=False)
    shutil.copytree(REPO_ROOT / "tests/data/en_docs", project / "docs")
    run(["git", "init", "-q", "-b", "main"], project)
    run(["dvc", "init", "-q"], project)
    result = run(["dvc", "repro"], project)
    assert ran_every_stage(result.stdout), result.stdout
    chunks = [json.loads(line) for line in (project / "data/corpus/chunks.jsonl").read_text().splitlines()]
    assert {c["language"] for c in chunks} == {"en"} and {c["source"] for c in chunks} == {"custody.md", "margin_lending.md"}
    assert any(c["section"].startswith("Custody of Client Assets > ") for c in chunks)
    test = json.loads((project / "data/questions/test.json").read_text())
    assert test["queries"] and all(q.isascii() for q in test["queries"].values())
    train = json.loads((project / "metrics/train.json").read_text())
    assert train["tokens_added"] == 0  # English is covered by the base vocabulary
    metrics = json.loads((project / "metrics/eval.json").read_text())
    assert metrics["bm25"]["hit@10"] > 0.5 and metrics["base"]["hit@10"] > 0.5
