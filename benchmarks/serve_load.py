"""Benchmark: the embeddings server under concurrent load, against encoding the same texts directly.

Starts ``python -m stages.serve`` in its own process (no API key, no access log) and sends it a fixed,
seeded mix of requests from concurrent clients (asyncio + httpx, one request in flight per client):
single queries (golden questions, ``<name>-query``) and small passage batches (articles of the
bundled laws, ``<name>``), vectors as base64 as the ``openai`` client asks for them. Every response
must be a 200 whose vectors match the direct ones (cosine >= 0.999); any error fails the run. Then
the same texts are encoded directly, in this process, with the same encoder class and device (with
the server stopped, so they do not share the CPU): the best the model does with whole batches.

    python -m benchmarks.serve_load --model-dir models/finetuned
    python -m benchmarks.serve_load --model-dir /path/to/model --clients 32 --requests 2000 \\
        --json benchmarks/results/serve_load.json

Reports throughput (requests/s, texts/s), latency percentiles per kind of request, the mean texts per
encoder call (how much the server coalesced), and the server's texts/s as a share of direct encoding,
twice: against whole batches (the ceiling), and against the same texts cut into the batches a saturated
server sees (``--clients`` requests per cycle, one encoder call per role), which leaves only the
server's own cost. Exits 1 when any request failed.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.project import REPO_ROOT

LAWS = ["中华人民共和国证券法", "中华人民共和国劳动合同法"]
GOLDEN = ("securities_law", "labor_contract_law")
NAME = "bench"


def texts_for_the_mix() -> tuple[list[str], list[str]]:
    """Queries: every golden question (Chinese and English); passages: every article of both laws."""
    from stages.lib.documents.law_pdf import law_database, read_laws

    queries = []
    for name in GOLDEN:
        for line in (REPO_ROOT / "data/golden" / f"{name}.jsonl").read_text(encoding="utf-8").splitlines():
            if line.strip():
                queries.append(json.loads(line)["query"])
    passages = [f"{article.number} {article.text}" for law in read_laws(law_database(), LAWS) for article in law.articles]
    return queries, passages


def request_mix(n: int, queries: list[str], passages: list[str], query_share: float, batch: tuple[int, int],
                seed: int) -> list[tuple[str, list[str]]]:
    rng = random.Random(seed)
    mix = []
    for _ in range(n):
        if rng.random() < query_share:
            mix.append(("query", [rng.choice(queries)]))
        else:
            mix.append(("passages", rng.sample(passages, rng.randint(*batch))))
    return mix


def start_server(model_dir: Path, backend: str, port: int, log) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO_ROOT)}
    env.pop("EMBEDDING_API_KEY", None)
    # From an empty folder, so that no .env of the project sets a key.
    cwd = tempfile.mkdtemp(prefix="serve-load-")
    return subprocess.Popen([sys.executable, "-m", "stages.serve", "--model-dir", str(model_dir.resolve()), "--backend",
                             backend, "--port", str(port), "--model-name", NAME, "--no-access-log"],
                            cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)


async def _load(url: str, mix: list[tuple[str, list[str]]], clients: int) -> tuple[list[dict], float]:
    import httpx

    results: list[dict | None] = [None] * len(mix)
    todo = iter(range(len(mix)))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client(http: httpx.AsyncClient) -> None:
        for i in todo:
            kind, texts = mix[i]
            model = f"{NAME}-query" if kind == "query" else NAME
            started = time.perf_counter()
            try:
                response = await http.post(url, json={"model": model, "input": texts, "encoding_format": "base64"})
                ok = response.status_code == 200
                body = response.json()
                vectors = [np.frombuffer(base64.b64decode(row["embedding"]), dtype="<f4") for row in body["data"]] if ok else []
                error = None if ok else f"{response.status_code}: {body.get('error', {}).get('message')}"
            except Exception as failure:  # a refused or dropped connection counts as an error, the run goes on
                vectors, error = [], f"{type(failure).__name__}: {failure}"
            results[i] = {"kind": kind, "latency_s": time.perf_counter() - started, "vectors": vectors, "error": error}

    async with httpx.AsyncClient(timeout=300, limits=limits) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        return results, time.perf_counter() - started


def _get(url: str) -> dict:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_healthy(server: subprocess.Popen, port: int, log: Path, timeout_s: float = 300) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"stages.serve exited ({server.returncode}):\n{log.read_text(encoding='utf-8')}")
        try:
            _get(f"http://127.0.0.1:{port}/health")
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"stages.serve did not answer on port {port} within {timeout_s:.0f} s")


def serve_and_load(model_dir: Path, backend: str, mix, clients: int, warmup: list) -> tuple[list[dict], float, dict]:
    port = _free_port()
    with tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False) as log:
        server = start_server(model_dir, backend, port, log)
        try:
            _wait_until_healthy(server, port, Path(log.name))
            url = f"http://127.0.0.1:{port}/v1/embeddings"
            asyncio.run(_load(url, warmup, clients))  # not timed: connections opened, first batches run
            before = _get(f"http://127.0.0.1:{port}/health")["encoder_batches"]
            results, wall = asyncio.run(_load(url, mix, clients))
            batches = _get(f"http://127.0.0.1:{port}/health")["encoder_batches"] - before
            startup = Path(log.name).read_text(encoding="utf-8").split("INFO:")[0].strip()
        finally:
            server.terminate()
            server.wait(timeout=60)
    return results, wall, {"encoder_batches": batches, "startup": startup}


def direct_encoding(model_dir: Path, backend: str, queries: list[str], passages: list[str],
                    cycles: list[tuple[list[str], list[str]]]) -> tuple[dict, float, float, str]:
    """Vectors per (kind, text), the seconds to encode all the texts given at once (queries in one call, passages
    in another), and the seconds to encode them in ``cycles`` of (queries, passages) as the server sees them,
    with the server's encoder class."""
    if backend == "torch":
        from stages.lib.serving.encoders import SentenceTransformerEncoder

        encoder = SentenceTransformerEncoder(model_dir)
    else:
        from stages.lib.models.onnx_encoder import OnnxEncoder

        encoder = OnnxEncoder(model_dir, variant="int8" if backend == "onnx-int8" else "fp32")
    encoder.encode_query(["warm-up"])
    encoder.encode_document(["warm-up"])
    started = time.perf_counter()
    query_vectors = encoder.encode_query(queries)
    passage_vectors = encoder.encode_document(passages)
    seconds = time.perf_counter() - started
    vectors = {("query", t): v for t, v in zip(queries, query_vectors, strict=True)}
    vectors.update({("passages", t): v for t, v in zip(passages, passage_vectors, strict=True)})
    started = time.perf_counter()
    for cycle_queries, cycle_passages in cycles:
        if cycle_queries:
            encoder.encode_query(cycle_queries)
        if cycle_passages:
            encoder.encode_document(cycle_passages)
    return vectors, seconds, time.perf_counter() - started, getattr(encoder, "device", "?")


