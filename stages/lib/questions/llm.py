"""The LLM question generator: chunks -> prompts -> stored answers -> filtered queries."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from stages.lib.common.endpoint import load_endpoint
from stages.lib.common.errors import UserError
from stages.lib.common.params import LLMParams
from stages.lib.documents.chunking import Chunk
from stages.lib.questions.llm_client import RetryPolicy, make_llm, run_requests
from stages.lib.questions.llm_prompts import build_prompt, filter_questions, parse_questions, prompt_version
from stages.lib.questions.qa_dataset import GeneratedQuery
from stages.lib.questions.response_store import ResponseStore, request_key


@dataclass
class LLMRun:
    queries: dict[str, list[GeneratedQuery]]  # split -> queries
    stats: dict[str, float] = field(default_factory=dict)


def chunk_requests(chunks: list[Chunk], params: LLMParams, model: str) -> dict[str, tuple[str, str]]:
    """chunk id -> (response key, prompt). The key covers everything that determines the answer."""
    out = {}
    for chunk in chunks:
        n = params.train_questions_per_chunk if chunk.split == "train" else params.eval_questions_per_chunk
        prompt = build_prompt(chunk, n)
        key = request_key(model=model, prompt_version=prompt_version(chunk), prompt=prompt,
                          temperature=params.temperature, max_tokens=params.max_tokens)
        out[chunk.id] = (key, prompt)
    return out


def generate_with_llm(
    chunks: list[Chunk], params: LLMParams, model: str, store_dir: Path, max_query_chars: int,
    show_progress: bool = True,
) -> LLMRun:
    endpoint = load_endpoint("questions.generator = 'llm'")
    requests = chunk_requests(chunks, params, model)
    policy = RetryPolicy(params.max_attempts, params.initial_backoff_s, params.max_backoff_s)
    answers, progress = run_requests(
        {key: prompt for key, prompt in requests.values()},
        ResponseStore(store_dir),
        lambda: make_llm(endpoint, model, params.temperature, params.max_tokens, params.timeout_s),
        params.concurrency, policy, endpoint, model, show_progress=show_progress,
    )
    missing = [cid for cid, (key, _) in requests.items() if key not in answers]
    if missing:
        raise UserError(
            f"{len(missing)} of {len(requests)} LLM requests still failed after {params.max_attempts} attempts "
            f"(timeouts, rate limits or server errors); the {len(answers)} answers received are stored in "
            f"{store_dir}/. Run `dvc repro` again to retry only the missing ones, or raise "
            "'questions.llm.max_attempts' / 'questions.llm.timeout_s'."
        )
    drops: Counter[str] = Counter()
    seen: dict[str, set[str]] = {}
    by_split: dict[str, list[GeneratedQuery]] = {}
    for chunk in chunks:
        key, _ = requests[chunk.id]
        parsed = parse_questions(answers[key]["content"])
        if not parsed:
            drops["unparseable_answer"] += 1
        kept = filter_questions(parsed, chunk.text, max_query_chars, params.max_copy_fraction,
                                seen.setdefault(chunk.split, set()), drops)
        by_split.setdefault(chunk.split, []).extend(GeneratedQuery(text, style, chunk.id) for style, text in kept)
    prompt_tokens = sum(answers[key]["prompt_tokens"] for key, _ in requests.values())
    completion_tokens = sum(answers[key]["completion_tokens"] for key, _ in requests.values())
    cost = (prompt_tokens * params.price_per_million_input_tokens
            + completion_tokens * params.price_per_million_output_tokens) / 1e6
    stats = {
        "llm_requests": len(requests),
        "llm_requests_sent_this_run": progress.done,
        "llm_requests_from_store": progress.cached,
        "llm_retries_this_run": progress.retries,
        "llm_prompt_tokens": prompt_tokens,
        "llm_completion_tokens": completion_tokens,
        "llm_cost": round(cost, 6),
        **{f"llm_dropped_{reason}": count for reason, count in sorted(drops.items())},
    }
    return LLMRun(by_split, stats)
