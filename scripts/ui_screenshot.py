"""Draw the pictures of the UI in the README and docs/ui.md: a known question's search view and the report, from a reproduced run.

    python scripts/ui_screenshot.py                      # this folder's run -> docs/ui.png, docs/ui_report.png
    python scripts/ui_screenshot.py --project /path/to/run --set golden/securities_law --qid sl-zh-c-001

Starts `python -m stages.ui` on a free port, waits until it can search and has checked the run against
dvc.lock, and photographs two of its URLs in headless Chromium (Debian's `chromium`, as the tests use) with
every other host unreachable. Chinese text needs a CJK font on the machine (the page uses the system's fonts):
the script stops with the package to install when there is none.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlencode

REPO_ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _fail(message: str) -> None:
    print(f"ERROR: {message}", file=sys.stderr)
    sys.exit(2)


def _chromium() -> str:
    for name in ((os.environ["CHROMIUM"],) if os.environ.get("CHROMIUM") else CHROMIUM_NAMES):
        if shutil.which(name):
            return shutil.which(name)
    _fail("headless Chromium is needed: apt-get install -y chromium (or set CHROMIUM=/path/to/chrome).")
    raise AssertionError


def _check_cjk_font() -> None:
    if not shutil.which("fc-list"):
        return  # not a fontconfig system: let Chromium find what it finds
    found = subprocess.run(["fc-list", ":lang=zh", "family"], capture_output=True, text=True).stdout.strip()
    if not found:
        _fail("no font on this machine draws Chinese, so the picture would show boxes: apt-get install -y "
              "fonts-noto-cjk (or the smaller fonts-wqy-microhei), then run this again.")


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def _start_ui(project: Path, port: int, log) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.Popen([sys.executable, "-m", "stages.ui", "--project", str(project.resolve()), "--port", str(port)],
                            cwd=tempfile.gettempdir(), env=env, stdout=log, stderr=subprocess.STDOUT)


def _wait_until_ready(base: str, process: subprocess.Popen, log_path: Path) -> dict:
    deadline = time.time() + 300
    while time.time() < deadline:
        if process.poll() is not None:
            _fail(f"the UI exited ({process.returncode}):\n{log_path.read_text(errors='replace')}")
        try:
            health = _get(base + "/health")
            if not health["checking"]:
                return _get(base + "/api/status")
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.3)
    _fail(f"the UI did not get ready within 300 s:\n{log_path.read_text(errors='replace')}")
    raise AssertionError


def _screenshot(chromium: str, url: str, target: Path, width: int, height: int, profile: Path) -> None:
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
                    "--disable-quic", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={profile}", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                    f"--window-size={width},{height}", "--virtual-time-budget=15000", f"--screenshot={target}", url],
                   check=True, capture_output=True, timeout=180)
    print(f"wrote {target} ({width} x {height}) from {url}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=Path("."), help="a reproduced run (default: this folder)")
    parser.add_argument("--set", default="golden/securities_law", help="the known question's set (default golden/securities_law)")
    parser.add_argument("--qid", default="sl-zh-c-001", help="the known question shown (default sl-zh-c-001)")
    parser.add_argument("--output-dir", type=Path, default=REPO_ROOT / "docs", help="where ui.png and ui_report.png go")
    parser.add_argument("--width", type=int, default=1280, help="window width in pixels (default 1280)")
    args = parser.parse_args()
    chromium = _chromium()
    _check_cjk_font()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    work = Path(tempfile.mkdtemp(prefix="ui-screenshot-"))
    log_path = work / "ui.log"
    with log_path.open("w", encoding="utf-8") as log:
        process = _start_ui(args.project, port, log)
        try:
            status = _wait_until_ready(base, process, log_path)
            if not status["search_ready"] or status["problems"]:
                _fail("the run is not complete or not current, so the picture would show its problems:\n"
                      + "\n".join(p["message"] for p in status["problems"]) + "\nRun `dvc repro` first.")
            try:
                _get(f"{base}/api/search?{urlencode({'set': args.set, 'qid': args.qid})}")
            except urllib.error.HTTPError as error:
                _fail(json.loads(error.read())["error"]["message"] + " Choose another with --set and --qid.")
            args.output_dir.mkdir(parents=True, exist_ok=True)
            _screenshot(chromium, f"{base}/?{urlencode({'set': args.set, 'qid': args.qid})}", args.output_dir / "ui.png",
                        args.width, 1020, work / "profile")
            _screenshot(chromium, f"{base}/report", args.output_dir / "ui_report.png", args.width, 1500, work / "profile")
        finally:
            process.terminate()
            process.wait(timeout=30)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
