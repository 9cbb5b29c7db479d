"""The page in real headless Chromium (the Debian package, driven by Playwright), against `python -m stages.ui`.

What a person does: open a question's link and read four filled columns; type a question and press Enter;
filter the known questions and click one, and see its labelled chunk marked with the ranks evaluate found; read
the report, whose tables are metrics/eval.json's numbers; click an error-analysis row and land on that
question's search view; see bad input and a missing model explained on the page. Every request the page makes
goes to the UI server itself (anything else is blocked and recorded as a failure). Screenshots are kept in
test-artefacts/ui/ (or $UI_TEST_ARTEFACTS).
"""

from __future__ import annotations

import csv
import re
from urllib.parse import parse_qs, quote, urlparse

import pytest

from stages.lib.common.files import read_json, read_jsonl
from tests.ui.conftest import QUESTIONS, Page, broken_copy, shot, start_ui, stop_ui

RETRIEVERS = ["base", "finetuned", "bm25", "hybrid"]


@pytest.fixture
def page(browser, ui_server):
    opened = Page(browser, ui_server.url)
    yield opened.page
    opened.close()


def column_results(page) -> dict[str, list[dict]]:
    return page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('.column')].map(column => [
        column.dataset.retriever,
        [...column.querySelectorAll('.result')].map(result => ({
            id: result.dataset.chunk, text: result.querySelector('.text').textContent,
            labelled: result.classList.contains('labelled'),
            marked: [...result.querySelectorAll('mark')].map(mark => mark.textContent)}))]))""")


@pytest.mark.slow
def test_a_question_in_the_address_fills_four_columns_with_real_chunks(page, ui_server, ui_project):
    question = "买房子的契税税率是多少"
    page.goto(f"{ui_server.url}/?q={quote(question)}&k=4")
    page.wait_for_selector(".column .result")
    columns = column_results(page)
    assert list(columns) == RETRIEVERS
    texts = {row["id"]: row["text"] for row in read_jsonl(ui_project / "data/corpus/chunks.jsonl")}
    for name, results in columns.items():
        assert len(results) == 4, name
        assert all(result["text"] == texts[result["id"]] for result in results), name
    assert any("契税" in result["marked"] for result in columns["bm25"])  # the shared words are highlighted
    assert page.input_value("#q") == question
    assert "Answered in" in page.inner_text("#search-footer")
    shot(page, "search-question")


@pytest.mark.slow
def test_typing_a_question_and_pressing_enter_searches_and_makes_a_link(page, ui_server):
    page.goto(ui_server.url + "/")
    page.fill("#q", "国歌可以用在广告里吗")
    page.fill("#k", "2")
    page.press("#q", "Enter")
    page.wait_for_selector(".column .result")
    assert parse_qs(urlparse(page.url).query) == {"q": ["国歌可以用在广告里吗"], "k": ["2"]}
    assert all(len(results) == 2 for results in column_results(page).values())


@pytest.mark.slow
def test_picking_a_golden_question_marks_its_labelled_chunk_with_evaluate_s_ranks(page, ui_server, ui_project):
    rows = {row["id"]: row for row in read_jsonl(ui_project / "data/eval/per_query.jsonl")
            if row["set"] == "golden_test_zh_incl_trained_passages"}
    # A test question that some retriever found in its top 10: its labelled chunk is on screen at k 10.
    qid = next(q for q, row in rows.items() if any(row[f"{r}_rank"] and row[f"{r}_rank"] <= 10 for r in RETRIEVERS))
    text = next(q for i, (_, _, q, _, _) in enumerate(QUESTIONS) if f"ui-{i}" == qid)
    page.goto(ui_server.url + "/?k=10")
    page.select_option("#set", "golden/tiny_ui")
    page.fill("#filter", text[:4])
    page.click(f"#known-list a[data-qid='{qid}']")
    page.wait_for_selector(".known-info")
    page.wait_for_selector(".column .result")
    assert parse_qs(urlparse(page.url).query) == {"set": ["golden/tiny_ui"], "qid": [qid], "k": ["10"]}
    assert page.input_value("#q") == text
    row = rows[qid]
    firsts = page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('.column')].map(
        column => [column.dataset.retriever, column.querySelector('.first-rank').dataset.rank]))""")
    assert firsts == {name: str(row[f"{name}_rank"]) if row[f"{name}_rank"] else "" for name in RETRIEVERS}
    columns = column_results(page)
    for name, results in columns.items():
        assert [r["labelled"] for r in results] == [r["id"] in row["relevant"] for r in results], name
    assert any(r["labelled"] for results in columns.values() for r in results)
    assert page.locator(".result.labelled .badge").first.inner_text() == "✓ labelled"
    shot(page, "search-golden-question")


