"""The UI's stale check asks DVC, on a small project whose dvc.lock is written here with DVC's hashes computed
independently (a file: the md5 of its bytes; a folder: the md5 of its sorted file list, plus ``.dir``): nothing is
reproduced, so the check's every message is seen quickly, with and without a ``.dvc/`` folder (a copy of a run)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from stages.lib.ui.run_files import stale_outputs
from tests.helpers import run

PIPELINE = """\
stages:
  corpus:
    cmd: python -c pass
    outs:
      - data/corpus/chunks.jsonl
  evaluate:
    cmd: python -c pass
    deps:
      - stages/evaluate.py
      - models/trained
      - data/corpus/chunks.jsonl
    params:
      - evaluate.rrf_k
    outs:
      - data/embedding_cache:
          persist: true
      - metrics/eval.json:
          cache: false
"""


def md5(path: Path) -> str:
    if path.is_dir():
        entries = [{"md5": md5(p), "relpath": p.relative_to(path).as_posix()} for p in sorted(path.rglob("*")) if p.is_file()]
        return hashlib.md5(json.dumps(entries, sort_keys=True).encode()).hexdigest() + ".dir"
    return hashlib.md5(path.read_bytes()).hexdigest()


def entry(project: Path, relative: str) -> str:
    return f"    - path: {relative}\n      hash: md5\n      md5: {md5(project / relative)}\n"


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


@pytest.fixture(params=["dvc project", "copy without .dvc"])
def project(request, tmp_path, monkeypatch) -> Path:
    """A run as `dvc repro` would have left it: outputs, and a dvc.lock recording their hashes and the params."""
    root = tmp_path / "run"
    write(root / "dvc.yaml", PIPELINE)
    write(root / "params.yaml", "evaluate:\n  rrf_k: 60\n")
    write(root / "stages/evaluate.py", "print('evaluate')\n")
    write(root / "models/trained/config.json", '{"dim": 4}\n')
    write(root / "models/trained/weights/part-1.bin", "0123")
    write(root / "data/corpus/chunks.jsonl", '{"id": "c1", "text": "第一条"}\n')
    write(root / "data/embedding_cache/shard-0.npz", "vectors")
    write(root / "metrics/eval.json", '{"finetuned": {"hit@5": 0.8}}\n')
    write(root / "dvc.lock", "schema: '2.0'\nstages:\n"
          "  corpus:\n    cmd: python -c pass\n    outs:\n" + entry(root, "data/corpus/chunks.jsonl") +
          "  evaluate:\n    cmd: python -c pass\n    deps:\n" + entry(root, "data/corpus/chunks.jsonl") +
          entry(root, "models/trained") + entry(root, "stages/evaluate.py") +
          "    params:\n      params.yaml:\n        evaluate.rrf_k: 60\n"
          "    outs:\n" + entry(root, "data/embedding_cache") + entry(root, "metrics/eval.json"))
    if request.param == "dvc project":
        run(["git", "init", "-q"], root)
        run(["dvc", "init", "-q"], root)
    monkeypatch.chdir(root)
    return root


def messages(problems) -> list[tuple[str, str | None, str]]:
    return [(p.kind, p.stage, p.message) for p in problems]


def test_a_run_as_recorded_has_no_stale_output(project):
    assert messages(stale_outputs()) == []


def test_edits_since_the_run_are_named_with_the_stage_to_rerun(project):
    (project / "metrics/eval.json").write_text('{"finetuned": {"hit@5": 0.999}}\n', encoding="utf-8")
    (project / "models/trained/weights/part-1.bin").write_text("0124", encoding="utf-8")
    (project / "params.yaml").write_text("evaluate:\n  rrf_k: 30\n", encoding="utf-8")
    (project / "stages/evaluate.py").write_text("print('edited')\n", encoding="utf-8")  # code: dvc status's business
    (project / "data/embedding_cache/shard-1.npz").write_text("more", encoding="utf-8")  # persistent: grows by itself
    [(kind, stage, message)] = messages(stale_outputs())
    assert (kind, stage) == ("stale", "evaluate")
    assert message == ("Stage 'evaluate' is out of date: params.yaml has evaluate.rrf_k: 30, it ran with 60; its input "
                       "models/trained is not the one it ran on; metrics/eval.json is not what it wrote. What the page "
                       "shows from it may not match the files here: run `dvc repro evaluate`.")


def test_a_missing_input_is_named_and_a_missing_output_left_to_the_views(project):
    import shutil

    shutil.rmtree(project / "models/trained")
    (project / "data/corpus/chunks.jsonl").unlink()
    problems = {p.stage: p.message for p in stale_outputs()}
    assert list(problems) == ["evaluate"]  # corpus's own output is missing, which the page reports as missing
    assert "its input data/corpus/chunks.jsonl is missing; its input models/trained is missing." in problems["evaluate"]


def test_a_stage_without_a_record_and_an_unreadable_lock_are_said(project):
    lock = (project / "dvc.lock").read_text(encoding="utf-8")
    (project / "dvc.lock").write_text(lock[:lock.index("  evaluate:")], encoding="utf-8")
    [(kind, stage, message)] = messages(stale_outputs())
    assert (kind, stage) == ("stale", "evaluate") and "dvc.lock has no record of stage 'evaluate'" in message
    (project / "dvc.lock").write_text("<<<<<<< HEAD\n" + lock, encoding="utf-8")
    [(kind, stage, message)] = messages(stale_outputs())
    assert kind == "invalid" and "cannot be read" in message and "merge conflict" in message
    (project / "dvc.lock").unlink()
    [(kind, stage, message)] = messages(stale_outputs())
    assert kind == "note" and message.startswith("There is no dvc.lock here")
