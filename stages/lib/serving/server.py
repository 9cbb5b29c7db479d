"""The FastAPI app: OpenAI's embeddings and models endpoints over one encoder, with a health check.

    POST /v1/embeddings   OpenAI's request (plus NVIDIA's ``input_type``), see ``openai_api``
    GET  /v1/models       the served names; GET /v1/models/{name} one of them
    GET  /health          no key needed: for load balancers and readiness probes

Every failure answers OpenAI's error shape with a 4xx/5xx status and no traceback; the server keeps
serving. With an API key configured, ``/v1/*`` needs ``Authorization: Bearer <key>`` (compared in
constant time; the key is never logged, echoed or put in a message).
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from stages.lib.serving.batching import Batcher, Overloaded, TooManyTokens
from stages.lib.serving.encoders import Encoder
from stages.lib.serving.openai_api import (
    APIError,
    ServedNames,
    embeddings_response,
    error_body,
    model_object,
    models_response,
    parse_embeddings_request,
    too_many_tokens,
)


@dataclass(frozen=True)
class ServerSettings:
    model_name: str  # the base of the served names (<name>, <name>-query, <name>-passage)
    api_key: str = field(default="", repr=False)  # "" for none; never printed
    max_inputs: int = 2048  # texts per request, as OpenAI
    max_tokens: int = 8192  # above this a text is refused; up to it, truncated to the model's max_seq_length
    max_batch_texts: int = 256  # texts per encoder call, coalesced from concurrent requests
    max_wait_ms: float = 5.0  # how long the first request of a batch waits for others
    max_queue: int = 1024  # requests waiting; one more gets 503


def create_app(encoder: Encoder, settings: ServerSettings) -> FastAPI:
    """The app: one batcher shared by every request, OpenAI's error shape for every failure, the routes."""
    names = ServedNames(settings.model_name)
    batcher = Batcher(encoder, settings.max_batch_texts, settings.max_wait_ms, settings.max_queue, settings.max_tokens)
    app = FastAPI(title="embedding-ft", lifespan=_running(batcher), docs_url=None, redoc_url=None, openapi_url=None)
    _answer_errors_as_openai(app)
    authorized = _key_check(settings.api_key)
    _add_model_routes(app, names, batcher, authorized)
    _add_embeddings_route(app, encoder, settings, names, batcher, authorized)
    return app


def _running(batcher: Batcher):
    """The app's lifespan: the batcher's worker runs while the app serves."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    return lifespan


def _key_check(api_key: str) -> Callable[[Request], None]:
    """The dependency of every ``/v1/*`` route: ``Authorization: Bearer <key>`` when a key is configured."""
    expected_key = api_key.encode("utf-8")

    def authorized(request: Request) -> None:
        if not expected_key:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        challenge = {"WWW-Authenticate": "Bearer"}
        if scheme.lower() != "bearer" or not given.strip():
            raise APIError(401, "Missing API key: this server requires 'Authorization: Bearer <key>' (the key is "
                                "the server's EMBEDDING_API_KEY).", code="missing_api_key", headers=challenge)
        if not hmac.compare_digest(given.strip().encode("utf-8"), expected_key):
            raise APIError(401, "Incorrect API key.", code="invalid_api_key", headers=challenge)

    return authorized


def _answer_errors_as_openai(app: FastAPI) -> None:
    """Every failure as OpenAI's error body with its status: ours, the framework's (404, 405), and the unexpected."""

    @app.exception_handler(APIError)
    async def api_error(_request: Request, error: APIError) -> JSONResponse:
        return JSONResponse(error.body(), status_code=error.status, headers=error.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        if error.status_code == 404:
            message = f"No route {request.url.path}. This server has POST /v1/embeddings, GET /v1/models and GET /health."
        elif error.status_code == 405:
            allowed = next((value for key, value in (error.headers or {}).items() if key.lower() == "allow"), "")
            message = f"{request.method} is not allowed on {request.url.path} (allowed: {allowed})."
        else:
            message = str(error.detail)
        return JSONResponse(error_body(message, code={404: "not_found", 405: "method_not_allowed"}.get(error.status_code)),
                            status_code=error.status_code, headers=error.headers)

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, _error: Exception) -> JSONResponse:
        # Starlette re-raises after answering, so the server's log gets the traceback; the client does not.
        return JSONResponse(error_body("Internal server error; the server log has the details.", "server_error"),
                            status_code=500)


def _add_model_routes(app: FastAPI, names: ServedNames, batcher: Batcher, authorized) -> None:
    """``GET /health`` (no key) and OpenAI's ``GET /v1/models`` and ``GET /v1/models/{name}``."""
    created = int(time.time())

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "models": names.names, "waiting_requests": batcher.waiting,
                "encoder_batches": batcher.encoder_calls}

    @app.get("/v1/models", dependencies=[Depends(authorized)])
    async def list_models() -> dict:
        return models_response(names, created)

    @app.get("/v1/models/{name}", dependencies=[Depends(authorized)])
    async def one_model(name: str) -> dict:
        if name not in names.role_of():
            raise names.model_not_found(name)
        return model_object(name, created)


def _add_embeddings_route(app: FastAPI, encoder: Encoder, settings: ServerSettings, names: ServedNames,
                          batcher: Batcher, authorized) -> None:
    """OpenAI's ``POST /v1/embeddings``: parsed and checked, encoded in the shared batches, answered with usage."""

    @app.post("/v1/embeddings", dependencies=[Depends(authorized)])
    async def embeddings(request: Request) -> Response:
        parsed = parse_embeddings_request(await request.body(), names, encoder.dimension, settings.max_inputs)
        try:
            embedded = await batcher.embed(parsed.texts, parsed.role)
        except Overloaded:
            raise APIError(503, f"The server is overloaded ({settings.max_queue} requests waiting, --max-queue); "
                                "retry shortly.", type_="server_error", code="overloaded",
                           headers={"Retry-After": "1"}) from None
        except TooManyTokens as error:
            raise too_many_tokens(error.index, error.tokens, error.limit, encoder.max_seq_length, parsed.role) from None
        except Exception as error:  # the model failed on this batch (logged with its traceback by the batcher)
            raise APIError(500, f"Encoding failed ({type(error).__name__}); the server log has the details.",
                           type_="server_error", code="encoding_failed") from None
        # Usage counts the tokens the model read: each text's, prompt included, up to the window.
        used = sum(min(n, encoder.max_seq_length) for n in embedded.tokens)
        body = embeddings_response(embedded.vectors, parsed.model, parsed.encoding_format, used)
        return Response(json.dumps(body, separators=(",", ":")), media_type="application/json")
