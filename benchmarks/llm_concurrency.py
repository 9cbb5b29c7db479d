"""Benchmark: concurrent vs one-at-a-time LLM question generation.

Runs the real generator (llama-index OpenAI-like client, retry loop, response
store) against the local OpenAI-compatible stub server, which answers every
request after a fixed latency (300 ms by default, like a fast hosted model).
Both runs generate the same questions for the same chunks, each into an empty
response store.

    python -m benchmarks.llm_concurrency            # 200 chunks, concurrency 16 vs 1
    python -m benchmarks.llm_concurrency --chunks 50 --latency 0.1

Exits non-zero when the concurrent run takes 1/10 of the serial time or more.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from stages.lib.chunking import Chunk
from stages.lib.llm_questions import generate_with_llm
from stages.lib.params import LLMParams

TOPICS = ["证券发行", "信息披露", "上市公司收购", "内幕交易", "投资者保护", "证券公司", "证券登记结算", "法律责任"]


def synthetic_chunks(n: int) -> list[Chunk]:
    return [
        Chunk(f"b{i:04d}", f"第{i + 1}条 关于{TOPICS[i % len(TOPICS)]}的规定：有关机构应当在{i % 30 + 1}日内报告第{i}项事项。",
              "bench.pdf", "train" if i % 5 else "test", "zh", "", i, 40)
        for i in range(n)
    ]


def timed_run(chunks: list[Chunk], concurrency: int) -> tuple[float, dict]:
    params = LLMParams(model="bench", concurrency=concurrency, max_attempts=3)
    with tempfile.TemporaryDirectory() as store:
        started = time.perf_counter()
        run = generate_with_llm(chunks, params, "bench", Path(store), 120, show_progress=False)
        return time.perf_counter() - started, run.stats


def start_server(latency: float) -> tuple[subprocess.Popen, str, str]:
    """The stub in its own process, as a real server would be: no GIL shared with the client."""
    server = subprocess.Popen([sys.executable, "-m", "tests.openai_stub", "--latency", str(latency)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    base_url, api_key = server.stdout.readline().split()
    return server, base_url, api_key


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.3, help="seconds the server takes per request")
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    chunks = synthetic_chunks(args.chunks)
    # Import the client stack once up front, so neither run pays for it.
    import llama_index.core.llms  # noqa: F401
    import llama_index.llms.openai_like  # noqa: F401

    server, base_url, api_key = start_server(args.latency)
    try:
        os.environ["OPENAI_API_KEY"], os.environ["OPENAI_API_BASE"] = api_key, base_url
        concurrent_s, concurrent_stats = timed_run(chunks, args.concurrency)
        serial_s, serial_stats = timed_run(chunks, 1)
        with urllib.request.urlopen(f"{base_url}/stats") as response:
            peak = json.load(response)["max_in_flight"]
    finally:
        server.stdin.close()
        server.wait(timeout=10)
    assert concurrent_stats["llm_requests_sent_this_run"] == serial_stats["llm_requests_sent_this_run"] == args.chunks
    ratio = concurrent_s / serial_s
    print(f"{args.chunks} chunks, server latency {args.latency * 1000:.0f} ms")
    print(f"  one at a time : {serial_s:6.1f} s")
    print(f"  concurrency {args.concurrency:<2}: {concurrent_s:6.1f} s  (peak {peak} requests in flight)")
    print(f"  ratio         : {ratio:.3f}  (target < 0.1)")
    return 0 if ratio < 0.1 else 1


if __name__ == "__main__":
    raise SystemExit(main())
