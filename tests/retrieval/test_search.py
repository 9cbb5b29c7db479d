"""`python -m stages.search`: every retriever's top results side by side, labels marked, nothing changed."""

import json
import re
import shutil

import pytest

from stages.lib.common.files import read_json
from tests.helpers import copy_project, run, stage_run

pytestmark = pytest.mark.slow  # runs the pipeline, a stage, a browser or a server: not in `make test-quick`


def _search(project, *args):
    return run(["python", "-m", "stages.search", *args], project, check=False)


def test_a_question_from_the_test_split_shows_every_retriever_and_its_label(tiny_pipeline):
    project = tiny_pipeline.path
    test = read_json(project / "data/questions/test.json")
    qid, question = next(iter(test["queries"].items()))
    result = _search(project, "--k", "3", question)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.startswith("rank "))
    assert header.split() == ["rank", "base", "finetuned", "bm25", "hybrid"]
    ranks = [line for line in lines if re.match(r"^[1-3] ", line)]
    assert [line.split()[0] for line in ranks] == ["1", "2", "3"]
    assert "from the synthetic test split" in result.stdout
    summary = next(line for line in lines if line.startswith("first labelled chunk at rank:"))
    # The mark agrees with where evaluate found the labelled chunk for the fine-tuned model.
    rows = (json.loads(line) for line in (project / "data/eval/per_query.jsonl").open(encoding="utf-8"))
    per_query = [row for row in rows if row["set"] == "test" and row["id"] == qid]
    if per_query and per_query[0]["finetuned_rank"] is not None:
        assert f"finetuned {per_query[0]['finetuned_rank']}" in summary
    # Reading only: the workspace and the pipeline stay as they were.
    assert run(["git", "status", "--porcelain"], project).stdout == ""
    assert "up to date" in run(["dvc", "status"], project).stdout


def test_a_free_question_and_a_missing_model(tiny_pipeline, tmp_path):
    result = _search(tiny_pipeline.path, "这个问题不在任何问题集里吗")
    assert result.returncode == 0, result.stderr
    assert "labelled" not in result.stdout
    assert len([line for line in result.stdout.splitlines() if re.match(r"^[1-5] ", line)]) == 5
    project = copy_project(tiny_pipeline.path, tmp_path / "project")
    shutil.rmtree(project / "models/trained")
    missing = _search(project, "证券")
    assert missing.returncode != 0
    assert "models/trained is missing: run `dvc repro train`" in missing.stderr
    assert "Traceback" not in missing.stderr
    assert stage_run("search", project).returncode != 0  # no query: argparse's usage message
