"""The labelling view in real headless Chromium, against `python -m stages.ui` on a copy of the tiny run.

What a person does: import a question file, label by keyboard only (j/k/x, Enter, 0), reload and find the labels
back; label in two tabs at once and get two different questions, both saved; save from a stale tab and be told,
with nothing lost on screen or on disk. Then what it is for: a set labelled in the browser is the golden set
`dvc repro` selects on (its val split) and reports (its test split). And the report's verdict block. Every request
goes to the UI server itself; screenshots go to test-artefacts/ui/.
"""

from __future__ import annotations

import json
import re
import shutil
from urllib.parse import urlsplit

import pytest

from stages.lib.common.files import read_json, read_jsonl
from stages.lib.documents.chunking import Chunk
from stages.lib.retrieval.golden import load_golden, resolve
from tests.helpers import copy_project, run, update_params
from tests.ui.conftest import GOLDEN, Page, shot

pytestmark = pytest.mark.slow  # runs the pipeline, a stage, a browser or a server: not in `make test-quick`


@pytest.fixture
def tab(browser, label_server):
    opened = Page(browser, label_server.url)
    yield opened.page
    opened.close()


def write_questions(folder, name: str, questions: list[str]):
    path = folder / name
    path.write_text("\n".join(questions) + "\n", encoding="utf-8")
    return path


def pool_ids(page) -> list[str]:
    return page.eval_on_selector_all("#label-pool li.pool-card", "cards => cards.map(card => card.dataset.chunk)")


def checked(page) -> list[str]:
    return page.eval_on_selector_all("#label-pool .pool-check:checked", "boxes => boxes.map(box => box.dataset.chunk)")


def rows(project, set_name: str) -> dict[str, dict]:
    return {row["query"]: row for row in read_jsonl(project / f"data/golden/{set_name}.jsonl")}


def open_label(page, url: str, set_name: str) -> None:
    page.goto(f"{url}/label?set={set_name}")
    page.wait_for_selector("#label-progress .progress-counts")


def import_questions(page, path) -> None:
    page.set_input_files("#label-file", str(path))
    page.click("#label-import")
    page.wait_for_selector(".import-summary")


def test_import_label_by_keyboard_save_and_find_the_labels_after_a_reload(tab, label_server, label_project, tmp_path):
    questions = ["契税的税率是多少", "国歌可以在婚礼上唱吗", "买电动车要交购置税吗"]
    open_label(tab, label_server.url, "keyboard")
    import_questions(tab, write_questions(tmp_path, "questions.txt", questions))
    assert "questions.txt (utf-8): 3 questions; 3 queued." in tab.inner_text(".import-summary")
    tab.wait_for_selector("#label-pool li.pool-card")
    assert tab.inner_text("#label-question-text") == questions[0]
    assert "data/golden/keyboard.jsonl" in tab.inner_text("#label-progress") and "0 of 3" in tab.inner_text("#label-progress")
    ids = pool_ids(tab)
    assert len(ids) >= 3
    for key in ("j", "x", "j", "j", "x", "k"):  # mark the first and third chunk, end on the second
        tab.keyboard.press(key)
    assert checked(tab) == [ids[0], ids[2]]
    assert tab.evaluate("() => document.activeElement.dataset.chunk") == ids[1]
    shot(tab, "label-keyboard", full_page=False)
    tab.keyboard.press("Enter")
    saved = tab.wait_for_selector("#label-saved").inner_text()
    row = rows(label_project, "keyboard")[questions[0]]
    assert {p["chunk"] for p in row["passages"]} == {ids[0], ids[2]}
    assert f"Saved to data/golden/keyboard.jsonl (line 1): 2 relevant chunk(s), split {row['split']}" in saved
    assert row["labelling"]["pool"] == len(ids) and row["labelling"]["seen"] >= 3  # three had the keyboard focus
    assert 0 < row["labelling"]["seconds"] < 120
    tab.wait_for_function(f"() => document.querySelector('#label-question-text').textContent === {json.dumps(questions[1])}")
    tab.keyboard.press("0")  # none of these answers it
    tab.wait_for_function(f"() => document.querySelector('#label-question-text').textContent === {json.dumps(questions[2])}")
    assert rows(label_project, "keyboard")[questions[1]]["no_relevant_chunk"] is True
    assert "2 of 3" in tab.inner_text("#label-progress")

    tab.reload()
    tab.wait_for_selector("#label-pool li.pool-card")
    assert tab.inner_text("#label-question-text") == questions[2]  # the address kept the question on screen
    tab.click("#label-queue summary")
    tab.click(f"#label-queue-list li[data-id='{row['id']}'] a")
    tab.wait_for_function(f"() => document.querySelector('#label-question-text').textContent === {json.dumps(questions[0])}")
    assert sorted(checked(tab)) == sorted([ids[0], ids[2]])
    assert "Labelled before (2 marked" in tab.inner_text("#label-question")