@pytest.mark.slow
def test_the_report_shows_metrics_eval_json_and_a_row_leads_to_its_question(page, ui_server, ui_project):
    metrics = read_json(ui_project / "metrics/eval.json")
    page.goto(ui_server.url + "/report")
    page.wait_for_selector("table.metrics")
    shown = page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('table.metrics')].map(table => [
        table.dataset.set, Object.fromEntries([...table.querySelectorAll('tbody tr')].map(row => [row.dataset.retriever,
            Object.fromEntries([...row.querySelectorAll('td[data-key]')].map(cell =>
                [cell.dataset.key, (cell.querySelector('.value') || cell).textContent]))]))]))""")
    sets = {"test": {k: v for k, v in metrics.items() if isinstance(v, dict) and "hit@5" in v},
            **{k: v for k, v in metrics.items() if k.startswith("golden_test_")}}
    assert set(shown) == set(sets)
    checked = 0
    for name, rows in sets.items():
        for retriever, values in rows.items():
            if not isinstance(values, dict):
                continue
            for key in ("hit@1", "hit@3", "hit@5", "hit@10", "mrr@10", "ndcg@10", "hit@5_diff_vs_bm25", "mrr@10_diff_vs_base"):
                if key in values:
                    expected = f"{values[key]:.3f}" if "diff" not in key else f"{'+' if values[key] >= 0 else '−'}{abs(values[key]):.3f}"
                    assert shown[name][retriever][key] == expected, (name, retriever, key)
                    checked += 1
    assert checked > 100
    with (ui_project / "metrics/hit_rate.csv").open(encoding="utf-8") as curve:
        lines = {(row["question_set"], row["retriever"]) for row in csv.DictReader(curve)}
    assert page.locator("#curves svg polyline").count() == len(lines)  # one line per set and retriever
    # Every set by word-overlap band: metrics/eval_by_overlap.json's hit@5, "–" for a band with no question.
    bands = read_json(ui_project / "metrics/eval_by_overlap.json")
    cells = page.evaluate("""() => [...document.querySelectorAll('table.by-overlap td[data-band]')].map(cell =>
        [cell.closest('tr').dataset.set, cell.closest('tr').dataset.retriever, cell.dataset.band, cell.textContent])""")
    assert len(cells) == sum(4 * 3 for _ in bands)
    for set_name, retriever, band, text in cells:
        block = bands[set_name][band]
        assert text == (f"{block[retriever]['hit@5']:.3f}" if block["queries"] else "–"), (set_name, retriever, band)
    shot(page, "report")

    link = page.locator("#error-tables a[data-nav]").first
    href = link.get_attribute("href")
    question = link.inner_text()
    link.click()
    page.wait_for_selector(".known-info")
    page.wait_for_selector(".column .result")
    assert urlparse(page.url).path == "/" and page.url.endswith(href)
    assert page.input_value("#q") == question
    assert page.locator(".known-info").get_attribute("data-qid") == parse_qs(urlparse(href).query)["qid"][0]
    page.go_back()
    page.wait_for_selector("table.metrics")  # back to the report


@pytest.mark.slow
def test_bad_input_is_explained_on_the_page(page, ui_server):
    page.goto(ui_server.url + "/")
    page.fill("#q", "   ")
    page.click("#search-button")
    assert "The question is empty" in page.locator("#notices .notice.error").inner_text()
    page.fill("#q", "证券" * 5000)
    page.click("#search-button")
    page.wait_for_selector(".column .result")
    warning = page.locator("#notices .notice.warning").inner_text()
    assert "10,000 characters" in warning and "model.max_seq_length" in warning
    assert "too long to keep in the address" in page.inner_text("#notices")
    page.goto(ui_server.url + "/?set=golden/tiny_ui&qid=no-such-question")
    assert "no question 'no-such-question'" in page.locator("#notices .notice.error").inner_text().lower()
    page.goto(ui_server.url + "/no-such-page")
    assert "There is no page /no-such-page" in page.locator("#view .notice.error").inner_text()
    page.goto(ui_server.url + "/?q=" + quote("国歌"))
    page.wait_for_selector(".column .result")  # still serving


@pytest.mark.slow
@pytest.mark.parametrize("path", ["/?set=golden/tiny_ui&qid=ui-4&k=3", "/report"])
def test_readable_on_a_phone_s_width(browser, ui_server, path):
    opened = Page(browser, ui_server.url, width=390, height=844)
    try:
        opened.page.goto(ui_server.url + path)
        opened.page.wait_for_selector(".column .result, table.metrics")
        # Nothing wider than the screen but the tables, which scroll in their own box.
        overflow = opened.page.evaluate("() => document.documentElement.scrollWidth")
        assert overflow <= 390
        shot(opened.page, "phone-" + ("report" if "report" in path else "search"))
    finally:
        opened.close()


@pytest.mark.slow
def test_a_missing_model_is_explained_on_the_page_and_the_report_still_shown(browser, ui_project, tmp_path):
    project = broken_copy(ui_project, tmp_path / "run", without=("models/trained",))
    server = start_ui(project, tmp_path / "ui.log")
    opened = Page(browser, server.url)
    try:
        opened.page.goto(server.url + "/?q=" + quote("国歌"))
        banner = opened.page.locator("#problems .notice[data-kind='missing']").first.inner_text()
        assert "models/trained is missing: run `dvc repro train`" in banner
        error = opened.page.locator("#notices .notice.error")
        assert "models/trained is missing" in error.inner_text() and error.locator("code.fix").inner_text() == "dvc repro train"
        opened.page.click("#nav-report")
        opened.page.wait_for_selector("table.metrics")
        shot(opened.page, "missing-model", full_page=False)
    finally:
        opened.close()
        stop_ui(server)


def test_the_page_s_own_files_name_nothing_elsewhere():
    from stages.lib.ui.app import STATIC

    for path in STATIC.iterdir():
        text = path.read_text(encoding="utf-8")
        found = re.findall(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, flags=re.IGNORECASE)
        assert all(url.endswith("www.w3.org") for url in found), (path.name, found)  # the SVG namespace, a name
