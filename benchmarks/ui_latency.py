"""Benchmark: how fast `python -m stages.ui` starts, and answers a question, on a reproduced run.

Starts the UI in its own process on a free port (from another folder, with ``--project``), and measures:

* start-up: from launching the command until the page answers with its search ready (models loaded, corpus
  vectors read from the evaluation's cache, BM25 built, a warm-up question answered); and the server's own
  figure for the same (``startup_s``: from its first line of Python, so without the interpreter's start); and
  when its check against ``dvc.lock`` (hashing the models, in a thread while it serves) finished;
* a question: ``--questions`` different questions (a seeded sample of the run's golden sets, else its
  synthetic test split), one at a time, each ``POST /api/search`` with k = 5 as the page sends it; the wall time
  of each round trip over HTTP on loopback, and the server's own time for it (``server_ms``). The median is the
  figure; min, p90 and max are kept, with each question's time;
* a 10,000-character question (cut to the models' window: the slowest kind of question).

With ``--compare-threads`` (the default) the whole measurement is repeated with one thread per question (the
UI's default) and with every core (``--threads <cores>``). The machine's CPU, its bf16 flags and the load
average before and after are recorded: on a shared 2-core machine, another process's load moves these figures.

    python -m benchmarks.ui_latency --project /path/to/reproduced/run
    python -m benchmarks.ui_latency --project . --json benchmarks/results/ui_latency.json

Exits 1 when the median is above the target (300 ms) or the start-up above 20 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from benchmarks.project import REPO_ROOT, write_result

TARGET_MEDIAN_MS, TARGET_STARTUP_S = 300.0, 20.0
LONG_QUESTION = "上市公司的董事、监事和高级管理人员买卖本公司股票有什么限制？" * 400


def _request(url: str, body: dict | None = None, timeout: float = 120) -> tuple[int, dict]:
    data = json.dumps(body, ensure_ascii=False).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def pick_questions(base_url: str, n: int, seed: int) -> list[str]:
    """``n`` different questions: a seeded sample of the golden sets' (every split and language), else synthetic test."""
    _, sets = _request(base_url + "/api/sets")
    chosen = [s["id"] for s in sets if s["id"].startswith("golden/")] or ["synthetic/test"]
    texts: list[str] = []
    for set_id in chosen:
        _, found = _request(f"{base_url}/api/questions?set={set_id}&limit=500")
        texts.extend(q["text"] for q in found["questions"])
    texts = sorted(set(texts))
    if len(texts) < n:
        raise SystemExit(f"the run has {len(texts)} different questions; --questions {n} needs more")
    return random.Random(seed).sample(texts, n)


def measure(project: Path, threads: int, n_questions: int, seed: int) -> dict:
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO_ROOT)}
    log_path = Path(tempfile.mkdtemp(prefix="ui-latency-")) / "ui.log"
    load_before = os.getloadavg()[0]
    with log_path.open("w", encoding="utf-8") as log:
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-m", "stages.ui", "--project", str(project.resolve()), "--port",
                                    str(port), "--threads", str(threads)], cwd=tempfile.gettempdir(), env=env, stdout=log,
                                   stderr=subprocess.STDOUT)
        return _measure_running(base_url, process, log_path, started, threads, n_questions, seed, load_before)


