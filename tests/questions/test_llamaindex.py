"""The seed's generator (LlamaIndex's generate_qa_embedding_pairs) against the local OpenAI-compatible server."""

from __future__ import annotations

import json
import re

import pytest

from stages.lib.common.errors import UserError
from stages.lib.questions.llamaindex import SEED_QUESTIONS_PER_CHUNK, generate_with_llamaindex, progress_file
from stages.lib.questions.qa_dataset import build_dataset
from tests.helpers import TINY_ZH_PARAMS, make_project, repository_params, stage_run
from tests.openai_stub import Scripted, StubOpenAI
from tests.questions.test_llm import CHUNKS

pytestmark = pytest.mark.slow  # runs the pipeline, a stage, a browser or a server: not in `make test-quick`

PARAMS = repository_params().questions.llm.model_copy(update={"timeout_s": 5.0})


def _generate(tmp_path):
    return generate_with_llamaindex(CHUNKS, PARAMS, "stub-model", tmp_path / "store")


def test_the_seed_function_writes_our_format_with_stable_ids_and_resumes_from_its_file(stub, tmp_path):
    first = _generate(tmp_path)
    assert stub.chat_requests == len(CHUNKS)  # one request per chunk, its default prompt
    corpus = {c.id: c.text for c in CHUNKS}
    for split in ("train", "val", "test"):
        chunks = {c.id for c in CHUNKS if c.split == split}
        queries = first.queries[split]
        assert {q.chunk_id for q in queries} == chunks  # each split from its own chunks: no leak
        assert len(queries) == SEED_QUESTIONS_PER_CHUNK * len(chunks)
        dataset = build_dataset(queries, corpus)
        assert all(re.fullmatch(r"q[0-9a-f]{15}", qid) for qid in dataset.queries)  # ours, not uuid4
    assert first.stats["llm_requests_sent_this_run"] == len(CHUNKS)
    second = _generate(tmp_path)
    assert stub.chat_requests == len(CHUNKS)  # everything from the function's own progress files
    assert second.queries == first.queries and second.stats["llm_requests_from_store"] == len(CHUNKS)


def test_a_failing_chunk_stops_the_stage_and_the_rerun_sends_only_the_rest(stub, tmp_path):
    n_train = sum(c.split == "train" for c in CHUNKS)
    # Three answers, then one chunk fails the function's three attempts (a 400: the client does not retry it).
    stub.script = [Scripted()] * 3 + [Scripted(400, raw_body='{"error": {"message": "refused"}}')] * 3
    with pytest.raises(UserError) as caught:
        _generate(tmp_path)
    message = str(caught.value)
    assert "train split" in message and "resumes" in message and stub.api_key not in message
    assert stub.chat_requests == 6
    kept = json.loads(progress_file(tmp_path / "store", "train", "stub-model", PARAMS).read_text())
    assert len(kept["corpus"]) == 3  # saved after every chunk: nothing paid for is lost
    run = _generate(tmp_path)
    assert stub.chat_requests == 6 + (len(CHUNKS) - 3)  # the three stored chunks are not asked again
    assert run.stats["llm_requests_from_store"] == 3 and len(run.queries["train"]) == 2 * n_train


def test_a_bad_key_fails_with_a_message_that_does_not_hold_it(stub, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong-key-that-must-not-leak-111111")
    with pytest.raises(UserError) as caught:
        _generate(tmp_path)
    assert "OPENAI_API_KEY" in str(caught.value) and "sk-wrong" not in str(caught.value)
    assert stub.chat_requests == 0  # the stub counts only requests that carry its key


def test_the_questions_stage_reruns_byte_identically(tmp_path):
    params = {**TINY_ZH_PARAMS, "questions": {"generator": "llamaindex", "llm": {"model": "stub-chat"}}}
    project = make_project(tmp_path / "p", params, git=False)
    for stage in ("sample", "corpus"):
        stage_run(stage, project, check=True)
    with StubOpenAI() as stub:
        env = {"OPENAI_API_KEY": stub.api_key, "OPENAI_API_BASE": stub.base_url}
        stage_run("questions", project, check=True, extra_env=env)
        first = {p.name: p.read_bytes() for p in (project / "data/questions").iterdir()}
        sent = stub.chat_requests
        (project / "data/questions/train.json").unlink()
        stage_run("questions", project, check=True, extra_env=env)
        assert stub.chat_requests == sent
    assert {p.name: p.read_bytes() for p in (project / "data/questions").iterdir()} == first
    train = json.loads(first["train.json"])
    assert train["queries"] and set(train["query_styles"].values()) == {"question"}
