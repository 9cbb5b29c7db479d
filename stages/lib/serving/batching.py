"""Coalesce the texts of concurrent requests into one encoder call per role.

Requests wait in a bounded queue. One worker task takes the first waiting request, then gathers whatever
else arrives within ``max_wait_ms`` (or is already waiting, which is what happens under load) up to
``max_batch_texts`` texts, and hands them to a single worker thread, one call per role (queries first:
they are short and their clients wait on them): there it counts every text's tokens, refuses the
requests that hold a text above ``max_tokens``, and encodes the rest in one encoder call. The event
loop keeps accepting connections meanwhile; each request gets its own rows back.

The encoder is only ever called from that one thread, so its implementations need not be thread-safe
(a Hugging Face fast tokenizer, for one, is not).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from stages.lib.serving.encoders import QUERY, ROLES, Encoder

log = logging.getLogger("stages.serve")


class Overloaded(Exception):
    """The queue is full: the caller should answer 503 and the client retry later."""


class TooManyTokens(Exception):
    def __init__(self, index: int, tokens: int, limit: int) -> None:
        super().__init__(f"input[{index}] is {tokens} tokens, above {limit}")
        self.index, self.tokens, self.limit = index, tokens, limit


@dataclass(frozen=True)
class Embedded:
    vectors: np.ndarray  # one float32 row per text of the request
    tokens: list[int]  # per text, prompt and special tokens included, before truncation


@dataclass
class _Job:
    texts: Sequence[str]
    role: str
    future: asyncio.Future = field(repr=False)


class Batcher:
    def __init__(self, encoder: Encoder, max_batch_texts: int = 256, max_wait_ms: float = 5.0, max_queue: int = 1024,
                 max_tokens: int = 8192) -> None:
        self.encoder = encoder
        self.max_batch_texts, self.max_wait_s = max_batch_texts, max_wait_ms / 1000
        self.max_queue, self.max_tokens = max_queue, max_tokens
        self.encoder_calls = 0  # batches the encoder has run (reported by /health)
        self._queue: asyncio.Queue[_Job] | None = None
        self._task: asyncio.Task | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="encoder")

    async def start(self) -> None:
        self._queue = asyncio.Queue(maxsize=self.max_queue)
        self._task = asyncio.create_task(self._run(), name="batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._thread.shutdown(wait=True)

    @property
    def waiting(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    async def embed(self, texts: Sequence[str], role: str) -> Embedded:
        """The request's vectors; raises ``Overloaded``, ``TooManyTokens``, or whatever the encoder raised."""
        job = _Job(texts, role, asyncio.get_running_loop().create_future())
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            raise Overloaded(f"{self.max_queue} requests are already waiting") from None
        return await job.future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        carried: _Job | None = None  # the request that did not fit into the previous batch
        while True:
            first = carried or await self._queue.get()
            carried = None
            jobs, size = [first], len(first.texts)
            deadline = loop.time() + self.max_wait_s
            while size < self.max_batch_texts:
                try:
                    job = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        job = await asyncio.wait_for(self._queue.get(), remaining)
                    except TimeoutError:
                        break
                if size + len(job.texts) > self.max_batch_texts:
                    carried = job
                    break
                jobs.append(job)
                size += len(job.texts)
            # One encoder call per role, queries first: they are short, and their clients wait on them.
            for role in ROLES:
                chosen = [job for job in jobs if job.role == role and not job.future.done()]  # gone: cancelled
                if chosen:
                    await self._encode_and_answer(chosen, role)

    async def _encode_and_answer(self, jobs: list[_Job], role: str) -> None:
        try:
            outcomes = await asyncio.get_running_loop().run_in_executor(self._thread, self._encode, jobs, role)
        except Exception as error:  # the model itself failed: this batch's requests fail, the server goes on
            log.exception("encoding a batch of %d requests failed", len(jobs))
            outcomes = [error] * len(jobs)
        for job, outcome in zip(jobs, outcomes, strict=True):
            if job.future.done():
                continue
            if isinstance(outcome, BaseException):
                job.future.set_exception(outcome)
            else:
                job.future.set_result(outcome)

    def _encode(self, jobs: list[_Job], role: str) -> list[Embedded | Exception]:
        """On the encoder thread: count, refuse the requests with a text that is too long, encode the rest at once."""
        self.encoder_calls += 1
        prompt = self.encoder.query_prompt if role == QUERY else self.encoder.document_prompt
        counts = iter(self.encoder.count_tokens([prompt + text for job in jobs for text in job.texts]))
        tokens = [[next(counts) for _ in job.texts] for job in jobs]
        outcomes: list[Embedded | Exception | None] = [None] * len(jobs)
        for i, per_text in enumerate(tokens):
            over = next((index for index, n in enumerate(per_text) if n > self.max_tokens), None)
            if over is not None:
                outcomes[i] = TooManyTokens(over, per_text[over], self.max_tokens)
        chosen = [i for i in range(len(jobs)) if outcomes[i] is None]
        if chosen:
            encode = self.encoder.encode_query if role == QUERY else self.encoder.encode_document
            vectors = np.asarray(encode([text for i in chosen for text in jobs[i].texts]), dtype=np.float32)
            offset = 0
            for i in chosen:
                outcomes[i] = Embedded(vectors[offset:offset + len(tokens[i])], tokens[i])
                offset += len(tokens[i])
        return outcomes
