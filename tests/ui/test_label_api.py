"""The labelling view's JSON over real HTTP (`python -m stages.ui` on a copy of the tiny run): importing a question
list, the next question per tab, the pool (every retriever's top k as the search view ranks them, no retriever
named), saving rows the golden loader reads back, conflicts and hand-broken files refused with nothing lost, every
bad input answered with a message, and the server serving on. Each test labels its own set."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest

from stages.lib.common.files import read_jsonl
from stages.lib.documents.chunking import Chunk
from stages.lib.labelling.question_identity import question_id, question_split
from stages.lib.retrieval.golden import load_golden, resolve
from tests.helpers import repository_params
from tests.ui.conftest import broken_copy, start_ui, stop_ui

pytestmark = pytest.mark.slow  # runs the pipeline, a stage, a browser or a server: not in `make test-quick`

LABELLING = repository_params().labelling
QUESTIONS = ["契税的税率是多少", "买车要交哪个税", "国歌能不能用在商业广告里", "继承房产需要交契税吗", "学校要教学生唱国歌吗"]


def import_file(server, set_name: str, name: str, data: bytes) -> tuple[int, dict]:
    return server.post(f"/api/label/import?{urlencode({'set': set_name, 'name': name})}", data, "application/octet-stream")


def chunks(project) -> dict[str, Chunk]:
    return {row["id"]: Chunk(**row) for row in read_jsonl(project / "data/corpus/chunks.jsonl")}


def save_body(set_name: str, tab: str, shown: dict, relevant: list[str], **changes) -> dict:
    question = shown["question"]
    pool = [chunk["id"] for chunk in shown["pool"]]
    return {"set": set_name, "tab": tab, "id": question["id"], "query": question["query"], "relevant": relevant,
            "no_relevant_chunk": False, "note": "", "revision": shown["revision"], "seconds": 9.5, "pool": pool,
            "seen": pool[:3], **changes}


def test_importing_a_question_list_queues_it_and_names_duplicates_and_long_questions(label_server, label_project):
    long = "契税" * 150  # 300 characters: well past the tiny run's 96 tokens
    content = "\ufeff" + "\n".join(["question,source", *[f"{q},log" for q in QUESTIONS[:3]], f"{QUESTIONS[0]}。,log", "",
                                   f"{long},log"]) + "\n"
    code, answer = import_file(label_server, "import", "log.csv", content.encode("utf-8"))
    assert code == 200, answer
    assert answer["encoding"] == "utf-8-sig" and answer["column"] == "question"
    assert answer["found"] == 4 and answer["added"] == 4 and answer["duplicates"] == [{"line": 5, "repeats": 2}]
    duplicate, cut = answer["warnings"]
    assert "log.csv: 1 duplicate question(s)" in duplicate and "line 5 repeats line 2" in duplicate
    assert cut.startswith("log.csv, line 7: the question is 300 characters") and "model.max_seq_length" in cut
    code, queue = label_server.get("/api/label/queue?set=import")
    assert code == 200 and [q["query"] for q in queue["questions"]] == [*QUESTIONS[:3], long]
    assert [q["origin"] for q in queue["questions"]] == [f"log.csv, line {n}" for n in (2, 3, 4, 7)]
    assert queue["imported"] == 4 and queue["done"] == 0 and queue["file"] == "data/golden/import.jsonl"
    assert (label_project / "data/labelling/import.queue.jsonl").is_file() and not (label_project / "data/golden/import.jsonl").exists()
    # Again, as another file format: nothing queued twice.
    code, again = import_file(label_server, "import", "more.jsonl", "\n".join(
        json.dumps({"query": q}, ensure_ascii=False) for q in QUESTIONS).encode())
    assert code == 200 and again["added"] == 2 and again["already_queued"] == 3
    # The long question's pool is searched with what the models read, and says so.
    code, shown = label_server.post("/api/label/pool", {"set": "import", "tab": "tab-a", "id": question_id(long)})
    assert code == 200 and "300 characters" in shown["cut"] and shown["question"]["query"] == long


def test_two_tabs_get_different_questions_and_the_pool_is_every_retriever_s_top_k(label_server):
    assert import_file(label_server, "pool", "q.txt", "\n".join(QUESTIONS).encode())[0] == 200
    code, first = label_server.post("/api/label/next", {"set": "pool", "tab": "tab-a"})
    assert code == 200, first
    code, second = label_server.post("/api/label/next", {"set": "pool", "tab": "tab-b"})
    assert code == 200 and first["question"]["query"] == QUESTIONS[0] and second["question"]["query"] == QUESTIONS[1]
    for shown in (first, second):
        question = shown["question"]["query"]
        assert shown["question"]["split"] == question_split(question, LABELLING.split_seed, LABELLING.val_fraction)
        assert shown["question"]["id"] == question_id(question) and shown["revision"] == 0 and shown["marked"] == []
        code, search = label_server.post("/api/search", {"q": question, "k": LABELLING.pool_depth})
        union = {result["id"] for column in search["columns"] for result in column["results"]}
        assert {chunk["id"] for chunk in shown["pool"]} == union  # the four columns' top k, nothing else
        assert len(shown["pool"]) == len(union)
        for chunk in shown["pool"]:  # what the page gets: no retriever, rank or score
            assert set(chunk) == {"id", "section", "source", "segments"}
        assert not {"retriever", "rank", "score", "columns"} & set(shown)
    # The same question opened again (a reload): the same pool in the same order.
    code, reloaded = label_server.post("/api/label/pool", {"set": "pool", "tab": "tab-a", "id": first["question"]["id"]})
    assert [c["id"] for c in reloaded["pool"]] == [c["id"] for c in first["pool"]] and not reloaded["held_elsewhere"]
    code, elsewhere = label_server.post("/api/label/pool", {"set": "pool", "tab": "tab-c", "id": first["question"]["id"]})
    assert code == 200 and elsewhere["held_elsewhere"]  # allowed, and said


def test_a_save_writes_a_golden_row_and_a_stale_tab_gets_a_conflict_with_nothing_lost(label_server, label_project):
    code, shown = label_server.post("/api/label/pool", {"set": "save", "tab": "tab-a", "query": QUESTIONS[2]})
    assert code == 200, shown
    code, stale = label_server.post("/api/label/pool", {"set": "save", "tab": "tab-b", "id": shown["question"]["id"]})
    pool = [chunk["id"] for chunk in shown["pool"]]
    code, saved = label_server.post("/api/label/save", save_body("save", "tab-a", shown, pool[:2], note="第八条"))
    assert code == 200, saved
    split = question_split(QUESTIONS[2], LABELLING.split_seed, LABELLING.val_fraction)
    assert saved["saved"] == {"id": question_id(QUESTIONS[2]), "split": split, "revision": 1, "line": 1}
    assert saved["message"].startswith("Saved to data/golden/save.jsonl (line 1): 2 relevant chunk(s), split " + split)
    golden_file = label_project / "data/golden/save.jsonl"
    written = golden_file.read_bytes()
    row = json.loads(written)
    assert row["labelling"]["seconds"] == 9.5 and row["labelling"]["pool"] == len(pool) and row["labelling"]["seen"] == 3
    assert row["labelling"]["pool_depth"] == LABELLING.pool_depth and row["note"] == "第八条" and row["style"] == "labelled"
    corpus = chunks(label_project)
    assert row["passages"] == [{"chunk": c, "source": corpus[c].source, "text": corpus[c].text}
                               for c in sorted(pool[:2], key=lambda c: (corpus[c].source, corpus[c].position))]
    golden = load_golden(golden_file)  # what evaluate reads
    assert sorted(resolve(golden, list(corpus.values()))[row["id"]]) == sorted(pool[:2])
    # The second tab loaded revision 0 before the save: its save is refused, and says whose labels are there.
    code, conflict = label_server.post("/api/label/save", save_body("save", "tab-b", stale, pool[2:3]))
    assert code == 409 and conflict["error"]["kind"] == "conflict"
    assert "Another tab or person saved this question" in conflict["error"]["message"]
    assert sorted(conflict["error"]["theirs"]["marked"]) == sorted(pool[:2]) and conflict["error"]["theirs"]["revision"] == 1
    assert golden_file.read_bytes() == written
    # Opened again, the question shows its labels and revision; saving on it replaces the row in place.
    code, again = label_server.post("/api/label/pool", {"set": "save", "tab": "tab-b", "id": row["id"]})
    assert sorted(again["marked"]) == sorted(pool[:2]) and again["revision"] == 1 and again["note"] == "第八条"
    code, none = label_server.post("/api/label/save", save_body("save", "tab-b", again, [], no_relevant_chunk=True))
    assert code == 200 and none["saved"]["revision"] == 2 and none["saved"]["line"] == 1
    assert load_golden(golden_file).questions[0].no_relevant_chunk
    code, queue = label_server.get("/api/label/queue?set=save")
    assert queue["done"] == 1 and queue["no_relevant_chunk"] == 1 and queue["questions"][0]["done"]
    assert queue["median_seconds"] == 9.5


def test_a_golden_file_edited_into_invalid_json_is_never_overwritten(label_server, label_project):
    code, shown = label_server.post("/api/label/pool", {"set": "edited", "tab": "tab-a", "query": QUESTIONS[3]})
    golden_file = label_project / "data/golden/edited.jsonl"
    golden_file.write_text('{"id": "h-1", "query": "一", "split": "val", "articles": ["第一条"]}\n{"id": "h-2", "query": \n',
                           encoding="utf-8")
    before = golden_file.read_bytes()
    code, answer = label_server.post("/api/label/save", save_body("edited", "tab-a", shown, [shown["pool"][0]["id"]]))
    assert code == 409 and answer["error"]["kind"] == "invalid_file"
    assert "data/golden/edited.jsonl, line 2: not valid JSON" in answer["error"]["message"]
    assert golden_file.read_bytes() == before
    code, queue = label_server.get("/api/label/queue?set=edited")
    assert code == 200 and "line 2: not valid JSON" in queue["problem"]
    code, answer = label_server.post("/api/label/next", {"set": "edited", "tab": "tab-a"})
    assert code == 409 and "line 2" in answer["error"]["message"]


def test_the_sets_list_shows_each_labelled_set_with_its_progress(label_server):
    code, shown = label_server.post("/api/label/pool", {"set": "listed", "tab": "tab-a", "query": QUESTIONS[4]})
    label_server.post("/api/label/save", save_body("listed", "tab-a", shown, [shown["pool"][0]["id"]]))
    code, sets = label_server.get("/api/label/sets")
    assert code == 200 and sets["search_ready"] and sets["default"] == "labelled" and sets["pool_depth"] == LABELLING.pool_depth
    listed = {entry["set"]: entry for entry in sets["sets"]}
    assert listed["listed"]["done"] == 1 and listed["listed"]["imported"] == 1 and listed["listed"]["labelled"] == 1
    assert "tiny_ui" not in listed  # a golden set written by hand is not a labelling set


@pytest.mark.parametrize(("path", "body", "status", "words"), [
    ("/api/label/queue?set=../evil", None, 400, "cannot be a file name here"),
    ("/api/label/queue?set=", None, 400, "The set name is empty"),
    ("/api/label/next", {"set": "bad", "tab": "no spaces"}, 400, "tab must be"),
    ("/api/label/next", {"set": "a/b", "tab": "t"}, 400, "cannot be a file name"),
    ("/api/label/pool", {"set": "bad", "tab": "t", "query": "  "}, 400, "The question is empty"),
    ("/api/label/pool", {"set": "bad", "tab": "t", "id": "lab-000000000000"}, 404, "There is no question 'lab-000000000000'"),
    ("/api/label/pool", {"set": "bad", "tab": "t"}, 400, "Name the question"),
    ("/api/label/save", {"set": "bad", "tab": "t", "id": "lab-x", "query": "契税"}, 400, "is not the id of this question"),
    ("/api/label/save", {"set": "bad", "tab": "t", "id": question_id("契税"), "query": "契税", "relevant": ["nope"], "seconds": 1,
                         "revision": 0}, 400, "chunk 'nope' is not in this corpus"),
    ("/api/label/save", {"set": "bad", "tab": "t", "id": question_id("契税"), "query": "契税", "relevant": [], "seconds": -1,
                         "revision": 0}, 400, "seconds is -1"),
    ("/api/label/save", {"set": "bad", "tab": "t", "id": question_id("契税"), "query": "契税", "relevant": [], "seconds": 1,
                         "revision": 0}, 400, "Mark at least one chunk"),
    ("/api/label/save", b"[1]", 400, "must be a JSON object"),
    ("/api/label/save", b"{nope", 400, "not JSON"),
])
def test_bad_input_gets_a_clear_message_and_the_server_keeps_serving(label_server, path, body, status, words):
    if body is None:
        code, answer = label_server.get(path)
    else:
        code, answer = label_server.post(path, body if isinstance(body, bytes) else json.dumps(body).encode())
    assert code == status, answer
    assert words in answer["error"]["message"] and "Traceback" not in answer["error"]["message"]
    assert label_server.get("/api/label/sets")[0] == 200 and label_server.process.poll() is None


@pytest.mark.parametrize(("name", "data", "status", "words"), [
    ("q.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", 400, "q.txt is a binary file, not text: byte 8 is a NUL byte"),
    ("q.txt", b"", 400, "q.txt holds no questions"),
    ("q.docx", b"question", 400, "a question list must be .txt, .csv, .tsv, .jsonl"),
    ("q.jsonl", b'{"query": "ok"}\n{"q": 1}\n', 400, "q.jsonl, line 2: no question"),
    ("huge.txt", b"x" * (2 * 1024 * 1024 + 1), 413, "at most 2,097,152 bytes"),
])
def test_a_bad_question_file_is_refused_with_its_place_named(label_server, name, data, status, words):
    code, answer = import_file(label_server, "refused", name, data)
    assert code == status, answer
    assert words in answer["error"]["message"]
    assert label_server.get("/api/label/queue?set=refused")[1]["imported"] == 0


def test_writes_come_only_from_the_page_itself(label_server):
    import urllib.error
    import urllib.request

    def post(headers: dict) -> int:
        request = urllib.request.Request(label_server.url + "/api/label/next", data=b'{"set": "x", "tab": "t"}',
                                         headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    # A page elsewhere posting to 127.0.0.1 (cross-site request forgery): its Origin, or a form's content type.
    assert post({"Content-Type": "application/json", "Origin": "http://evil.example"}) == 403
    assert post({"Content-Type": "text/plain"}) == 415
    assert post({"Content-Type": "application/json", "Origin": label_server.url}) == 200
    # Behind a reverse proxy that forwards Host: 127.0.0.1 and the page's own name as X-Forwarded-Host.
    assert post({"Content-Type": "application/json", "Origin": "https://labels.example", "X-Forwarded-Host": "labels.example"}) == 200


def test_without_the_models_the_labelling_view_says_it_needs_the_search(ui_project, tmp_path):
    project = broken_copy(ui_project, tmp_path / "run", without=("models/trained",))
    server = start_ui(project, tmp_path / "ui.log")
    try:
        code, sets = server.get("/api/label/sets")
        assert code == 200 and not sets["search_ready"] and "models/trained is missing" in sets["unavailable"]
        code, answer = server.post("/api/label/next", {"set": "labelled", "tab": "t"})
        assert code == 503 and answer["error"]["stage"] == "train"
        assert answer["error"]["message"].startswith("The labelling view needs the search")
        assert "models/trained is missing: run `dvc repro train`" in answer["error"]["message"]
        code, answer = import_file(server, "labelled", "q.txt", b"a question\n")
        assert code == 503 and not (project / "data/labelling").exists()
    finally:
        stop_ui(server)