def server_sized_cycles(mix: list[tuple[str, list[str]]], clients: int) -> list[tuple[list[str], list[str]]]:
    """The mix cut into the batches a saturated server sees: with one request in flight per client, each
    encoder cycle takes about ``clients`` requests, one encoder call per role."""
    cycles = []
    for start in range(0, len(mix), clients):
        chunk = mix[start:start + clients]
        cycles.append(([texts[0] for kind, texts in chunk if kind == "query"],
                       [t for kind, texts in chunk if kind == "passages" for t in texts]))
    return cycles


def _percentiles(latencies: list[float]) -> dict[str, float]:
    if not latencies:
        return {}
    ms = np.array(latencies) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 1), "p95_ms": round(float(np.percentile(ms, 95)), 1),
            "p99_ms": round(float(np.percentile(ms, 99)), 1), "max_ms": round(float(ms.max()), 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=REPO_ROOT / "models/finetuned")
    parser.add_argument("--backend", choices=("torch", "onnx", "onnx-int8"), default="torch")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--query-share", type=float, default=0.7, help="share of requests that are one query")
    parser.add_argument("--batch", type=int, nargs=2, default=(2, 6), metavar=("MIN", "MAX"),
                        help="passages per passage request (default 2 6)")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--json", type=Path, help="write the results here, e.g. benchmarks/results/serve_load.json")
    args = parser.parse_args()
    if not args.model_dir.is_dir():
        print(f"{args.model_dir} is not a folder: run `dvc repro` first, or pass --model-dir", file=sys.stderr)
        return 2

    queries, passages = texts_for_the_mix()
    mix = request_mix(args.requests, queries, passages, args.query_share, tuple(args.batch), args.seed)
    warmup = request_mix(2 * args.clients, queries, passages, args.query_share, tuple(args.batch), args.seed + 1)
    # This machine may be shared: the 1-minute load average around each phase says how much.
    load = {"before_server": round(os.getloadavg()[0], 2)}
    results, wall, server = serve_and_load(args.model_dir, args.backend, mix, args.clients, warmup)
    load["after_server"] = round(os.getloadavg()[0], 2)

    # Every text the clients sent (repeats included, so the same work), queries in one call, passages in another.
    sent_queries = [texts[0] for kind, texts in mix if kind == "query"]
    sent_passages = [t for kind, texts in mix if kind == "passages" for t in texts]
    direct, direct_s, cycles_s, device = direct_encoding(args.model_dir, args.backend, sent_queries, sent_passages,
                                                         server_sized_cycles(mix, args.clients))
    load["after_direct"] = round(os.getloadavg()[0], 2)

    errors = [r["error"] for r in results if r["error"]]
    cos = [float(np.dot(v, direct[(kind, t)]) / (np.linalg.norm(v) * np.linalg.norm(direct[(kind, t)])))
           for r, (kind, texts) in zip(results, mix, strict=True) if not r["error"]
           for v, t in zip(r["vectors"], texts, strict=True)]
    mismatched = sum(c < 0.999 for c in cos)
    texts_sent = sum(len(texts) for _, texts in mix)
    report = {
        "model_dir": str(args.model_dir), "backend": args.backend, "device": device, "machine": platform.machine(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "load_average_1min": load,
        "clients": args.clients, "requests": args.requests, "texts": texts_sent,
        "query_requests": sum(kind == "query" for kind, _ in mix),
        "passage_requests": sum(kind == "passages" for kind, _ in mix),
        "passages_per_request": list(args.batch),
        "errors": len(errors), "vectors_off_direct": mismatched, "min_cosine_to_direct": round(min(cos), 6) if cos else None,
        "wall_s": round(wall, 2), "requests_per_s": round(args.requests / wall, 1), "texts_per_s": round(texts_sent / wall, 1),
        "latency_all": _percentiles([r["latency_s"] for r in results]),
        "latency_single_query": _percentiles([r["latency_s"] for r in results if r["kind"] == "query"]),
        "latency_passage_batch": _percentiles([r["latency_s"] for r in results if r["kind"] == "passages"]),
        "encoder_batches": server["encoder_batches"],
        "mean_texts_per_encoder_batch": round(texts_sent / max(1, server["encoder_batches"]), 1),
        "direct_s": round(direct_s, 2), "direct_texts_per_s": round(texts_sent / direct_s, 1),
        "server_share_of_direct_texts_per_s": round(direct_s / wall, 3),
        # The same encoder calls without HTTP: cycles of `clients` requests, one call per role. What is left
        # between this and the server is the server's own cost (HTTP, JSON, base64, the event loop, the client).
        "direct_in_server_sized_batches_s": round(cycles_s, 2),
        "direct_in_server_sized_batches_texts_per_s": round(texts_sent / cycles_s, 1),
        "server_share_of_server_sized_batches": round(cycles_s / wall, 3),
    }
    print(server["startup"])
    print(json.dumps(report, ensure_ascii=False, indent=2))
    for error in errors[:5]:
        print("error:", error, file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 1 if errors or mismatched else 0


if __name__ == "__main__":
    raise SystemExit(main())