def test_two_tabs_label_two_different_questions_and_both_are_saved(browser, label_server, label_project, tmp_path):
    questions = ["车辆购置税的税率是多少", "国歌法什么时候施行"]
    first, second = Page(browser, label_server.url), Page(browser, label_server.url)
    try:
        open_label(first.page, label_server.url, "tabs")
        import_questions(first.page, write_questions(tmp_path, "two.txt", questions))
        first.page.wait_for_selector("#label-pool li.pool-card")
        open_label(second.page, label_server.url, "tabs")
        second.page.wait_for_selector("#label-pool li.pool-card")
        assert {first.page.inner_text("#label-question-text"), second.page.inner_text("#label-question-text")} == set(questions)
        for page in (first.page, second.page):
            page.keyboard.press("j")
            page.keyboard.press("x")
            page.keyboard.press("Enter")
        for page in (first.page, second.page):
            page.wait_for_selector("#label-saved")
        labelled = rows(label_project, "tabs")
        assert set(labelled) == set(questions) and all(len(row["passages"]) == 1 for row in labelled.values())
        for page in (first.page, second.page):
            page.wait_for_selector("#label-done")  # nothing left for either tab
    finally:
        first.close()
        second.close()


def test_a_stale_tab_is_told_of_the_conflict_and_loses_nothing(browser, label_server, label_project, tmp_path):
    question = "契税由哪个部门征收"
    first, stale = Page(browser, label_server.url), Page(browser, label_server.url)
    try:
        open_label(first.page, label_server.url, "stale")
        import_questions(first.page, write_questions(tmp_path, "one.txt", [question]))
        first.page.wait_for_selector("#label-pool li.pool-card")
        question_id = re.search(r"id=(lab-[0-9a-f]{12})", first.page.url).group(1)
        stale.page.goto(f"{label_server.url}/label?set=stale&id={question_id}")  # the same question, by its link
        stale.page.wait_for_selector("#label-pool li.pool-card")
        assert "Another tab is labelling this question too" in stale.page.inner_text("#label-question")
        ids = pool_ids(first.page)
        first.page.keyboard.press("j")
        first.page.keyboard.press("x")
        first.page.keyboard.press("Enter")
        first.page.wait_for_selector("#label-saved")
        theirs = (label_project / "data/golden/stale.jsonl").read_bytes()

        for key in ("j", "j", "x", "n"):
            stale.page.keyboard.press(key)
        stale.page.keyboard.type("我认为第二段才对")
        stale.page.keyboard.press("Control+Enter")
        conflict = stale.page.wait_for_selector(".conflict").inner_text()
        assert "Another tab or person saved this question" in conflict and "They marked 1 chunk" in conflict
        assert checked(stale.page) == [ids[1]] and stale.page.input_value("#label-note") == "我认为第二段才对"
        assert stale.page.eval_on_selector_all("#label-pool li.theirs", "cards => cards.map(c => c.dataset.chunk)") == [ids[0]]
        assert (label_project / "data/golden/stale.jsonl").read_bytes() == theirs  # nothing overwritten
        shot(stale.page, "label-conflict", full_page=False)
        stale.page.click("#label-load-theirs")
        stale.page.wait_for_function(f"() => [...document.querySelectorAll('.pool-check:checked')].map(b => b.dataset.chunk)"
                                     f".join() === {json.dumps(ids[0])}")
    finally:
        first.close()
        stale.close()


def test_a_set_labelled_in_the_browser_is_what_dvc_repro_selects_on_and_reports(browser, label_server, label_project,
                                                                                ui_project, tmp_path):
    # The "person" knows the answers: each question's articles in the tiny golden set, resolved to chunks.
    chunks = [Chunk(**row) for row in read_jsonl(label_project / "data/corpus/chunks.jsonl")]
    golden = load_golden(label_project / GOLDEN)
    answers = {q.query: set(chunk_ids) for q, chunk_ids in
               ((q, resolve(golden, chunks)[q.id]) for q in golden.questions) if q.language == "zh"}
    opened = Page(browser, label_server.url)
    page = opened.page
    try:
        open_label(page, label_server.url, "pipeline")
        import_questions(page, write_questions(tmp_path, "golden.txt", list(answers)))
        for _ in answers:
            page.wait_for_selector("#label-pool li.pool-card")
            question = page.inner_text("#label-question-text")
            found = [cid for cid in pool_ids(page) if cid in answers[question]]
            for chunk_id in found:  # by mouse this time: a click on the card marks it
                page.click(f"#label-pool li[data-chunk='{chunk_id}'] .text")
            assert sorted(checked(page)) == sorted(found)
            page.click("#label-save" if found else "#label-none")
            page.wait_for_function(f"() => document.querySelector('#label-done') || document.querySelector("
                                   f"'#label-question-text').textContent !== {json.dumps(question)}")
        page.wait_for_selector("#label-done")
    finally:
        opened.close()
    labelled = list(rows(label_project, "pipeline").values())
    assert len(labelled) == len(answers)
    scored = {split: [r for r in labelled if r["split"] == split and r.get("passages")] for split in ("val", "test")}
    assert scored["val"] and scored["test"], "the split rule put every labelled question in one split"

    # A second clone of the run, with the labelled set as its only golden set about these documents, by the default
    # pattern data/golden/*.jsonl (the bundled laws' sets there are about other documents and are skipped).
    project = copy_project(ui_project, tmp_path / "clone")
    shutil.copy2(label_project / "data/golden/pipeline.jsonl", project / "data/golden/pipeline.jsonl")
    (project / GOLDEN).unlink()
    update_params(project, {"evaluate": {"golden_sets": ["data/golden/*.jsonl"]}})
    run(["dvc", "repro"], project)
    metrics, train = read_json(project / "metrics/eval.json"), read_json(project / "metrics/train.json")
    assert metrics["golden_test_zh_incl_trained_passages"]["queries"] == len(scored["test"])
    assert train["selected_on"] == "golden val" and train["val_queries"] == len(scored["val"])
    assert metrics["tuning_queries"] == len(scored["val"])  # the fusion was chosen on the labelled val questions too
    per_query = {row["id"] for row in read_jsonl(project / "data/eval/per_query.jsonl")
                 if row["set"] == "golden_test_zh_incl_trained_passages"}
    assert per_query == {r["id"] for r in scored["test"]}


