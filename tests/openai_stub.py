"""A real local HTTP server that speaks the OpenAI chat-completions and embeddings API.

Tests and the benchmark drive the real OpenAI client (through llama-index)
against it. It answers deterministically, checks the bearer key, counts every
request, and can be scripted to misbehave: 429 with Retry-After, 5xx, slow
answers (client timeouts), chatty or malformed content.
"""

from __future__ import annotations

import hashlib
import json
import re
import select
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

from tests.local_servers import BackgroundHTTPServer, send_json


@dataclass
class Scripted:
    """One scripted answer: consumed by the next chat request."""

    status: int = 200
    content: str | None = None  # message content for a 200; None = the default answer
    raw_body: str | None = None  # sent as-is (malformed JSON, error bodies)
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


def _passage(prompt: str) -> str:
    match = re.search(r"<passage>\s*(.*?)\s*</passage>", prompt, re.S)
    if match:
        return match.group(1)
    # LlamaIndex's generate_qa_embedding_pairs prompt: the context sits between two dashed rules.
    match = re.search(r"-{5,}\n(.*?)\n-{5,}", prompt, re.S)
    return match.group(1) if match else prompt


def default_questions(prompt: str) -> str:
    """Questions derived from the passage's hash: deterministic, never copies of the passage."""
    digest = hashlib.sha256(_passage(prompt).encode()).hexdigest()
    count = int(m.group(1)) if (m := re.search(r"(\d+)\s*(?:个|queries|questions)", prompt)) else 3
    chinese = bool(re.search(r"[\u4e00-\u9fff]", prompt[:200]))
    styles = ["question", "keywords", "scenario"]
    items = []
    for i in range(count):
        tag = digest[i * 6:(i + 1) * 6]
        text = f"关于条款{tag}有什么规定？" if chinese else f"What does clause {tag} require?"
        items.append({"style": styles[i % 3], "text": text})
    if "quiz/examination" in prompt:  # LlamaIndex's default prompt: it reads one numbered question per line
        return "\n".join(f"{i + 1}. {item['text']}" for i, item in enumerate(items))
    return json.dumps({"questions": items}, ensure_ascii=False)


def hashed_embedding(text: str, dims: int = 64) -> list[float]:
    """Character-bigram hashing: similar texts get similar vectors, like a (weak) real model."""
    vector = [0.0] * dims
    for a, b in zip(text, text[1:], strict=False):
        vector[int(hashlib.md5((a + b).encode()).hexdigest(), 16) % dims] += 1.0
    norm = sum(v * v for v in vector) ** 0.5 or 1.0
    return [v / norm for v in vector]


