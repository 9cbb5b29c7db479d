"""The LLM generator against a real local OpenAI-compatible HTTP server (tests/openai_stub.py)."""

from __future__ import annotations

import email.utils
import random
import time
from collections import Counter

import pytest

from stages.lib.common.errors import UserError
from stages.lib.documents.chunking import Chunk
from stages.lib.questions.llm import generate_with_llm
from stages.lib.questions.llm_client import RetryPolicy
from stages.lib.questions.llm_prompts import (
    EVAL_PROMPT_VERSION,
    PROMPT_VERSION,
    build_prompt,
    copied_fraction,
    filter_questions,
    parse_questions,
    prompt_version,
)
from tests.helpers import repository_params
from tests.openai_stub import Scripted

CHUNKS = [
    Chunk(f"c{i}", f"第{i}条 证券公司应当妥善保存客户的交易记录，保存期限不得少于{i + 20}年。", "law.pdf",
          ("train", "val", "test")[i % 3], "zh", "第六章 证券公司", i, 40)
    for i in range(12)
] + [Chunk("e1", "A broker shall keep a record of every margin loan for five years.", "guide.md", "train", "en", "", 0, 14)]
FAST = repository_params().questions.llm.model_copy(
    update={"concurrency": 4, "initial_backoff_s": 0.05, "max_backoff_s": 2.0, "timeout_s": 5.0, "max_attempts": 4})


def generate(tmp_path, params=FAST, chunks=CHUNKS):
    return generate_with_llm(chunks, params, "stub-model", tmp_path / "store", 120, show_progress=False)


def test_parse_json_fenced_and_chatty_answers():
    assert parse_questions('{"questions": [{"style": "keywords", "text": "保荐 期限"}]}') == [("keywords", "保荐 期限")]
    fenced = 'Sure! Here you go:\n```json\n{"questions": [{"style": "scenario", "text": "我的券商倒闭了怎么办？"}]}\n```'
    assert parse_questions(fenced) == [("scenario", "我的券商倒闭了怎么办？")]
    chatty = "以下是两个问题：\n1. 证券公司要保存交易记录多久？\n2、[关键词] 交易记录 保存期限\n"
    assert parse_questions(chatty) == [("question", "证券公司要保存交易记录多久？"), ("keywords", "交易记录 保存期限")]
    assert parse_questions("Here are two questions:\n- How long must records be kept?\n") == [
        ("question", "How long must records be kept?")]


def test_filter_drops_with_reasons():
    passage = "证券公司应当妥善保存客户的交易记录，保存期限不得少于二十年。"
    drops: Counter = Counter()
    kept = filter_questions(
        [("question", "券商要保存交易记录多久？"), ("question", "券商要保存交易记录多久？"), ("question", " "),
         ("question", "x" * 200), ("question", "证券公司应当妥善保存客户的交易记录")],
        passage, 120, 0.6, set(), drops)
    assert kept == [("question", "券商要保存交易记录多久？")]
    assert drops == Counter(duplicate=1, empty=1, too_long=1, copies_passage=1)
    assert copied_fraction("证券公司应当妥善保存客户的交易记录", passage) == 1.0


def test_prompt_language_follows_the_chunk():
    assert "真实用户" in build_prompt(CHUNKS[0], 3) and "3 个" in build_prompt(CHUNKS[0], 3)
    assert "real users" in build_prompt(CHUNKS[-1], 2)


def test_val_and_test_chunks_ask_for_questions_in_a_users_words_under_their_own_prompt_version():
    train, val, test = CHUNKS[0], CHUNKS[1], CHUNKS[2]
    assert "没有读过这段内容" in build_prompt(val, 2) and "不要使用这段内容里的专业术语" in build_prompt(test, 2)
    assert "没有读过" not in build_prompt(train, 4) and "关键词" in build_prompt(train, 4)  # training mixes styles
    english_val = Chunk("e2", CHUNKS[-1].text, "guide.md", "val", "en", "", 1, 14)
    assert "have NOT read this passage" in build_prompt(english_val, 2)
    # Separate versions: a new evaluation prompt never invalidates the stored (paid) training answers.
    assert prompt_version(train) == PROMPT_VERSION != prompt_version(val) == prompt_version(test) == EVAL_PROMPT_VERSION


@pytest.mark.slow
def test_happy_path_then_rerun_sends_nothing(stub, tmp_path):
    first = generate(tmp_path)
    assert stub.chat_requests == len(CHUNKS) and stub.max_in_flight <= FAST.concurrency
    assert first.stats["llm_requests_sent_this_run"] == len(CHUNKS) and first.stats["llm_prompt_tokens"] > 0
    assert {q.chunk_id for q in first.queries["test"]} == {c.id for c in CHUNKS if c.split == "test"}
    assert all(len([q for q in first.queries["train"] if q.chunk_id == c.id]) == 4
               for c in CHUNKS if c.split == "train")
    second = generate(tmp_path)
    assert stub.chat_requests == len(CHUNKS)  # nothing re-sent
    assert second.queries == first.queries and second.stats["llm_requests_from_store"] == len(CHUNKS)


@pytest.mark.slow
def test_rate_limit_honours_retry_after(stub, tmp_path):
    stub.script = [Scripted(429, raw_body='{"error": {"message": "rate limited"}}', headers={"Retry-After": "1"})]
    started = time.perf_counter()
    run = generate(tmp_path, chunks=CHUNKS[:1])
    assert time.perf_counter() - started >= 1.0  # waited as told, not the 0.05 s back-off
    assert run.stats["llm_retries_this_run"] == 1 and stub.chat_requests == 2


