"""The UI's FastAPI app: the page, its own scripts and styles, and the JSON the page reads.

    GET  /, /report, /label        the page (one HTML file; ``static/app.js`` draws each view from the URL)
    GET  /static/<file>            its script and style sheet, from this package: nothing from elsewhere
    GET  /api/status               the run: models, prompts, fusion, problems (missing, invalid, stale outputs)
    GET  /api/sets                 the known question sets
    GET  /api/questions            ?set=<id>&filter=<text>&limit=<n>: a set's questions whose text or id matches
    GET|POST /api/search           {"q": ..., "k": 5} or {"set": ..., "qid": ..., "k": 5}: the four columns
    GET  /api/report               the evaluation report with its error analysis
    GET  /health                   for scripts and probes

The labelling view (``/label``, logic in ``label_view.py``), which writes golden sets to ``data/golden/<set>.jsonl``:

    GET  /api/label/sets           the sets being labelled here, with their progress
    GET  /api/label/queue          ?set=<name>: its imported questions, which are done, its progress and pace
    POST /api/label/import         ?set=<name>&name=<file name>, the file's bytes as the body: queue its questions
    POST /api/label/next           {"set", "tab", "skip"?}: the next open question no other tab holds, with its pool
    POST /api/label/pool           {"set", "tab", "id"} or {"set", "tab", "query"}: a question's pool, split, labels
    POST /api/label/save           {"set", "tab", "id", "query", "relevant", "no_relevant_chunk", "note", "revision",
                                   "seconds", "pool", "seen"}: upsert its row; 409 on a stale revision or a file
                                   that no longer parses (the error says which, ``kind``), nothing overwritten
    POST /api/label/leave          {"tab"}: the tab closed; the questions it held are free

Every failure is a JSON ``{"error": {"message", "stage"}}`` with a 4xx/5xx status and no traceback (the server's
log has those), and the server keeps serving. Questions are answered one at a time (a labelling pool too): on a
small CPU a second one in parallel would only slow both down. The page allows no script, style, font or
connection from anywhere but this server (``Content-Security-Policy``), and, bound to a loopback address, the app answers only requests
addressed to one (``Host`` checked), so a web page elsewhere cannot reach it through DNS rebinding.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware

from stages.lib.labelling.question_list import MAX_FILE_BYTES, QuestionListTooLarge, check_size
from stages.lib.retrieval.one_query import Retrievers
from stages.lib.ui.known_questions import KnownQuestions, UnknownQuestion
from stages.lib.ui.label_view import LabelDesk, LabelError
from stages.lib.ui.run_files import QUESTIONS, REPORT, SEARCH, Problem
from stages.lib.ui.search_view import DEFAULT_K, BadQuestion, Corpus, check_question, search_view

STATIC = Path(__file__).parent / "static"
PAGES = ("/", "/report", "/label")
MAX_JSON_BYTES = 1024 * 1024  # a save carries a few hundred chunk ids and a note
DRAINED_BYTES = 64 * 1024 * 1024  # of a refused upload, read and dropped before answering; beyond, the connection is cut
MAX_LIST = 500
LOOPBACK_NAMES = ["127.0.0.1", "localhost", "::1", "[::1]"]
SECURITY_HEADERS = {
    # Nothing but this server: no CDN script, style, font or image, no connection elsewhere, no framing.
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
                               "form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


@dataclass
class UiState:
    """Everything the app serves, loaded once at start-up (the stale check arrives later, from a thread)."""

    project: Path
    corpus: Corpus | None
    retrievers: Retrievers | None
    known: KnownQuestions
    report: dict
    problems: list[Problem]
    info: dict  # models, prompts, hardware: what the status line says
    stale: list[Problem] | None = None  # None while the check against dvc.lock runs
    startup_s: float = 0.0
    search_lock: threading.Lock = field(default_factory=threading.Lock)
    labelling: LabelDesk | None = None

    def all_problems(self) -> list[Problem]:
        return self.problems + self.known.problems + (self.stale or [])

    def stopping(self, view: str) -> list[Problem]:
        return [p for p in self.problems if view in p.views and p.kind in ("missing", "invalid")]


class UiError(Exception):
    def __init__(self, status: int, message: str, stage: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.stage = status, message, stage


def _error(status: int, message: str, stage: str | None = None, **extra) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "stage": stage, **extra}}, status_code=status)


def create_app(state: UiState, allowed_hosts: list[str] | None = None) -> FastAPI:
    """The app: only allowed hosts, the security headers, JSON errors, the page and its files, then the JSON routes."""
    app = FastAPI(title="embedding-ft UI", docs_url=None, redoc_url=None, openapi_url=None)
    if allowed_hosts is not None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)
    _add_security_headers(app)
    _answer_errors_as_json(app)
    for page in PAGES:
        app.add_api_route(page, _page, methods=["GET"], include_in_schema=False)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    _run_routes(app, state)
    _search_routes(app, state)
    _label_routes(app, state)
    return app


def _add_security_headers(app: FastAPI) -> None:
    """Every answer: the page's Content-Security-Policy and its kin; the JSON never cached, the files revalidated."""

    @app.middleware("http")
    async def headers(request: Request, call_next):
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if request.url.path.startswith("/api/"):
            response.headers.setdefault("Cache-Control", "no-store")
        elif request.url.path.startswith("/static/"):
            response.headers.setdefault("Cache-Control", "no-cache")  # revalidated (ETag): a new version is seen at once
        return response