class StubOpenAI:
    def __init__(self, api_key: str = "sk-test-stub-key-0123456789abcdef", latency: float = 0.0,
                 rate_limit_every: int = 0, retry_after_s: float = 1.0) -> None:
        self.api_key = api_key
        self.latency = latency
        # Answer every n-th chat request with 429 and a Retry-After (0: never), like a busy provider.
        self.rate_limit_every = rate_limit_every
        self.retry_after_s = retry_after_s
        self.script: list[Scripted] = []
        self.lock = threading.Lock()
        self.chat_requests = 0
        self.embedding_requests = 0
        self.embedded_texts = 0
        self.successes_by_prompt: Counter[str] = Counter()
        self.prompts: list[str] = []  # every chat prompt received, in order
        self.in_flight = 0
        self.max_in_flight = 0
        self._http = BackgroundHTTPServer(self._handler())

    @property
    def base_url(self) -> str:
        return f"{self._http.url}/v1"

    def __enter__(self) -> StubOpenAI:
        self._http.start()
        return self

    def __exit__(self, *exc) -> None:
        self._http.stop()

    def _handler(self):
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep test output quiet
                pass

            def setup(self) -> None:
                super().setup()
                # Headers and body go out in two writes: without this, Nagle's algorithm and the
                # client's delayed ACK add ~40 ms to every answer, as no real server would.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def _send(self, status: int, body: str, headers: dict[str, str] | None = None) -> None:
                send_json(self, status, body.encode(), headers)

            def _client_gone(self) -> bool:
                """True when the client closed the connection (killed, or gave up on a timeout)."""
                readable, _, _ = select.select([self.connection], [], [], 0)
                if not readable:
                    return False
                try:
                    return self.connection.recv(1, socket.MSG_PEEK) == b""
                except OSError:
                    return True

            def do_GET(self) -> None:  # noqa: N802
                if self.path.rstrip("/").endswith("/stats"):  # for a client in another process
                    with stub.lock:
                        stats = {"chat_requests": stub.chat_requests, "max_in_flight": stub.max_in_flight,
                                 "successes": sum(stub.successes_by_prompt.values()),
                                 "repeated_successes": sum(n - 1 for n in stub.successes_by_prompt.values())}
                    self._send(200, json.dumps(stats))
                else:
                    self._send(404, "{}")

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", 0))
                request = json.loads(self.rfile.read(length) or b"{}")
                if self.headers.get("Authorization") != f"Bearer {stub.api_key}":
                    self._send(401, json.dumps({"error": {"message": "Incorrect API key provided",
                                                          "type": "invalid_request_error", "code": "invalid_api_key"}}))
                    return
                if self.path.endswith("/chat/completions"):
                    self._chat(request)
                elif self.path.endswith("/embeddings"):
                    self._embeddings(request)
                else:
                    self._send(404, json.dumps({"error": {"message": f"unknown path {self.path}"}}))

            def _chat(self, request: dict) -> None:
                prompt = "\n".join(m.get("content", "") for m in request.get("messages", []))
                with stub.lock:
                    stub.chat_requests += 1
                    stub.prompts.append(prompt)
                    scripted = stub.script.pop(0) if stub.script else Scripted()
                    if stub.rate_limit_every and stub.chat_requests % stub.rate_limit_every == 0:
                        scripted = Scripted(429, raw_body='{"error": {"message": "rate limited"}}',
                                            headers={"Retry-After": f"{stub.retry_after_s:g}"})
                    stub.in_flight += 1
                    stub.max_in_flight = max(stub.max_in_flight, stub.in_flight)
                try:
                    time.sleep(stub.latency + scripted.delay)
                    if self._client_gone():
                        return  # nobody to answer: not a success
                    if scripted.raw_body is not None or scripted.status != 200:
                        self._send(scripted.status, scripted.raw_body or "{}", scripted.headers)
                        return
                    content = scripted.content if scripted.content is not None else default_questions(prompt)
                    body = {
                        "id": "chatcmpl-stub", "object": "chat.completion", "created": 0, "model": request.get("model"),
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": content}}],
                        "usage": {"prompt_tokens": len(prompt) // 2, "completion_tokens": len(content) // 2,
                                  "total_tokens": (len(prompt) + len(content)) // 2},
                    }
                    self._send(200, json.dumps(body, ensure_ascii=False), scripted.headers)
                    with stub.lock:
                        stub.successes_by_prompt[hashlib.sha256(prompt.encode()).hexdigest()] += 1
                finally:
                    with stub.lock:
                        stub.in_flight -= 1

            def _embeddings(self, request: dict) -> None:
                texts = request.get("input", [])
                texts = [texts] if isinstance(texts, str) else texts
                with stub.lock:
                    stub.embedding_requests += 1
                    stub.embedded_texts += len(texts)
                    scripted = stub.script.pop(0) if stub.script else Scripted()
                time.sleep(stub.latency + scripted.delay)
                if scripted.status != 200:
                    self._send(scripted.status, scripted.raw_body or "{}", scripted.headers)
                    return
                data = [{"object": "embedding", "index": i, "embedding": hashed_embedding(t)} for i, t in enumerate(texts)]
                self._send(200, json.dumps({"object": "list", "data": data, "model": request.get("model"),
                                            "usage": {"prompt_tokens": 1, "total_tokens": 1}}))

        return Handler


def serve_forever_in_foreground() -> None:
    """``python -m tests.openai_stub --latency 0.3``: print the base URL, serve until killed."""
    import argparse
    import sys

    parser = argparse.ArgumentParser()
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--rate-limit-every", type=int, default=0, help="answer every n-th chat request with 429")
    parser.add_argument("--retry-after", type=float, default=1.0, help="the Retry-After of those answers")
    args = parser.parse_args()
    with StubOpenAI(latency=args.latency, rate_limit_every=args.rate_limit_every,
                    retry_after_s=args.retry_after) as stub:
        print(stub.base_url, stub.api_key, flush=True)
        sys.stdin.read()  # until the parent closes our stdin


if __name__ == "__main__":
    serve_forever_in_foreground()