def _measure_running(base_url: str, process: subprocess.Popen, log_path: Path, started: float, threads: int,
                     n_questions: int, seed: int, load_before: float) -> dict:
    try:
        startup_s = _wait(base_url, process, log_path, started)
        _, status = _request(base_url + "/api/status")
        if not status["search_ready"]:
            raise SystemExit("the UI cannot search this run:\n" + "\n".join(p["message"] for p in status["problems"]))
        questions = pick_questions(base_url, n_questions, seed)
        wall, server = [], []
        for question in questions:
            begun = time.perf_counter()
            code, view = _request(base_url + "/api/search", {"q": question, "k": 5})
            wall.append((time.perf_counter() - begun) * 1000)
            if code != 200:
                raise SystemExit(f"search failed ({code}): {view}")
            server.append(view["server_ms"])
        begun = time.perf_counter()
        code, long_view = _request(base_url + "/api/search", {"q": LONG_QUESTION[:10_000], "k": 5})
        long_ms = (time.perf_counter() - begun) * 1000
        checked_s = _wait_for_check(base_url, started)
    finally:
        process.terminate()
        process.wait(timeout=30)
    ordered = sorted(wall)
    return {
        "threads": threads, "questions": n_questions, "seed": seed, "corpus_size": status["corpus_size"],
        "hardware": status["hardware"], "models": status["models"],
        "startup_s": round(startup_s, 2), "server_startup_s": status["startup_s"],
        "stale_check_done_after_s": round(checked_s, 2),
        "median_ms": round(statistics.median(wall), 1), "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))], 1),
        "min_ms": round(ordered[0], 1), "max_ms": round(ordered[-1], 1),
        "server_median_ms": round(statistics.median(server), 1),
        "long_question_ms": round(long_ms, 1), "long_question_cut": bool(code == 200 and long_view.get("cut")),
        "latencies_ms": [round(x, 1) for x in wall],
        "load_average_1min": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
    }


def _wait(base_url: str, process: subprocess.Popen, log: Path, started: float) -> float:
    while time.perf_counter() - started < 300:
        if process.poll() is not None:
            raise SystemExit(f"the UI exited ({process.returncode}):\n{log.read_text(errors='replace')}")
        try:
            code, health = _request(base_url + "/health", timeout=5)
            if code == 200:
                return time.perf_counter() - started
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.05)
    raise SystemExit(f"the UI did not answer within 300 s:\n{log.read_text(errors='replace')}")


def _wait_for_check(base_url: str, started: float) -> float:
    while True:
        _, health = _request(base_url + "/health")
        if not health["checking"]:
            return time.perf_counter() - started
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ui_latency", description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=Path("."), help="a reproduced run (default: this folder)")
    parser.add_argument("--questions", type=int, default=20, help="different questions, one at a time (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="of the question sample (default 0)")
    parser.add_argument("--compare-threads", action=argparse.BooleanOptionalAction, default=True,
                        help="also measure with every core per question (default: yes)")
    parser.add_argument("--json", type=Path, help="write the result here (relative: to the repository)")
    args = parser.parse_args()

    from stages.lib.common.cores import cpu_threads
    from stages.lib.models.hardware import cpu_bf16_flags

    cores = cpu_threads()
    runs = [measure(args.project, 1, args.questions, args.seed)]
    if args.compare_threads and cores > 1:
        runs.append(measure(args.project, cores, args.questions, args.seed))
    revision = subprocess.run(["git", "-C", str(args.project), "describe", "--always", "--dirty"], capture_output=True,
                              text=True).stdout.strip()
    result = {
        "command": "python -m benchmarks.ui_latency" + (f" --project {args.project}" if str(args.project) != "." else ""),
        "project_git_revision": revision or None,
        "cpu": cpu_name(), "cpu_bf16_flags": cpu_bf16_flags(), "usable_cores": cores, "machine": platform.machine(),
        "targets": {"median_ms": TARGET_MEDIAN_MS, "startup_s": TARGET_STARTUP_S}, "runs": runs,
    }
    write_result(args.json, result)
    ok = True
    for run in runs:
        within = run["median_ms"] <= TARGET_MEDIAN_MS and run["startup_s"] <= TARGET_STARTUP_S
        ok &= within or run["threads"] != 1
        print(f"threads {run['threads']}: start-up {run['startup_s']:.1f} s (server {run['server_startup_s']:.1f} s; "
              f"dvc.lock check done at {run['stale_check_done_after_s']:.1f} s); {run['questions']} questions: median "
              f"{run['median_ms']:.0f} ms (server {run['server_median_ms']:.0f} ms), p90 {run['p90_ms']:.0f}, max "
              f"{run['max_ms']:.0f}; a 10,000-character question {run['long_question_ms']:.0f} ms; load "
              f"{run['load_average_1min']['before']} -> {run['load_average_1min']['after']}"
              + ("" if within else "  (above the target)"))
    print(f"{result['cpu']}, {cores} cores, bf16 flags: {', '.join(result['cpu_bf16_flags']) or 'none'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
