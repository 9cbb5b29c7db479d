"""The UI's tools, on the tests' tiny run: the latency benchmark, the labelling run through the browser, and the
README's screenshot script."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.helpers import REPO_ROOT, command_env, run
from tests.ui.conftest import GOLDEN

pytestmark = pytest.mark.slow  # runs the pipeline, a stage, a browser or a server: not in `make test-quick`


def _run(args: list[str], cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, env={**command_env(), "PYTHONPATH": str(REPO_ROOT)},
                          capture_output=True, text=True, timeout=600)


def test_the_latency_benchmark_measures_start_up_and_questions(ui_project, tmp_path):
    result = _run(["-m", "benchmarks.ui_latency", "--project", str(ui_project), "--questions", "5", "--no-compare-threads",
                   "--json", str(tmp_path / "latency.json")], REPO_ROOT)
    # Exit 1 means above the targets: possible on a machine busy with other work, not a failure of the tool.
    assert result.returncode in (0, 1), result.stderr
    measured = json.loads((tmp_path / "latency.json").read_text(encoding="utf-8"))
    run = measured["runs"][0]
    assert run["threads"] == 1 and run["questions"] == 5 and len(run["latencies_ms"]) == 5
    assert 0 < run["min_ms"] <= run["median_ms"] <= run["max_ms"] and 0 < run["server_median_ms"] <= run["median_ms"]
    assert 0 < run["server_startup_s"] <= run["startup_s"] <= run["stale_check_done_after_s"]
    assert run["long_question_cut"] and run["corpus_size"] > 0
    assert measured["cpu"] and measured["usable_cores"] >= 1 and "median" in result.stdout


def test_the_screenshot_script_draws_both_views_or_names_the_missing_font(ui_project, tmp_path):
    result = _run(["scripts/ui_screenshot.py", "--project", str(ui_project), "--set", "golden/tiny_ui", "--qid", "ui-4",
                   "--output-dir", str(tmp_path)], REPO_ROOT)
    fonts = subprocess.run(["fc-list", ":lang=zh", "family"], capture_output=True, text=True).stdout.strip() \
        if shutil.which("fc-list") else "unknown"
    if not fonts:
        assert result.returncode == 2 and "apt-get install -y fonts-noto-cjk" in result.stderr
        return
    assert result.returncode == 0, result.stderr
    for name in ("ui.png", "ui_report.png"):
        picture = (tmp_path / name).read_bytes()
        assert picture[:8] == b"\x89PNG\r\n\x1a\n" and len(picture) > 20_000, name  # a drawn page, not a blank one


def test_the_labelling_run_labels_through_the_browser_and_reports_what_the_page_measured(ui_project, tmp_path):
    work = tmp_path / "work"
    result = _run(["-m", "benchmarks.labelling_run", "--project", str(ui_project), "--golden", GOLDEN, "--questions", "4",
                   "--dwell", "0.2", "--work", str(work), "--json", str(tmp_path / "run.json")], REPO_ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    measured = json.loads((tmp_path / "run.json").read_text(encoding="utf-8"))
    assert measured["questions"] == 4 and measured["golden_splits"] == {"val": 2, "test": 2} and measured["cpu"]
    rows = {json.loads(line)["query"]: json.loads(line) for line in
            (work / "labelling/data/golden/labelling_run.jsonl").read_text(encoding="utf-8").splitlines()}
    for question in measured["per_question"]:  # what the result says is what the page saved
        row = rows[question["query"]]
        assert (question["seconds"], question["seen"], question["pool"]) == (row["labelling"]["seconds"], row["labelling"]["seen"],
                                                                             row["labelling"]["pool"])
        assert question["seconds"] > 0 and 0 <= question["seen"] <= question["pool"]
        assert question["marked"] == question["relevant_in_pool"]  # the oracle marks exactly its answers in the pool
        assert question["no_relevant_chunk"] == (question["relevant_in_pool"] == 0)
    found = sum(q["relevant_in_pool"] > 0 for q in measured["per_question"]) / 4
    assert measured["pool_recall"]["any_relevant_at_depth_5"] == found
    labelled = measured["evaluation"]["labelled_4"]["golden_test_zh_incl_trained_passages"]
    assert labelled["queries"] == sum(q["labelled_split"] == "test" and not q["no_relevant_chunk"] for q in measured["per_question"])
    assert measured["evaluation"]["full_golden_set"]["golden_test_zh_incl_trained_passages"]["queries"] == 5
    assert run(["git", "status", "--porcelain"], ui_project).stdout == ""  # the run itself is left as it was
