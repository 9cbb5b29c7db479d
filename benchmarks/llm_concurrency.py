"""Benchmark: concurrent vs one-at-a-time LLM question generation, and ours vs the seed's generator.

Runs the real generator (llama-index OpenAI-like client, retry loop, response
store) against the local OpenAI-compatible stub server, which answers every
request after a fixed latency (300 ms by default, like a fast hosted model).
Both runs generate the same questions for the same chunks, each into an empty
response store.

    python -m benchmarks.llm_concurrency            # 200 chunks, concurrency 16 vs 1
    python -m benchmarks.llm_concurrency --chunks 50 --latency 0.1
    python -m benchmarks.llm_concurrency --seed     # ours vs LlamaIndex's generate_qa_embedding_pairs

Exits non-zero when the concurrent run takes 1/10 of the serial time or more.

``--seed`` runs LlamaIndex's ``generate_qa_embedding_pairs`` exactly as it ships (its default
prompt, 2 questions per chunk, one request at a time, its save interval of 500 chunks, an
``OpenAILike`` LLM with the client's default retries) next to ours (concurrency 16, our retry
loop), against the same server in two conditions: plain, and every 7th request answered with 429
and ``Retry-After: 1``. For each: the wall time of a full run, the requests sent, and, for a run
killed with SIGKILL once half of the chunks were answered (half a request's latency later) and then
run again to the end, how many already-answered (paid) requests the second run sent again.
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

from stages.lib.common.params import LLMParams, load_params
from stages.lib.documents.chunking import Chunk
from stages.lib.questions.llm import generate_with_llm

RESULTS = Path(__file__).resolve().parent / "results" / "seed_generator.json"
PARAMS_FILE = Path(__file__).resolve().parent.parent / "params.yaml"
TOPICS = ["证券发行", "信息披露", "上市公司收购", "内幕交易", "投资者保护", "证券公司", "证券登记结算", "法律责任"]


def _llm_params(**overrides) -> LLMParams:
    """The repository's questions.llm settings (params.yaml, the one source of values) with ``overrides``,
    validated."""
    return LLMParams.model_validate({**load_params(PARAMS_FILE).questions.llm.model_dump(), **overrides})


def synthetic_chunks(n: int) -> list[Chunk]:
    return [
        Chunk(f"b{i:04d}", f"第{i + 1}条 关于{TOPICS[i % len(TOPICS)]}的规定：有关机构应当在{i % 30 + 1}日内报告第{i}项事项。",
              "bench.pdf", "train" if i % 5 else "test", "zh", "", i, 40)
        for i in range(n)
    ]


def timed_run(chunks: list[Chunk], concurrency: int) -> tuple[float, dict]:
    params = _llm_params(model="bench", concurrency=concurrency, max_attempts=3)
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


def start_server_with(latency: float, rate_limit_every: int) -> tuple[subprocess.Popen, str, str]:
    # Its stderr is dropped: a killed client's reset connections are expected here.
    server = subprocess.Popen([sys.executable, "-m", "tests.openai_stub", "--latency", str(latency),
                               "--rate-limit-every", str(rate_limit_every)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    base_url, api_key = server.stdout.readline().split()
    return server, base_url, api_key


def server_stats(base_url: str) -> dict:
    with urllib.request.urlopen(f"{base_url}/stats") as response:
        return json.load(response)


def run_generator(which: str, n_chunks: int, folder: Path) -> None:
    """One generator over the benchmark chunks, keeping its progress in ``folder`` (run in a worker process)."""
    chunks = synthetic_chunks(n_chunks)
    if which == "ours":
        params = _llm_params(model="bench", concurrency=16, max_attempts=6, initial_backoff_s=0.5)
        generate_with_llm(chunks, params, "bench", folder, 120, show_progress=False)
        return
    from llama_index.core.schema import TextNode
    from llama_index.finetuning import generate_qa_embedding_pairs
    from llama_index.llms.openai_like import OpenAILike

    llm = OpenAILike(model="bench", api_base=os.environ["OPENAI_API_BASE"], api_key=os.environ["OPENAI_API_KEY"],
                     is_chat_model=True)
    nodes = [TextNode(id_=c.id, text=c.text) for c in chunks]
    generate_qa_embedding_pairs(nodes, llm, output_path=str(folder / "qa_finetune_dataset.json"), verbose=False)


def _worker(which: str, n_chunks: int, folder: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "benchmarks.llm_concurrency", "--worker", which,
                             "--chunks", str(n_chunks), "--folder", str(folder)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _with_server(latency: float, every: int, work) -> dict:
    """``work(env, base_url)`` against a fresh server (so its counts are this work's alone)."""
    server, base_url, api_key = start_server_with(latency, every)
    env = {**os.environ, "OPENAI_API_KEY": api_key, "OPENAI_API_BASE": base_url, "TQDM_DISABLE": "1"}
    try:
        return work(env, base_url)
    finally:
        server.stdin.close()
        server.wait(timeout=10)


def _full_run(which: str, n_chunks: int):
    def work(env: dict, base_url: str) -> dict:
        with tempfile.TemporaryDirectory() as folder:
            started = time.perf_counter()
            assert _worker(which, n_chunks, Path(folder), env).wait() == 0, f"{which} failed"
            return {"wall_s": round(time.perf_counter() - started, 1), "requests": server_stats(base_url)["chat_requests"]}
    return work


def _killed_run(which: str, n_chunks: int, latency: float):
    """Killed halfway: once the server has answered half of the chunks, half a request's latency later
    (mid-request for whatever is in flight, not in the instant a wave of answers reaches the client)."""
    def work(env: dict, base_url: str) -> dict:
        with tempfile.TemporaryDirectory() as folder:
            process = _worker(which, n_chunks, Path(folder), env)
            while server_stats(base_url)["successes"] < n_chunks // 2:
                time.sleep(0.01)
            time.sleep(latency / 2)
            process.kill()
            process.wait()
            mid = server_stats(base_url)
            assert _worker(which, n_chunks, Path(folder), env).wait() == 0, f"{which} rerun failed"
            after = server_stats(base_url)
        return {"answered_before_kill": mid["successes"],
                "paid_requests_repeated_after_kill": after["repeated_successes"] - mid["repeated_successes"]}
    return work


def compare_with_seed(n_chunks: int, latency: float) -> list[dict]:
    rows = []
    for condition, every in (("plain", 0), ("429 every 7th, Retry-After 1 s", 7)):
        for which in ("seed", "ours"):
            row = {"condition": condition, "generator": which, **_with_server(latency, every, _full_run(which, n_chunks))}
            row.update(_with_server(latency, every, _killed_run(which, n_chunks, latency)))
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.3, help="seconds the server takes per request")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seed", action="store_true", help="compare with LlamaIndex's generate_qa_embedding_pairs")
    parser.add_argument("--worker", choices=("seed", "ours"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_generator(args.worker, args.chunks, args.folder)
        return 0
    if args.seed:
        rows = compare_with_seed(args.chunks, args.latency)
        RESULTS.write_text(json.dumps({"chunks": args.chunks, "latency_s": args.latency, "rows": rows}, indent=2) + "\n",
                           encoding="utf-8")
        print(f"wrote {RESULTS}")
        return 0
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
