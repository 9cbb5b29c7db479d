"""Concurrent, retrying, resumable chat requests to any OpenAI-compatible endpoint.

Requests go through llama-index's OpenAI-like LLM integration with the client's
own retries off: this module owns the retry policy (exponential back-off with
jitter, ``Retry-After`` honoured, retry on 429/5xx/timeouts/connection errors,
immediate stop on 400/401/403/404) and stores each success at once.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from stages.lib.common.endpoint import Endpoint
from stages.lib.common.errors import UserError
from stages.lib.questions.response_store import ResponseStore


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    initial_backoff_s: float
    max_backoff_s: float

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_backoff_s)
        base = min(self.max_backoff_s, self.initial_backoff_s * 2 ** (attempt - 1))
        return base * rng.uniform(0.5, 1.5)


@dataclass
class Progress:
    done: int = 0
    cached: int = 0
    failed: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


class FatalRequestError(Exception):
    """An answer that retrying cannot fix (bad key, unknown model, wrong URL, bad request)."""


def _retry_after_seconds(error: Exception) -> float | None:
    response = getattr(error, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def classify(error: Exception) -> str:
    """'retry' or 'fatal' for an exception raised by the OpenAI client."""
    import openai

    transient = (openai.APITimeoutError, openai.APIConnectionError, openai.APIResponseValidationError,
                 asyncio.TimeoutError, json.JSONDecodeError)  # a garbled body is a glitch, not a verdict
    if isinstance(error, transient):
        return "retry"
    if isinstance(error, openai.APIStatusError):
        return "retry" if error.status_code in (408, 409, 429) or error.status_code >= 500 else "fatal"
    return "fatal"


def describe_fatal(error: Exception, endpoint: Endpoint, model: str) -> str:
    import openai

    status = getattr(error, "status_code", None)
    hint = {
        401: "the API key was rejected: check OPENAI_API_KEY",
        403: (f"the key in OPENAI_API_KEY may not use the model {model!r} or this endpoint: check the key's "
              "permissions, the model name (params.yaml 'questions.llm.model' or LLM_MODEL) and OPENAI_API_BASE"),
        404: f"the model {model!r} or the URL is unknown: check the model name and OPENAI_API_BASE",
        400: (f"the request was refused: check the model name {model!r} (params.yaml 'questions.llm.model' or "
              "LLM_MODEL) and the other params under 'questions.llm' (max_tokens, temperature)"),
    }.get(status or 0, "the endpoint refused the request")
    detail = str(getattr(error, "message", "") or error)
    if isinstance(error, openai.APIStatusError):
        detail = f"HTTP {status}: {detail}"
    return f"LLM endpoint {endpoint.api_base} ({detail}): {hint}. Stopped before sending more requests."


def make_llm(endpoint: Endpoint, model: str, temperature: float, max_tokens: int, timeout_s: float,
             client_retries: bool = False):
    """The OpenAI-like LLM; with ``client_retries`` the client keeps its own default retry policy (as a
    user of the seed's recipe would have it), else this module's retry loop is the only one."""
    from llama_index.llms.openai_like import OpenAILike

    retries = {} if client_retries else {"max_retries": 0}
    return OpenAILike(
        model=model, api_base=endpoint.api_base, api_key=endpoint.api_key, is_chat_model=True,
        temperature=temperature, max_tokens=max_tokens, timeout=timeout_s, context_window=32768, **retries,
    )


async def _one(llm, prompt: str, key: str, store: ResponseStore, policy: RetryPolicy, progress: Progress,
               semaphore: asyncio.Semaphore, rng: random.Random, stop: asyncio.Event) -> dict | None:
    from llama_index.core.llms import ChatMessage

    async with semaphore:
        for attempt in range(1, policy.max_attempts + 1):
            if stop.is_set():
                return None
            try:
                response = await llm.achat([ChatMessage(role="user", content=prompt)])
            except Exception as error:  # noqa: BLE001 - classified below
                if classify(error) == "fatal":
                    stop.set()
                    raise FatalRequestError() from error
                if attempt == policy.max_attempts:
                    progress.failed += 1
                    return None
                progress.retries += 1
                await asyncio.sleep(policy.delay(attempt, _retry_after_seconds(error), rng))
                continue
            usage = getattr(getattr(response, "raw", None), "usage", None)
            record = {
                "content": response.message.content or "",
                "prompt_tokens": int(getattr(usage, "prompt_tokens", 0) or 0),
                "completion_tokens": int(getattr(usage, "completion_tokens", 0) or 0),
            }
            # fsync'ed file write: off the event loop, so other answers keep flowing.
            await asyncio.to_thread(store.put, key, record)
            progress.done += 1
            progress.prompt_tokens += record["prompt_tokens"]
            progress.completion_tokens += record["completion_tokens"]
            return record
    return None


def run_requests(
    requests: dict[str, str], store: ResponseStore, llm_factory: Callable[[], object], concurrency: int,
    policy: RetryPolicy, endpoint: Endpoint, model: str, seed: int = 0, show_progress: bool = True,
) -> tuple[dict[str, dict], Progress]:
    """Answer every ``key -> prompt``: stored answers are reused, the rest are requested concurrently."""
    from tqdm import tqdm

    progress = Progress()
    results: dict[str, dict] = {}
    pending: dict[str, str] = {}
    for key, prompt in requests.items():
        stored = store.get(key)
        if stored is not None:
            results[key] = stored
            progress.cached += 1
        else:
            pending[key] = prompt

    async def main() -> None:
        llm = llm_factory()
        semaphore = asyncio.Semaphore(concurrency)
        stop = asyncio.Event()
        rng = random.Random(seed)
        bar = tqdm(total=len(requests), initial=progress.cached, disable=not show_progress, desc="LLM questions")

        def refresh() -> None:
            bar.n = progress.cached + progress.done + progress.failed
            bar.set_postfix(done=progress.done, cached=progress.cached, failed=progress.failed,
                            retries=progress.retries, tokens=progress.prompt_tokens + progress.completion_tokens)

        async def tracked(key: str, prompt: str) -> None:
            record = await _one(llm, prompt, key, store, policy, progress, semaphore, rng, stop)
            if record is not None:
                results[key] = record
            refresh()

        tasks = [asyncio.create_task(tracked(k, p)) for k, p in pending.items()]
        try:
            for finished in asyncio.as_completed(tasks):
                await finished
        except FatalRequestError as error:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise UserError(describe_fatal(error.__cause__, endpoint, model)) from None
        finally:
            refresh()
            bar.close()
            # Close the HTTP client inside the loop it belongs to; left to the garbage
            # collector it would complain after asyncio.run() has closed the loop.
            client = getattr(llm, "_aclient", None)
            if client is not None:
                await client.close()

    if pending:
        asyncio.run(main())
    return results, progress
