"""The UI's JSON over real HTTP (`python -m stages.ui` in its own process): what the page is drawn from.

Checked against the pipeline's own files: the four columns hold the corpus's chunks, a known question's
labelled chunks and first ranks are the ones `evaluate` wrote to data/eval/per_query.jsonl, the report's
numbers are metrics/eval.json's; every bad input gets its JSON message and the server keeps serving; a run
with a missing, invalid or out-of-date output still starts, names the `dvc repro` stage to run, and serves
what it can. Nothing in the run changes.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from stages.lib.common.files import read_json, read_jsonl
from tests.helpers import REPO_ROOT, TINY_ZH_PARAMS, command_env, run, update_params
from tests.ui.conftest import QUESTIONS, broken_copy, start_ui, stop_ui

pytestmark = pytest.mark.slow  # runs the pipeline, a stage, a browser or a server: not in `make test-quick`

RETRIEVERS = ["base", "finetuned", "bm25", "hybrid"]


def chunk_texts(project) -> dict[str, str]:
    return {row["id"]: row["text"] for row in read_jsonl(project / "data/corpus/chunks.jsonl")}


def per_query(project) -> list[dict]:
    return read_jsonl(project / "data/eval/per_query.jsonl")


def test_status_names_the_run_its_sets_and_no_problem(ui_server, ui_project):
    code, status = ui_server.get("/api/status")
    assert code == 200 and status["search_ready"] and not status["checking"]
    assert status["problems"] == [], status["problems"]  # a fresh `dvc repro`: nothing missing, nothing stale
    assert status["corpus_size"] == len(chunk_texts(ui_project))
    sets = {s["id"]: s["count"] for s in status["sets"]}
    test = read_json(ui_project / "data/questions/test.json")
    assert sets["synthetic/test"] == len(test["queries"]) and sets["golden/tiny_ui"] == len(QUESTIONS)
    assert status["models"] == {"base": "models/base", "finetuned": "models/trained"}
    assert "[ui] the outputs match dvc.lock" in ui_server.output()


def test_a_question_gets_four_columns_of_real_chunks_with_the_shared_words_marked(ui_server, ui_project):
    code, view = ui_server.post("/api/search", {"q": "契税的税率是多少", "k": 3})
    assert code == 200, view
    assert [c["retriever"] for c in view["columns"]] == RETRIEVERS
    texts = chunk_texts(ui_project)
    marked = set()
    for column in view["columns"]:
        assert [r["rank"] for r in column["results"]] == [1, 2, 3], column["retriever"]
        for result in column["results"]:
            assert "".join(piece for piece, _ in result["segments"]) == texts[result["id"]]
            marked |= {piece.lower() for piece, shared in result["segments"] if shared}
    # What is marked is made of BM25's words of the question (jieba; neighbouring words mark as one run), all in it.
    terms = set(view["shared_terms"])
    assert terms and all(term in "契税的税率是多少" for term in terms) and "的" not in terms  # no stop words
    assert marked and all(_made_of(piece, terms) for piece in marked), (marked, terms)
    assert any("契税" in piece for piece in marked)
    assert view["known"] is None and view["cut"] is None
    # The hybrid fuses as evaluate chose (its metrics say how), and the models' prompts are the run's.
    metrics = read_json(ui_project / "metrics/eval.json")
    assert ("reciprocal-rank" if metrics["hybrid_fusion"] == "rrf" else "convex") in view["fusion"]
    assert view["fusion"].endswith("as the evaluate stage chose")


def _made_of(piece: str, terms: set[str]) -> bool:
    covered = [False] * len(piece)
    for term in terms:
        start = piece.find(term)
        while start >= 0:
            covered[start:start + len(term)] = [True] * len(term)
            start = piece.find(term, start + 1)
    return all(covered)


def test_every_ranking_is_the_evaluation_s(ui_server, ui_project):
    """The same prompts, precision and fusion as `evaluate`: each retriever's top 3 for the evaluated questions is the
    one per_query.jsonl recorded (BM25 exactly; dense scores of one query alone may differ from a batch's in the
    last bits, so a near-tie may swap: allowed for at most one question in ten)."""
    rows = [row for row in per_query(ui_project) if row["set"] in ("test", "golden_test_zh_incl_trained_passages")]
    assert len(rows) >= 10
    differing = {name: [] for name in RETRIEVERS}
    for row in rows:
        code, view = ui_server.post("/api/search", {"q": row["query"], "k": 3})
        assert code == 200, view
        for column in view["columns"]:
            if [r["id"] for r in column["results"]] != row[f"{column['retriever']}_top3"]:
                differing[column["retriever"]].append(row["id"])
    assert differing["bm25"] == []
    for name in ("base", "finetuned", "hybrid"):
        assert len(differing[name]) <= len(rows) // 10, (name, differing[name])


def test_a_known_question_is_marked_as_evaluate_scored_it(ui_server, ui_project):
    rows = {row["id"]: row for row in per_query(ui_project) if row["set"] == "golden_test_zh_incl_trained_passages"}
    assert rows
    for qid, row in rows.items():
        code, view = ui_server.get(f"/api/search?set=golden/tiny_ui&qid={qid}&k=10")
        assert code == 200, view
        known = view["known"]
        assert known["id"] == qid and known["set"] == "golden/tiny_ui" and known["text"] == row["query"]
        assert sorted(known["relevant"]) == sorted(row["relevant"])
        assert [chunk["id"] for chunk in known["labelled"]] == known["relevant"]
        for column in view["columns"]:
            assert column["first_labelled_rank"] == row[f"{column['retriever']}_rank"], (qid, column["retriever"])
            assert all(r["labelled"] == (r["id"] in row["relevant"]) for r in column["results"])
    # A typed question with the same text (spacing and a final full stop aside, as question files normalise) gets
    # the same labels.
    qid, row = next(iter(rows.items()))
    code, view = ui_server.post("/api/search", {"q": f"  {row['query']}。 "})
    assert code == 200 and view["known"]["id"] == qid


def test_the_question_list_filters_by_text_and_id(ui_server):
    code, found = ui_server.get("/api/questions?set=golden/tiny_ui&filter=%E5%9B%BD%E6%AD%8C")  # 国歌
    assert code == 200
    expected = [f"ui-{i}" for i, (_, _, text, _, _) in enumerate(QUESTIONS) if "国歌" in text]
    assert [q["id"] for q in found["questions"]] == expected and found["total"] == len(expected)
    code, found = ui_server.get("/api/questions?set=golden/tiny_ui&filter=UI-9")
    assert code == 200 and [q["id"] for q in found["questions"]] == ["ui-9"]


def test_the_report_is_the_run_s_files(ui_server, ui_project):
    code, report = ui_server.get("/api/report")
    assert code == 200 and report["problems"] == [] and report["stopped_by"] == []
    metrics = read_json(ui_project / "metrics/eval.json")
    sets = {s["name"]: s for s in report["sets"]}
    assert sets["test"]["rows"]["finetuned"] == metrics["finetuned"]
    golden = [name for name in metrics if name.startswith("golden_test_")]
    assert golden and all(sets[name]["rows"] == {k: v for k, v in metrics[name].items() if isinstance(v, dict)} for name in golden)
    # The golden sets first, the corpus's language first among them; the synthetic split last, as no judge.
    assert report["sets"][0]["name"] == "golden_test_zh_incl_trained_passages" and report["sets"][-1]["name"] == "test"
    assert sets["test"]["verdicts"][0].startswith("Not a judge") and sets["test"]["word_overlap"] == metrics["test_word_overlap"]
    assert report["verdict"]["judge"] == "golden_test_zh_incl_trained_passages"
    assert report["verdict"]["lines"][0].startswith("Judged on") and report["verdict"]["notice"] is None
    assert {block["name"] for block in report["by_overlap"]} == set(read_json(ui_project / "metrics/eval_by_overlap.json"))
    assert any("finetuned − base" in line for line in sets["golden_test_zh_incl_trained_passages"]["verdicts"])
    train = read_json(ui_project / "metrics/train.json")
    assert report["training"]["best_step"] == train["best_step"] and "golden val" in report["training"]["why"]
    curve = report["curves"]["test"]["finetuned"]
    assert [k for k, _ in curve] == list(range(1, 11)) and curve[4][1] == metrics["finetuned"]["hit@5"]
    assert {style["style"] for style in report["by_style"]} == set(read_json(ui_project / "metrics/eval_by_style.json"))
    # Error analysis: every question where the fine-tuned model found its chunk later than the base model, with a link.
    for name, block in report["errors"].items():
        rows = [row for row in per_query(ui_project) if row["set"] == name]
        assert block["total"] == len(rows)
        worse = {row["id"] for row in rows if _rr(row["finetuned_rank"]) < _rr(row["base_rank"])}
        assert {row["id"] for row in block["vs_base"]["lost"]} == worse
        for row in block["vs_base"]["lost"] + block["vs_bm25"]["won"]:
            assert row["link"].startswith(("/?set=golden%2Ftiny_ui&qid=", "/?set=synthetic%2Ftest&qid="))


def _rr(rank):
    return 1 / rank if rank else 0


LONG = "契税" * 5000  # 10,000 characters, words of the corpus (BM25 finds them too)


@pytest.mark.parametrize(("method", "path", "body", "status", "words"), [
    ("POST", "/api/search", {"q": ""}, 400, "empty"),
    ("POST", "/api/search", {"q": "   \n "}, 400, "empty"),
    ("GET", "/api/search?q=", None, 400, "empty"),
    ("POST", "/api/search", {"q": "x" * 100_001}, 413, "100,001 characters"),
    ("POST", "/api/search", {"q": 42}, 400, "must be text"),
    ("POST", "/api/search", {"q": "契税", "k": 0}, 400, "k is 0"),
    ("POST", "/api/search", {"q": "契税", "k": 51}, 400, "between 1 and 50"),
    ("GET", "/api/search?q=x&k=abc", None, 400, "k is 'abc'"),
    ("POST", "/api/search", {"set": "golden/tiny_ui", "qid": "no-such-id"}, 404, "no question 'no-such-id' in golden set"),
    ("POST", "/api/search", {"set": "golden/nope", "qid": "ui-1"}, 404, "golden/tiny_ui"),
    ("POST", "/api/search", {"set": "golden/tiny_ui"}, 400, "both its set and its id"),
    ("POST", "/api/search", b"{not json", 400, "not JSON"),
    ("POST", "/api/search", [1, 2], 400, "JSON object"),
    ("GET", "/api/questions", None, 400, "Name a question set"),
    ("GET", "/api/questions?set=synthetic/nope", None, 404, "synthetic/test"),
    ("GET", "/api/questions?set=synthetic/test&limit=0", None, 400, "limit"),
    ("GET", "/api/nothing", None, 404, "No route /api/nothing"),
    ("PUT", "/api/search", None, 405, "not allowed"),
])
def test_bad_input_gets_a_clear_message_and_the_server_keeps_serving(ui_server, method, path, body, status, words):
    if method == "PUT":
        request = urllib.request.Request(ui_server.url + path, data=b"{}", method="PUT")
        try:
            urllib.request.urlopen(request, timeout=30)
            raise AssertionError("PUT answered 2xx")
        except urllib.error.HTTPError as error:
            code, answer = error.code, json.loads(error.read())
    elif method == "POST":
        code, answer = ui_server.post(path, body if isinstance(body, bytes) else json.dumps(body).encode())
    else:
        code, answer = ui_server.get(path)
    assert code == status, answer
    message = answer["error"]["message"]
    assert words.lower() in message.lower() and "Traceback" not in message
    code, view = ui_server.post("/api/search", {"q": "国歌", "k": 1})
    assert code == 200 and len(view["columns"]) == 4 and ui_server.process.poll() is None


def test_a_10000_character_question_is_cut_to_what_the_models_read_and_says_so(ui_server, ui_project):
    code, view = ui_server.post("/api/search", {"q": LONG, "k": 2})
    assert code == 200, view
    cut = view["cut"]
    max_seq_length = TINY_ZH_PARAMS["model"]["max_seq_length"]
    assert cut["chars"] == 10_000 and cut["max_seq_length"] == max_seq_length and cut["tokens"] > max_seq_length
    assert 0 < cut["chars_read"] < 10_000 and view["question"] == LONG[:cut["chars_read"]]
    assert "10,000 characters" in cut["message"] and "model.max_seq_length" in cut["message"]
    assert all(len(column["results"]) == 2 for column in view["columns"])


def test_pages_allow_nothing_from_elsewhere_and_answer_only_local_names(ui_server):
    with urllib.request.urlopen(ui_server.url + "/report", timeout=30) as response:
        policy = response.headers["Content-Security-Policy"]
        page = response.read().decode()
    assert "default-src 'self'" in policy and "script-src 'self'" in policy and "connect-src 'self'" in policy
    assert 'src="/static/app.js"' in page and "http" not in page.split("<body>")[0].replace('charset="utf-8"', "")
    request = urllib.request.Request(ui_server.url + "/api/status", headers={"Host": "attacker.example"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 400  # a DNS-rebinding page cannot read the corpus through the browser
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(ui_server.url + "/no-such-page", timeout=30)
    assert missing.value.code == 404 and "/static/app.js" in missing.value.read().decode()  # the page says what exists


def test_the_ui_changes_nothing_in_the_run(ui_server, ui_project):
    assert run(["git", "status", "--porcelain"], ui_project).stdout == ""
    assert "up to date" in run(["dvc", "status"], ui_project).stdout


# -- runs with something missing, invalid or out of date ----------------------------------------------------------


def test_a_missing_model_and_a_hand_edited_metric_are_named_and_the_report_still_served(ui_project, tmp_path):
    project = broken_copy(ui_project, tmp_path / "run", without=("models/trained",))
    metrics = read_json(project / "metrics/eval.json")
    metrics["finetuned"]["hit@5"] = 0.999
    (project / "metrics/eval.json").write_text(json.dumps(metrics), encoding="utf-8")
    server = start_ui(project, tmp_path / "ui.log")
    try:
        code, status = server.get("/api/status")
        assert code == 200 and not status["search_ready"]
        problems = {(p["kind"], p["stage"]): p["message"] for p in status["problems"]}
        assert "models/trained is missing: run `dvc repro train`" in problems["missing", "train"]
        stale = problems["stale", "evaluate"]
        assert "metrics/eval.json is not what it wrote" in stale and "its input models/trained is missing" in stale
        assert "run `dvc repro evaluate`" in stale
        assert "its input metrics/eval.json is not the one it ran on" in problems["stale", "model_card"]
        code, answer = server.post("/api/search", {"q": "国歌"})
        assert code == 503 and "models/trained is missing: run `dvc repro train`" in answer["error"]["message"]
        assert answer["error"]["stage"] == "train"
        code, report = server.get("/api/report")
        synthetic = next(block for block in report["sets"] if block["name"] == "test")
        assert code == 200 and synthetic["rows"]["finetuned"]["hit@5"] == 0.999
        assert report["sets"][-1]["name"] == "test"  # the golden sets first: they judge
        assert synthetic["verdicts"][0].startswith("Not a judge")
        code, found = server.get("/api/questions?set=golden/tiny_ui")
        assert code == 200 and found["total"] == len(QUESTIONS)  # known questions need no model
        assert "Traceback" not in server.output()
    finally:
        stop_ui(server)


def test_a_folder_that_is_no_model_a_missing_metric_and_a_changed_param(ui_project, tmp_path):
    project = broken_copy(ui_project, tmp_path / "run", without=("metrics/eval.json",))
    update_params(project, {"evaluate": {"rrf_k": 30}})
    server = start_ui(project, tmp_path / "ui.log", "--finetuned-dir", "data/corpus")
    try:
        code, status = server.get("/api/status")
        problems = status["problems"]
        assert any("data/corpus is not a sentence-transformers folder (it has no modules.json)" in p["message"]
                   and "--finetuned-dir" in p["message"] for p in problems)
        stale = next(p for p in problems if p["kind"] == "stale" and p["stage"] == "evaluate")
        assert "params.yaml has evaluate.rrf_k: 30, it ran with 60" in stale["message"]
        assert "run `dvc repro evaluate`" in stale["message"]
        code, answer = server.post("/api/search", {"q": "国歌"})
        assert code == 503 and "not a sentence-transformers folder" in answer["error"]["message"]
        code, report = server.get("/api/report")
        assert code == 200 and report["sets"] == []
        assert any("metrics/eval.json is missing: run `dvc repro evaluate`" in p["message"] for p in report["stopped_by"])
        assert report["training"] is not None and report["errors"]  # the other files are still read
    finally:
        stop_ui(server)


def test_another_model_folder_searches_with_it_and_says_so(ui_server, ui_project, tmp_path):
    # models/finetuned is what ships: the weights of models/trained with a card, so the same rankings.
    server = start_ui(ui_project, tmp_path / "ui.log", "--finetuned-dir", "models/finetuned")
    try:
        code, status = server.get("/api/status")
        assert code == 200 and status["search_ready"] and status["models"]["finetuned"] == "models/finetuned"
        note = next(p for p in status["problems"] if p["kind"] == "note")
        assert "searches with models/finetuned (--finetuned-dir), not models/trained" in note["message"]
        question = {"q": "车辆购置税的税率", "k": 5}
        assert ([r["id"] for r in server.post("/api/search", question)[1]["columns"][1]["results"]]
                == [r["id"] for r in ui_server.post("/api/search", question)[1]["columns"][1]["results"]])
        # Its corpus vectors came from the evaluation's cache (the card is not part of a model's content hash).
        assert re.search(r"encode corpus \(finetuned\): (\d+) distinct texts, \1 from cache, 0 to encode", server.output())
    finally:
        stop_ui(server)


def test_command_line_mistakes_stop_with_one_paragraph(ui_project, tmp_path):
    def ui(*options: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "stages.ui", *options], cwd=tmp_path,
                              env={**command_env(), "PYTHONPATH": str(REPO_ROOT)}, capture_output=True, text=True, timeout=120)

    missing = ui("--project", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "is not a folder" in missing.stderr and "Traceback" not in missing.stderr
    no_params = ui("--project", str(tmp_path))
    assert no_params.returncode == 2 and "has no params.yaml" in no_params.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = ui("--project", str(ui_project), "--port", str(taken.getsockname()[1]))
    assert busy.returncode == 2 and "Pick another port with --port" in " ".join(busy.stderr.split())
