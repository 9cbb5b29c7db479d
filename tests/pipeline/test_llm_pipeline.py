"""The LLM generator and API embedding rows inside the real pipeline, against the local stub server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import (
    TINY_ZH_PARAMS,
    command_env,
    make_project,
    ran_every_stage,
    run,
    stage_run,
    stages_run,
    update_params,
)
from tests.openai_stub import StubOpenAI

pytestmark = pytest.mark.slow  # runs the pipeline, a stage, a browser or a server: not in `make test-quick`

LLM_PARAMS = {"questions": {"generator": "llm", "llm": {"model": "stub-chat", "concurrency": 2,
                                                        "initial_backoff_s": 0.05}}}


def stub_env(stub: StubOpenAI) -> dict[str, str]:
    return {"OPENAI_API_KEY": stub.api_key, "OPENAI_API_BASE": stub.base_url}


def test_kill_9_then_resume_never_repeats_a_successful_request(tmp_path):
    project = make_project(tmp_path / "p", {**TINY_ZH_PARAMS, **LLM_PARAMS}, git=False)
    for stage in ("sample", "corpus"):
        stage_run(stage, project, check=True)
    n_chunks = len((project / "data/corpus/chunks.jsonl").read_text().splitlines())
    store = project / "data/llm_cache"
    with StubOpenAI(latency=0.1) as stub:
        env = {**command_env(), **stub_env(stub)}
        process = subprocess.Popen([sys.executable, "-m", "stages.questions"], cwd=project, env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while time.time() < deadline and len(list(store.glob("*/*.json"))) < 4:
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        stored_before = len(list(store.glob("*/*.json")))
        assert 4 <= stored_before < n_chunks
        assert not (project / "data/questions/train.json").exists()

        stage_run("questions", project, check=True, extra_env=stub_env(stub))
        assert len(list(store.glob("*/*.json"))) == n_chunks
        assert max(stub.successes_by_prompt.values()) == 1  # nothing that succeeded was paid for twice
        assert sum(stub.successes_by_prompt.values()) == n_chunks
        outputs = {p.name: p.read_bytes() for p in (project / "data/questions").iterdir()}
        metrics = json.loads((project / "metrics/questions.json").read_text())
        assert metrics["llm_requests_from_store"] >= stored_before

        requests_so_far = stub.chat_requests
        stage_run("questions", project, check=True, extra_env=stub_env(stub))
        assert stub.chat_requests == requests_so_far
        assert {p.name: p.read_bytes() for p in (project / "data/questions").iterdir()} == outputs


def test_pipeline_with_llm_and_api_embeddings_keeps_secrets_out(tmp_path, tiny_pipeline):
    params = {**TINY_ZH_PARAMS, **LLM_PARAMS}
    params["evaluate"] = {**TINY_ZH_PARAMS["evaluate"], "api_embedding_models": ["stub-embed"]}
    # Trained as little as it can be (trained twice here): this test is about the paid steps, not the model.
    params["train"] = {**TINY_ZH_PARAMS["train"], "max_pairs": 48, "wise_ft_alphas": [1.0]}
    project = make_project(tmp_path / "p", params)
    with StubOpenAI() as stub:
        first = run(["dvc", "repro"], project, extra_env=stub_env(stub))
        assert ran_every_stage(first.stdout), first.stdout
        metrics = json.loads((project / "metrics/eval.json").read_text())
        assert "api:stub-embed" in metrics and metrics["api:stub-embed"]["hit@10"] > 0
        questions = json.loads((project / "metrics/questions.json").read_text())
        assert questions["llm_requests_sent_this_run"] > 0 and questions["test_queries"] > 0
        # Val and test chunks get the prompt for questions in a user's own words; train chunks the mixed one.
        splits = {json.loads(line)["text"]: json.loads(line)["split"]
                  for line in (project / "data/corpus/chunks.jsonl").read_text(encoding="utf-8").splitlines()}
        for prompt in stub.prompts:
            passage = prompt.split("<passage>\n", 1)[1].split("\n</passage>", 1)[0]
            assert ("没有读过这段内容的真实用户" in prompt) == (splits[passage] != "train")
        # Word overlap is measured for every split; the stand-in's answers ("关于条款…有什么规定？") share fewer words
        # with their passages than the offline generator's template questions on the same chunks (session run).
        offline = json.loads((tiny_pipeline.path / "metrics/questions.json").read_text())
        for split in ("val", "test"):
            assert 0 <= questions[f"{split}_word_overlap"] < offline[f"{split}_word_overlap"]

        chat, embedded = stub.chat_requests, stub.embedded_texts
        update_params(project, {"evaluate": {"rrf_k": 20}, "train": {"learning_rate": 5e-5}})
        again = run(["dvc", "repro"], project, extra_env=stub_env(stub))
        ran = stages_run(again.stdout)
        assert ran[:2] == ["check_params", "train"] and sorted(ran[2:]) == ["evaluate", "export", "model_card"]  # never the paid question step
        assert stub.chat_requests == chat and stub.embedded_texts == embedded  # vectors came from the cache

        secret = stub.api_key.encode()
        assert secret not in (first.stdout + first.stderr + again.stdout + again.stderr).encode()
        leaks = [p for p in project.rglob("*") if p.is_file() and secret in p.read_bytes()]
        assert leaks == []  # not in params, dvc.lock, metrics, outputs, logs or the DVC cache


def test_api_embeddings_without_key_fail_fast(tmp_path):
    project = make_project(tmp_path / "p", {"evaluate": {"api_embedding_models": ["some-model"]}}, git=False)
    (project / "data/questions").mkdir(parents=True)
    (project / "data/questions/test.json").write_text(json.dumps(
        {"queries": {"q": "x"}, "corpus": {"c": "x"}, "relevant_docs": {"q": ["c"]}}))
    result = stage_run("evaluate", project, extra_env={"OPENAI_API_KEY": ""})
    assert result.returncode == 2 and "OPENAI_API_KEY is not set" in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr


def test_embedding_model_from_environment_must_be_set(tmp_path):
    project = make_project(tmp_path / "p", {"evaluate": {"api_embedding_models": ["$EMBEDDING_MODEL"]}}, git=False)
    (project / "data/questions").mkdir(parents=True)
    (project / "data/questions/test.json").write_text(json.dumps(
        {"queries": {"q": "x"}, "corpus": {"c": "x"}, "relevant_docs": {"q": ["c"]}}))
    result = stage_run("evaluate", project, extra_env={"OPENAI_API_KEY": "k", "EMBEDDING_MODEL": ""})
    assert result.returncode == 2 and "EMBEDDING_MODEL is not set" in " ".join(result.stderr.split())