def _report_with(route, change) -> None:
    """The server's real report, changed by ``change``: the page must draw whatever verdict the report holds."""
    response = route.fetch()
    report = response.json()
    change(report)
    route.fulfill(response=response, body=json.dumps(report))


def verdict_shown(page) -> dict:
    return page.evaluate("""() => { const block = document.querySelector('#verdict');
        return block && {lines: [...block.querySelectorAll('.verdict-lines li')].map(li => li.textContent),
                         judge: (block.querySelector('.judge') || {}).textContent || null,
                         notice: (block.querySelector('.notice.warning') || {}).textContent || null,
                         first: block.nextElementSibling.classList.contains('toc')}; }""")


def test_the_report_opens_with_its_verdict_and_warns_when_the_judge_is_synthetic(browser, ui_server):
    code, report = ui_server.get("/api/report")
    verdict = report["verdict"]  # the run's own, judged on its golden test set
    assert code == 200 and verdict["lines"]
    opened = Page(browser, ui_server.url)
    try:
        opened.page.goto(ui_server.url + "/report")
        opened.page.wait_for_selector("#verdict")
        shown = verdict_shown(opened.page)
        assert shown["lines"] == verdict["lines"] and shown["first"]  # at the top, before the contents and every table
        assert shown["judge"] == f"Judged on: {verdict['judge']} ({verdict['judge_questions']} questions)"
        assert (shown["notice"] is None) == (verdict["notice"] is None)
        # A run with no golden set: the verdict's notice is a warning that leads to the labelling view.
        notice = "The judge is synthetic and lexical: its questions share 80% of their words with their passages (people's: 34-50%)."
        opened.page.route("**/api/report", lambda route: _report_with(route, lambda r: r["verdict"].update(notice=notice)))
        opened.page.goto(ui_server.url + "/report")
        opened.page.wait_for_selector("#verdict .notice.warning")
        assert notice in verdict_shown(opened.page)["notice"]
        opened.page.click("#verdict .notice.warning a")
        opened.page.wait_for_selector("#label-root")
        # The labelling view (it puts the set it opens in the query string once a set exists: ?set=<name>).
        assert urlsplit(opened.page.url).path == "/label"
        opened.page.unroute("**/api/report")
        # Metrics from before the verdict existed: nothing drawn, the report as before.
        opened.page.route("**/api/report", lambda route: _report_with(route, lambda r: r.pop("verdict", None)))
        opened.page.goto(ui_server.url + "/report")
        opened.page.wait_for_selector("table.metrics")
        assert opened.page.locator("#verdict").count() == 0
    finally:
        opened.close()


def test_the_labelling_view_fits_a_phone_s_width(browser, label_server):
    opened = Page(browser, label_server.url, width=390, height=844)
    try:
        opened.page.goto(label_server.url + "/label?set=keyboard")
        opened.page.wait_for_selector("#label-pool li.pool-card, #label-done")
        assert opened.page.evaluate("() => document.documentElement.scrollWidth") <= 390
        shot(opened.page, "phone-label")
    finally:
        opened.close()


def test_a_bad_question_file_is_explained_on_the_page_and_nothing_is_queued(tab, label_server, tmp_path):
    open_label(tab, label_server.url, "bad-files")
    huge = tmp_path / "huge.txt"
    huge.write_bytes(b"x" * (2 * 1024 * 1024 + 1))
    tab.set_input_files("#label-file", str(huge))
    tab.click("#label-import")
    assert "at most 2,097,152 bytes" in tab.wait_for_selector("#label-import-report .notice.error").inner_text()
    binary = tmp_path / "questions.csv"
    binary.write_bytes(b"PK\x03\x04\x14\x00\x06\x00")  # an .xlsx renamed
    tab.set_input_files("#label-file", str(binary))
    tab.click("#label-import")
    tab.wait_for_function("() => document.querySelector('#label-import-report').textContent.includes('NUL byte')")
    assert "questions.csv is a binary file, not text: byte 5 is a NUL byte" in tab.inner_text("#label-import-report")
    assert "0 of 0 imported" in tab.inner_text("#label-progress")