@pytest.mark.slow
def test_server_errors_and_timeouts_are_retried(stub, tmp_path):
    stub.script = [Scripted(500, raw_body="{}"), Scripted(503, raw_body="{}"), Scripted(delay=3.0)]
    run = generate(tmp_path, params=FAST.model_copy(update={"timeout_s": 1.0, "concurrency": 1}), chunks=CHUNKS[:2])
    assert run.stats["llm_retries_this_run"] == 3
    assert len(run.queries["train"]) + len(run.queries.get("val", [])) > 0


@pytest.mark.slow
def test_malformed_and_chatty_content(stub, tmp_path):
    stub.script = [Scripted(content="Sure! Here are the questions:\n1. 证券公司的交易记录要保存几年？\n2. 交易记录 保存"),
                   Scripted(status=200, raw_body="this is not json")]
    run = generate(tmp_path, params=FAST.model_copy(update={"concurrency": 1}), chunks=CHUNKS[:2])
    texts = [q.text for qs in run.queries.values() for q in qs]
    assert "证券公司的交易记录要保存几年？" in texts and "Sure! Here are the questions:" not in texts
    assert run.stats["llm_retries_this_run"] == 1  # the malformed body was retried


@pytest.mark.slow
def test_exhausted_retries_keep_what_succeeded(stub, tmp_path):
    stub.script = [Scripted(500, raw_body="{}")] * 2
    params = FAST.model_copy(update={"max_attempts": 2, "concurrency": 1})
    with pytest.raises(UserError, match="1 of 3 LLM requests still failed"):
        generate(tmp_path, params=params, chunks=CHUNKS[:3])
    sent = stub.chat_requests
    run = generate(tmp_path, params=params, chunks=CHUNKS[:3])
    assert stub.chat_requests == sent + 1 and run.stats["llm_requests_from_store"] == 2


@pytest.mark.slow
def test_bad_key_stops_at_once_without_leaking_it(stub, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong-key-that-must-not-leak-000000")
    with pytest.raises(UserError) as caught:
        generate(tmp_path)
    message = str(caught.value)
    assert "401" in message and "OPENAI_API_KEY" in message and "sk-wrong" not in message
    assert stub.chat_requests <= FAST.concurrency  # no retries, no further requests


def test_missing_key_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.chdir(tmp_path)  # no .env here
    with pytest.raises(UserError, match="OPENAI_API_KEY is not set"):
        generate(tmp_path)


@pytest.mark.slow
def test_unknown_model_stops_at_once(stub, tmp_path):
    not_found = '{"error": {"message": "The model `nope` does not exist", "code": "model_not_found"}}'
    stub.script = [Scripted(404, raw_body=not_found)] * 50
    with pytest.raises(UserError) as caught:
        generate(tmp_path, params=FAST.model_copy(update={"concurrency": 1}))
    assert "404" in str(caught.value) and "stub-model" in str(caught.value)
    assert stub.chat_requests == 1


@pytest.mark.slow
@pytest.mark.parametrize(("status", "setting"), [(400, "questions.llm"), (403, "OPENAI_API_KEY")])
def test_refused_requests_stop_after_one_request_and_name_the_setting(stub, tmp_path, status, setting):
    body = f'{{"error": {{"message": "refused with {status}"}}}}'
    stub.script = [Scripted(status, raw_body=body)] * 50
    with pytest.raises(UserError) as caught:
        generate(tmp_path, params=FAST.model_copy(update={"concurrency": 1}))
    message = str(caught.value)
    assert f"HTTP {status}" in message and setting in message and "stub-model" in message
    assert stub.api_key not in message
    assert stub.chat_requests == 1  # no retry, nothing sent after it


@pytest.mark.slow
def test_retry_after_as_an_http_date_is_honoured(stub, tmp_path):
    when = email.utils.formatdate(time.time() + 2, usegmt=True)  # whole seconds: a wait of 1 to 2 s
    stub.script = [Scripted(429, raw_body='{"error": {"message": "slow down"}}', headers={"Retry-After": when})]
    started = time.perf_counter()
    run = generate(tmp_path, chunks=CHUNKS[:1])
    assert time.perf_counter() - started >= 0.9
    assert run.stats["llm_retries_this_run"] == 1 and stub.chat_requests == 2


@pytest.mark.slow
def test_a_very_long_retry_after_is_capped_at_the_longest_back_off(stub, tmp_path):
    policy = RetryPolicy(max_attempts=4, initial_backoff_s=0.05, max_backoff_s=2.0)
    assert policy.delay(1, retry_after=3600.0, rng=random.Random(0)) == 2.0
    assert policy.delay(1, retry_after=0.5, rng=random.Random(0)) == 0.5
    # Through the real client: an hour asked for, the cap (max_backoff_s = 2 s) waited instead.
    stub.script = [Scripted(429, raw_body='{"error": {"message": "come back later"}}', headers={"Retry-After": "3600"})]
    started = time.perf_counter()
    run = generate(tmp_path, chunks=CHUNKS[:1])
    waited = time.perf_counter() - started
    assert 1.9 <= waited < 60, waited
    assert run.stats["llm_retries_this_run"] == 1 and stub.chat_requests == 2