def _answer_errors_as_json(app: FastAPI) -> None:
    """Every failure as ``{"error": {"message", "stage"}}`` with its status (an unknown page: the page itself, 404)."""

    @app.exception_handler(UiError)
    async def ui_error(_request: Request, error: UiError) -> JSONResponse:
        return _error(error.status, error.message, error.stage)

    @app.exception_handler(LabelError)
    async def label_error(_request: Request, error: LabelError) -> JSONResponse:
        return _error(error.status, error.message, error.stage, kind=error.kind, theirs=error.theirs)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        if error.status_code == 404 and not request.url.path.startswith(("/api/", "/static/")):
            return FileResponse(STATIC / "index.html", status_code=404)  # the page says which pages there are
        if error.status_code == 404:
            return _error(404, f"No route {request.url.path}. The UI has the pages /, /report and /label; its JSON is under "
                               "/api/ (status, sets, questions, search, report, label/...).")
        if error.status_code == 405:
            return _error(405, f"{request.method} is not allowed on {request.url.path}.")
        return _error(error.status_code, str(error.detail))

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, _error_: Exception) -> JSONResponse:
        # Starlette re-raises after answering: the server's log gets the traceback, the page a sentence.
        return _error(500, "Internal error in the UI server; its terminal has the details. The server keeps serving.")


def _run_routes(app: FastAPI, state: UiState) -> None:
    """What the run holds: health, status (models, problems), the known question sets and questions, the report."""

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "search": state.retrievers is not None, "checking": state.stale is None}

    @app.get("/api/status")
    def status() -> dict:
        return {
            "project": str(state.project), **state.info, "startup_s": state.startup_s,
            "search_ready": state.retrievers is not None, "checking": state.stale is None,
            "corpus_size": len(state.corpus.chunks) if state.corpus else 0,
            "problems": [p.to_json() for p in state.all_problems()],
            "sets": [s.to_json() for s in state.known.sets.values()],
        }

    @app.get("/api/sets")
    def sets() -> list[dict]:
        return [s.to_json() for s in state.known.sets.values()]

    @app.get("/api/questions")
    def questions(set_id: str = Query("", alias="set"), needle: str = Query("", alias="filter"),
                  limit: str = "50") -> dict:
        if not set_id:
            raise UiError(400, "Name a question set: /api/questions?set=<id> (the sets are listed by /api/sets).")
        if not limit.isdigit() or not 1 <= int(limit) <= MAX_LIST:
            raise UiError(400, f"limit is {limit!r}: list between 1 and {MAX_LIST} questions.")
        try:
            found, total = state.known.matching(set_id, needle, int(limit))
        except UnknownQuestion as error:
            raise UiError(404, str(error)) from None
        return {"set": set_id, "filter": needle, "total": total, "questions": [q.to_json() for q in found]}

    @app.get("/api/report")
    def report() -> dict:
        return {**state.report, "stopped_by": [p.to_json() for p in state.stopping(REPORT)]}


def _search_routes(app: FastAPI, state: UiState) -> None:
    """One question's four columns, by its text or as a known question (set and id), by GET or POST."""

    @app.get("/api/search")
    def search_get(q: str | None = None, set_id: str | None = Query(None, alias="set"), qid: str | None = None,
                   k: str = str(DEFAULT_K)) -> dict:
        return _search(state, {"q": q, "set": set_id, "qid": qid, "k": k})

    @app.post("/api/search")
    async def search_post(request: Request) -> Response:
        body = await _json_object(request, '{"q": "<question>", "k": 5} or {"set": "<set id>", "qid": "<question id>"}')
        return JSONResponse(await run_in_threadpool(_search, state, body))


