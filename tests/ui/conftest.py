"""One reproduced tiny run for every UI test, and the UI server over it.

The run is the session's tiny Chinese pipeline (three short laws, the packaged MiniLM) plus a small golden set
written for those laws, so the page has golden questions to pick, golden tables to report and golden rows to
analyse. It is built once for the package (``dvc repro`` of the whole pipeline, under a minute on 2 cores);
tests that break something work on a copy of its outputs (``broken_copy``).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import TINY_ZH_PARAMS, command_env, make_project, run

GOLDEN = "data/golden/tiny_ui.jsonl"
# Questions in users' words about the three tiny laws, labelled by article: val picks the checkpoint and the
# fusion, test is reported (and so analysed in the report's error analysis).
QUESTIONS = [
    ("val", "zh", "唱国歌的时候可以随便改歌词吗", "中华人民共和国国歌法.pdf", ["第十五条"]),
    ("val", "zh", "买房子要交的税按什么比例算", "中华人民共和国契税法.pdf", ["第三条"]),
    ("val", "zh", "买车要交哪个税，税率多少", "中华人民共和国车辆购置税法.pdf", ["第四条"]),
    ("val", "zh", "哪些场合应当奏唱国歌", "中华人民共和国国歌法.pdf", ["第四条"]),
    ("test", "zh", "学校要不要教学生唱国歌", "中华人民共和国国歌法.pdf", ["第十一条"]),
    ("test", "zh", "继承房产需要交契税吗", "中华人民共和国契税法.pdf", ["第六条"]),
    ("test", "zh", "契税什么时候申报缴纳", "中华人民共和国契税法.pdf", ["第九条", "第十条"]),
    ("test", "zh", "国歌能不能用在商业广告里", "中华人民共和国国歌法.pdf", ["第八条"]),
    ("test", "zh", "电动汽车买的时候要交购置税吗", "中华人民共和国车辆购置税法.pdf", ["第九条"]),
    ("test", "en", "Can the national anthem be used in commercial advertising?", "中华人民共和国国歌法.pdf", ["第八条"]),
]
# The session's tiny pipeline, trained as little as it can be (the page shows a model, it does not judge it), with
# the golden set (and, as every tiny run, no llama-index cross-check).
PARAMS = {**TINY_ZH_PARAMS,
          "train": {**TINY_ZH_PARAMS["train"], "max_pairs": 48, "wise_ft_alphas": [1.0]},
          "evaluate": {**TINY_ZH_PARAMS["evaluate"], "golden_sets": [GOLDEN]}}


@pytest.fixture(scope="package")
def ui_project(tmp_path_factory) -> Path:
    path = make_project(tmp_path_factory.mktemp("ui") / "project", PARAMS, git=False)
    (path / GOLDEN).write_text("".join(
        json.dumps({"id": f"ui-{i}", "query": q, "split": split, "language": lang, "source": source, "articles": labels},
                   ensure_ascii=False) + "\n"
        for i, (split, lang, q, source, labels) in enumerate(QUESTIONS)), encoding="utf-8")
    run(["git", "init", "-q", "-b", "main"], path)
    run(["dvc", "init", "-q"], path)
    # Committed before it runs, as a project is: DVCLive (in the train stage) reads the git revision.
    run(["git", "add", "-A"], path)
    run(["git", "commit", "-q", "-m", "project"], path)
    run(["dvc", "repro"], path)
    run(["git", "add", "-A"], path)
    run(["git", "commit", "-q", "-m", "first run"], path)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class UiServer:
    url: str
    process: subprocess.Popen
    log: Path

    def get(self, path: str) -> tuple[int, dict]:
        return http(self.url + path)

    def post(self, path: str, body: bytes | dict, content_type: str = "application/json") -> tuple[int, dict]:
        data = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
        return http(self.url + path, data, {"Content-Type": content_type})

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def http(url: str, data: bytes | None = None, headers: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def start_ui(project: Path, log: Path, *options: str) -> UiServer:
    """``python -m stages.ui`` on a free port, started from another folder (``--project`` finds the run); returns
    once it answers and its check against dvc.lock is done."""
    port = free_port()
    env = {**command_env(), "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    handle = log.open("w", encoding="utf-8")
    process = subprocess.Popen([sys.executable, "-m", "stages.ui", "--project", str(project), "--port", str(port), *options],
                               cwd=log.parent, env=env, stdout=handle, stderr=subprocess.STDOUT)
    server = UiServer(f"http://127.0.0.1:{port}", process, log)
    deadline = time.time() + 180
    while time.time() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the UI exited ({process.returncode}):\n{server.output()}")
        try:
            status, body = server.get("/health")
            if status == 200 and not body["checking"]:
                return server
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.3)
    stop_ui(server)
    raise AssertionError(f"the UI did not answer within 180 s:\n{server.output()}")


def stop_ui(server: UiServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture(scope="package")
def ui_server(ui_project, tmp_path_factory):
    server = start_ui(ui_project, tmp_path_factory.mktemp("ui-server") / "ui.log")
    yield server
    stop_ui(server)


def artefacts_dir() -> Path:
    """Where the browser tests keep their screenshots: $UI_TEST_ARTEFACTS, else test-artefacts/ui in the repository."""
    folder = Path(os.environ.get("UI_TEST_ARTEFACTS") or Path(__file__).resolve().parents[2] / "test-artefacts" / "ui")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def broken_copy(project: Path, destination: Path, without: tuple[str, ...] = ()) -> Path:
    """The run's outputs and records in ``destination``, less ``without``: what the UI reads, nothing of git or the
    DVC cache. Model folders are linked (the UI only reads them), the rest copied, so a test may edit it."""
    import shutil

    destination.mkdir(parents=True)
    for name in ("params.yaml", "dvc.yaml", "dvc.lock"):
        shutil.copy2(project / name, destination / name)
    for folder in ("data", "metrics"):
        shutil.copytree(project / folder, destination / folder, symlinks=True)
    (destination / "models").mkdir()
    for model in (project / "models").iterdir():
        if model.is_dir() and f"models/{model.name}" not in without:
            (destination / "models" / model.name).symlink_to(model, target_is_directory=True)
    for relative in without:
        target = destination / relative
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
    return destination


@pytest.fixture(scope="package")
def label_project(ui_project, tmp_path_factory) -> Path:
    """A copy of the run for the labelling view's tests, which write golden sets and queues: the shared run, which
    other tests check is left unchanged, stays as it was."""
    return broken_copy(ui_project, tmp_path_factory.mktemp("label") / "run")


@pytest.fixture(scope="package")
def label_server(label_project, tmp_path_factory):
    server = start_ui(label_project, tmp_path_factory.mktemp("label-server") / "ui.log")
    yield server
    stop_ui(server)


# -- the browser, for the tests that drive the page -------------------------------------------------------------

TIMEOUT_MS = 60_000  # a search on a busy 2-core machine takes well under a second; loading the page, a few


@pytest.fixture(scope="module")
def browser():
    """The system's Chromium (Debian's), driven by Playwright: no browser is downloaded."""
    try:
        from playwright import sync_api as playwright_api
    except ImportError:  # a missing test dependency is a failure, not a skip
        pytest.fail("Playwright drives the browser in these tests: install the test extra (pip install -e '.[test]', as "
                    "`make test` does); it uses the system's Chromium, no browser download.", pytrace=False)
    from tests.pipeline.test_plots_offline import chromium

    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium(), args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        yield launched
        launched.close()


class Page:
    """A page that fails the test on a request to anywhere but the UI server, or on an error in its script."""

    def __init__(self, browser, server_url: str, width: int = 1280, height: int = 900) -> None:
        self.context = browser.new_context(viewport={"width": width, "height": height})
        self.page = self.context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.server_url = server_url
        self.elsewhere: list[str] = []
        self.script_errors: list[str] = []
        self.context.route("**/*", self._only_the_server)
        self.page.on("pageerror", lambda error: self.script_errors.append(str(error)))

    def _only_the_server(self, route) -> None:
        url = route.request.url
        if url.startswith(self.server_url) or url.startswith("data:"):
            route.continue_()
        else:
            self.elsewhere.append(url)
            route.abort()

    def close(self) -> None:
        assert self.elsewhere == [], f"the page asked for something outside its server: {self.elsewhere}"
        assert self.script_errors == [], f"errors in the page's script: {self.script_errors}"
        self.context.close()


def shot(page, name: str, full_page: bool = True) -> None:
    page.screenshot(path=str(artefacts_dir() / f"{name}.png"), full_page=full_page)
