"""Extra training documents through the real stages: they add training questions and nothing else.

sample -> corpus -> questions with one extra law: its chunks are train-only, sit in train.json's corpus
and in no other file the evaluation reads, and the target corpus's own chunks and questions are exactly
what they are without the extra law.
"""

from __future__ import annotations

import json

import pytest

from tests.helpers import TINY_ZH_PARAMS, make_project, stage_run, update_params

pytestmark = pytest.mark.slow  # runs the pipeline, a stage, a browser or a server: not in `make test-quick`

EXTRA_LAW = "反分裂国家法"


def _run(project, *stages):
    for stage in stages:
        result = stage_run(stage, project)
        assert result.returncode == 0, result.stdout + result.stderr


def _read(project, relative):
    path = project / relative
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def projects(tmp_path_factory):
    root = tmp_path_factory.mktemp("extra")
    plain = make_project(root / "plain", TINY_ZH_PARAMS, git=False)
    with_extra = make_project(root / "with_extra", TINY_ZH_PARAMS, git=False)
    update_params(with_extra, {"sample": {"extra_laws": [EXTRA_LAW]}})
    for project in (plain, with_extra):
        _run(project, "sample", "corpus", "questions")
    return plain, with_extra


def test_extra_law_is_rendered_apart_from_the_target(projects):
    plain, with_extra = projects
    assert sorted(p.name for p in (with_extra / "data/sample_extra").glob("*.pdf")) == [f"{EXTRA_LAW}.pdf"]
    assert not list((plain / "data/sample_extra").glob("*.pdf"))
    assert sorted(p.name for p in (with_extra / "data/sample").iterdir()) == sorted(p.name for p in (plain / "data/sample").iterdir())


def test_extra_chunks_never_reach_the_evaluated_corpus(projects):
    plain, with_extra = projects
    chunks = _read(with_extra, "data/corpus/chunks.jsonl")
    extra = _read(with_extra, "data/corpus/extra_chunks.jsonl")
    assert extra and _read(plain, "data/corpus/extra_chunks.jsonl") == []
    assert {c["split"] for c in extra} == {"train"} and all(c["source"].startswith("extra/") for c in extra)
    # The target corpus, its split and its val/test questions are byte for byte what they are without extras.
    assert chunks == _read(plain, "data/corpus/chunks.jsonl")
    for split in ("val", "test"):
        assert (with_extra / f"data/questions/{split}.json").read_bytes() == (plain / f"data/questions/{split}.json").read_bytes()
    extra_ids = {c["id"] for c in extra}
    for split in ("val", "test"):
        dataset = _read(with_extra, f"data/questions/{split}.json")
        assert not extra_ids & set(dataset["corpus"])
        assert not extra_ids & {doc for docs in dataset["relevant_docs"].values() for doc in docs}


def test_extra_chunks_add_training_questions_only(projects):
    plain, with_extra = projects
    train, plain_train = _read(with_extra, "data/questions/train.json"), _read(plain, "data/questions/train.json")
    extra_ids = {c["id"] for c in _read(with_extra, "data/corpus/extra_chunks.jsonl")}
    assert extra_ids <= set(train["corpus"])
    about_extra = [q for q, docs in train["relevant_docs"].items() if set(docs) <= extra_ids]
    assert about_extra
    # Every training question of the plain run is still there, about the same chunks.
    for query_id, docs in plain_train["relevant_docs"].items():
        assert train["relevant_docs"][query_id][: len(docs)] == docs
    metrics = _read(with_extra, "metrics/questions.json")
    assert metrics["train_queries_from_extra_documents"] == len(about_extra)
    assert metrics["train_queries"] == len(plain_train["queries"]) + len(about_extra)
    corpus_metrics = _read(with_extra, "metrics/corpus.json")
    assert corpus_metrics["extra_documents"] == 1 and corpus_metrics["extra_chunks"] == len(extra_ids)