def _label_routes(app: FastAPI, state: UiState) -> None:
    """The labelling view's JSON: thin routes over ``label_view.LabelDesk``."""

    def desk() -> LabelDesk:
        if state.labelling is None:
            raise UiError(503, "The labelling view is not set up in this server.")
        return state.labelling

    @app.get("/api/label/sets")
    def label_sets() -> dict:
        return desk().sets()

    @app.get("/api/label/queue")
    def label_queue(set_name: str = Query("", alias="set")) -> dict:
        return desk().queue(set_name)

    @app.post("/api/label/import")
    async def label_import(request: Request, set_name: str = Query("", alias="set"), name: str = "") -> Response:
        _from_this_page(request, "application/octet-stream")
        data, size = await _capped_body(request, MAX_FILE_BYTES)
        if data is None:
            try:
                check_size(size, name or "the file")
            except QuestionListTooLarge as error:
                raise UiError(413, str(error)) from None
        return JSONResponse(await run_in_threadpool(desk().import_file, set_name, name, data))

    example = '{"set": "labelled", "tab": "<tab id>", ...}'

    @app.post("/api/label/next")
    async def label_next(request: Request) -> Response:
        body = await _label_json(request, example)
        return JSONResponse(await run_in_threadpool(desk().next, body.get("set"), body.get("tab"), body.get("skip")))

    @app.post("/api/label/pool")
    async def label_pool(request: Request) -> Response:
        body = await _label_json(request, example)
        return JSONResponse(await run_in_threadpool(desk().pool, body.get("set"), body.get("tab"), body.get("id"),
                                                    body.get("query")))

    @app.post("/api/label/save")
    async def label_save(request: Request) -> Response:
        body = await _label_json(request, example)
        return JSONResponse(await run_in_threadpool(desk().save, body))

    @app.post("/api/label/leave")
    async def label_leave(request: Request) -> Response:
        return JSONResponse(desk().leave((await _label_json(request, '{"tab": "<tab id>"}')).get("tab")))


def _from_this_page(request: Request, content_type: str) -> None:
    """Writes come from this server's page only. The Host check stops DNS rebinding, not a page elsewhere that posts
    to 127.0.0.1 (cross-site request forgery): a browser says where such a request comes from (``Origin``), and a
    content type other than a form's or plain text makes it ask first (a CORS preflight, which this app never grants)."""
    origin = request.headers.get("origin")
    # Behind a reverse proxy (which forwards Host: 127.0.0.1) the page's own name comes as X-Forwarded-Host; a page
    # elsewhere cannot send that header without the preflight this app never grants.
    own = {request.headers.get("host", ""), *request.headers.get("x-forwarded-host", "").split(",")} - {""}
    if origin is not None and origin.split("://", 1)[-1] not in {name.strip() for name in own}:
        raise UiError(403, f"This request comes from another site ({origin}): the labelling view only takes requests from "
                           "its own page. Behind a reverse proxy, forward the page's host name as X-Forwarded-Host.")
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != content_type:
        raise UiError(415, f"Send the body with Content-Type: {content_type}.")


async def _label_json(request: Request, example: str) -> dict:
    _from_this_page(request, "application/json")
    return await _json_object(request, example)


async def _capped_body(request: Request, limit: int) -> tuple[bytes | None, int]:
    """The request body and its size; None past ``limit`` bytes (the size: as declared, else as far as it came). The
    rest is read and dropped, up to ``DRAINED_BYTES``: a client still sending when the answer comes and the
    connection closes sees a broken pipe, not the message."""
    declared = request.headers.get("content-length", "")
    size = int(declared) if declared.isdigit() else 0
    data, received = bytearray(), 0
    async for block in request.stream():
        received += len(block)
        if size > limit or received > limit:
            data.clear()  # kept no further: the answer is 413 whatever follows
            if received > DRAINED_BYTES:
                break
        else:
            data.extend(block)
    if size > limit or received > limit:
        return None, max(size, received)
    return bytes(data), received


async def _json_object(request: Request, example: str) -> dict:
    raw, size = await _capped_body(request, MAX_JSON_BYTES)
    if raw is None:
        raise UiError(413, f"The request body is {size:,} bytes; at most {MAX_JSON_BYTES:,} are accepted here.")
    try:
        body = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise UiError(400, f"The request body is not JSON: send {example}.") from None
    if not isinstance(body, dict):
        raise UiError(400, f"The request body must be a JSON object such as {example}.")
    return body


async def _page() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


def _search(state: UiState, body: dict) -> dict:
    stopped = state.stopping(SEARCH)
    if state.retrievers is None or state.corpus is None:
        first = stopped[0] if stopped else None
        raise UiError(503, " ".join(p.message for p in stopped) or "The search is not available in this run.",
                      first.stage if first else None)
    known = None
    if body.get("set") or body.get("qid"):
        if not body.get("set") or not body.get("qid") or not all(isinstance(body[k], str) for k in ("set", "qid")):
            raise UiError(400, "A known question needs both its set and its id: ?set=<set id>&qid=<question id>.")
        if state.stopping(QUESTIONS) and not state.known.sets:
            raise UiError(503, " ".join(p.message for p in state.stopping(QUESTIONS)))
        try:
            known = state.known.get(body["set"], body["qid"])
        except UnknownQuestion as error:
            raise UiError(404, str(error)) from None
        text = known[1].text
    else:
        text = body.get("q")
    k = body.get("k")
    try:
        text, k = check_question(text, DEFAULT_K if k is None or k == "" else k)
    except BadQuestion as error:
        raise UiError(error.status, str(error)) from None
    if known is None:
        known = state.known.by_text(text)
    with state.search_lock:
        started = time.perf_counter()
        view = search_view(state.retrievers, state.corpus, text, k, known, state.info.get("fusion", ""))
        view["server_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return view
