"""The embeddings server for real: ``python -m stages.serve`` in its own process on a free localhost port,
serving a real model (MiniLM given query/passage prompts), its API key read from a ``.env``.

What the endpoint returns must be what the model gives directly (``encode_query`` / ``encode_document``,
which is how the evaluation encoded), whichever way the role is named, through raw HTTP, the ``openai``
client and LlamaIndex's ``OpenAILikeEmbedding``; every bad request gets OpenAI's error shape and the
right status, and the server keeps answering.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.serving.fixtures import cosines, english_golden_questions, prompted_minilm, stages_serve

pytestmark = pytest.mark.slow  # runs the pipeline, a stage, a browser or a server: not in `make test-quick`

KEY = "sk-test-3f9a1c0e7d2b4a66"  # what .env holds; must never show up in the server's output
WRONG_KEY = "sk-wrong-77e0d1b2c3a4f5e6"
MAX_INPUTS, MAX_TOKENS = 64, 1024  # small caps (flags) so the tests need no huge requests
TEXTS = ["Can my broker lend my shares to someone else?",
         "A custodian shall segregate client securities from its own assets.",
         "公司不给交社保，我能辞职要补偿吗？",
         "margin call deadline"]


@dataclass
class Served:
    url: str
    log: Path
    http: httpx.Client  # one client: a new one per request would build an SSL context each time (slow)

    def post(self, body=None, raw: bytes | None = None, key: str | None = KEY, path: str = "/v1/embeddings") -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        if raw is not None:
            return self.http.post(self.url + path, content=raw, headers=headers)
        return self.http.post(self.url + path, json=body, headers=headers)

    def get(self, path: str, key: str | None = KEY) -> httpx.Response:
        return self.http.get(self.url + path, headers={"Authorization": f"Bearer {key}"} if key else {})

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return prompted_minilm(tmp_path_factory.mktemp("model") / "minilm")


@pytest.fixture(scope="module")
def reference(model_dir):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(model_dir), device="cpu")


@pytest.fixture(scope="module")
def served(tmp_path_factory, model_dir, request):
    # Run from a folder whose .env holds the key, as from a project root; the environment holds none.
    workdir = tmp_path_factory.mktemp("serve")
    (workdir / ".env").write_text(f"EMBEDDING_API_KEY={KEY}\n", encoding="utf-8")
    with (stages_serve(workdir, model_dir, "--max-inputs", str(MAX_INPUTS), "--max-tokens", str(MAX_TOKENS),
                       while_starting=lambda: request.getfixturevalue("reference")) as (port, log),  # loads meanwhile
          httpx.Client(timeout=60) as http):
        yield Served(f"http://127.0.0.1:{port}", log, http)


def _vectors(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    body = response.json()
    assert [row["index"] for row in body["data"]] == list(range(len(body["data"])))
    return np.array([row["embedding"] for row in body["data"]], dtype=np.float32)


def test_startup_says_what_is_served_and_that_a_key_is_required(served):
    output = served.output()
    for expected in ("minilm", "minilm-query", "minilm-passage", "torch backend", "device cpu", "dimension 384",
                     "max_seq_length 256", "query 'query: '", "passage 'passage: '", "API key: required",
                     "EMBEDDING_API_KEY", f"above {MAX_TOKENS} refused", f"{MAX_INPUTS} inputs per request"):
        assert expected in output, f"{expected!r} not in the startup output:\n{output}"


def test_models_lists_the_served_names(served):
    body = served.get("/v1/models").json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["minilm", "minilm-query", "minilm-passage"]
    assert all(m["object"] == "model" for m in body["data"])
    assert served.get("/v1/models/minilm-query").json()["id"] == "minilm-query"
    assert served.get("/v1/models/gpt-4").json()["error"]["code"] == "model_not_found"


@pytest.mark.parametrize(("model", "input_type", "role"), [
    ("minilm", None, "passage"),
    ("minilm", "passage", "passage"),
    ("minilm", "query", "query"),
    ("minilm-query", None, "query"),
    ("minilm-passage", None, "passage"),
    ("minilm-query", "query", "query"),
])
def test_vectors_are_the_models_own_for_each_way_of_naming_the_role(served, reference, model, input_type, role):
    body = {"model": model, "input": TEXTS, **({"input_type": input_type} if input_type else {})}
    got = _vectors(served.post(body))
    expected = reference.encode_query(TEXTS) if role == "query" else reference.encode_document(TEXTS)
    assert got.shape == (len(TEXTS), 384)
    assert cosines(got, expected).min() >= 0.9999
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)  # unit length, as the evaluation's


def test_the_prompts_matter_and_usage_counts_them(served, reference):
    # Query and passage vectors of one text differ (the prompts are really applied), and a single string works.
    query = _vectors(served.post({"model": "minilm-query", "input": TEXTS[0]}))
    passage = _vectors(served.post({"model": "minilm", "input": TEXTS[0]}))
    assert cosines(query, passage)[0] < 0.999
    response = served.post({"model": "minilm-query", "input": TEXTS, "user": "ignored", "dimensions": 384})
    tokens = [len(ids) for ids in reference.tokenizer(["query: " + t for t in TEXTS])["input_ids"]]
    assert response.json()["usage"] == {"prompt_tokens": sum(tokens), "total_tokens": sum(tokens)}
    assert response.json()["model"] == "minilm-query" and response.json()["object"] == "list"


def test_base64_is_little_endian_float32(served, reference):
    response = served.post({"model": "minilm-query", "input": TEXTS, "encoding_format": "base64"})
    rows = [np.frombuffer(base64.b64decode(row["embedding"]), dtype="<f4") for row in response.json()["data"]]
    assert cosines(np.stack(rows), reference.encode_query(TEXTS)).min() >= 0.9999
    floats = _vectors(served.post({"model": "minilm-query", "input": TEXTS}))
    np.testing.assert_allclose(np.stack(rows), floats, atol=1e-6)


def test_long_text_within_the_cap_is_truncated_as_the_evaluation_did(served, reference):
    text = " ".join(["The custodian must reconcile client positions with the depository every business day."] * 40)
    tokens = len(reference.tokenizer("passage: " + text)["input_ids"])
    assert 256 < tokens <= MAX_TOKENS
    response = served.post({"model": "minilm", "input": [text, TEXTS[0]]})
    got = _vectors(response)
    assert cosines(got, reference.encode_document([text, TEXTS[0]])).min() >= 0.9999  # encode_document truncates to 256
    short = len(reference.tokenizer("passage: " + TEXTS[0])["input_ids"])
    assert response.json()["usage"]["prompt_tokens"] == 256 + short  # the tokens the model read


def test_a_text_beyond_the_cap_is_refused_with_its_token_count(served, reference):
    tokens = len(reference.tokenizer("query: " + LONG)["input_ids"])
    response = served.post({"model": "minilm-query", "input": LONG})
    assert response.status_code == 400
    assert f"input[0] is {tokens} tokens (with the query prompt), above this server's limit of {MAX_TOKENS}" in \
        response.json()["error"]["message"]


def test_openai_client_float_base64_and_its_default(served, reference):
    from openai import AuthenticationError, OpenAI

    client = OpenAI(base_url=served.url + "/v1", api_key=KEY, max_retries=0)
    expected = reference.encode_query(TEXTS)
    # Not given, the client asks for base64 and decodes it itself; asked for, base64 comes back as the strings.
    for kwargs in ({"encoding_format": "float"}, {}, {"encoding_format": "base64"}):
        result = client.embeddings.create(model="minilm-query", input=TEXTS, **kwargs)
        rows = [np.frombuffer(base64.b64decode(row.embedding), dtype="<f4") if isinstance(row.embedding, str)
                else row.embedding for row in result.data]
        assert isinstance(result.data[0].embedding, str) == bool(kwargs.get("encoding_format") == "base64")
        assert cosines(np.array(rows, dtype=np.float32), expected).min() >= 0.9999, kwargs
        assert result.usage.prompt_tokens > 0
    # NVIDIA's input_type through the client's extra_body, on the plain model name.
    result = client.embeddings.create(model="minilm", input=TEXTS, extra_body={"input_type": "query"})
    assert cosines(np.array([row.embedding for row in result.data]), expected).min() >= 0.9999
    assert [m.id for m in client.models.list()] == ["minilm", "minilm-query", "minilm-passage"]
    with pytest.raises(AuthenticationError):
        OpenAI(base_url=served.url + "/v1", api_key=WRONG_KEY, max_retries=0).embeddings.create(model="minilm", input="x")


def test_llamaindex_openai_like_retrieves_the_same_top5_as_direct_encoding(served, reference):
    from llama_index.core import VectorStoreIndex
    from llama_index.core.schema import TextNode
    from llama_index.embeddings.openai_like import OpenAILikeEmbedding

    corpus = english_golden_questions("securities_law")[:40]
    queries = english_golden_questions("labor_contract_law")[:8]
    # OpenAILikeEmbedding sends one model name for queries and texts alike (its model_name), so the role is in
    # the name: one instance per role, the passage one for the index, the query one for retrieval.
    common = {"api_base": served.url + "/v1", "api_key": KEY, "embed_batch_size": 16, "max_retries": 0}
    passages = OpenAILikeEmbedding(model_name="minilm-passage", **common)
    questions = OpenAILikeEmbedding(model_name="minilm-query", **common)
    index = VectorStoreIndex([TextNode(id_=f"c{i}", text=t) for i, t in enumerate(corpus)], embed_model=passages)
    retriever = index.as_retriever(similarity_top_k=5, embed_model=questions)

    doc_vectors = reference.encode_document(corpus)
    query_vectors = reference.encode_query(queries)
    for query, vector in zip(queries, query_vectors, strict=True):
        direct = [f"c{i}" for i in np.argsort(-(doc_vectors @ vector), kind="stable")[:5]]
        assert [hit.node.node_id for hit in retriever.retrieve(query)] == direct, query
    # Its query mode is what the query model name gives; its text mode the passage one.
    assert cosines(questions.get_query_embedding(queries[0]), query_vectors[0])[0] >= 0.9999
    assert cosines(passages.get_text_embedding(corpus[0]), doc_vectors[0])[0] >= 0.9999


LONG = "word " * 1500  # about 1,500 tokens: above MAX_TOKENS
BAD_REQUESTS = [
    # (what, raw body or JSON body, status, code, param, words the message must hold)
    ("not JSON", b"{not json", 400, "invalid_json", None, ["not valid JSON"]),
    ("not an object", b"[1, 2]", 400, "invalid_json", None, ["JSON object"]),
    ("no model", {"input": "x"}, 400, "missing_required_parameter", "model", ["minilm-query"]),
    ("model not a string", {"model": 7, "input": "x"}, 400, "invalid_type", "model", ["string"]),
    ("unknown model", {"model": "text-embedding-3-small", "input": "x"}, 404, "model_not_found", "model",
     ["text-embedding-3-small", "minilm, minilm-query, minilm-passage"]),
    ("no input", {"model": "minilm"}, 400, "missing_required_parameter", "input", ["required"]),
    ("input a number", {"model": "minilm", "input": 5}, 400, "invalid_type", "input", ["string or a list"]),
    ("empty list", {"model": "minilm", "input": []}, 400, "invalid_value", "input", ["empty list"]),
    ("empty string", {"model": "minilm", "input": ""}, 400, "invalid_value", "input", ["input[0]", "empty string"]),
    ("an empty string in the list", {"model": "minilm", "input": ["a", ""]}, 400, "invalid_value", "input", ["input[1]"]),
    ("a number in the list", {"model": "minilm", "input": ["a", 3]}, 400, "invalid_type", "input", ["input[1]"]),
    ("token ids", {"model": "minilm", "input": [101, 2023, 102]}, 400, "unsupported_input", "input", ["token ids"]),
    ("token id arrays", {"model": "minilm", "input": [[101, 102]]}, 400, "unsupported_input", "input", ["token ids"]),
    ("too many inputs", {"model": "minilm", "input": ["x"] * (MAX_INPUTS + 1)}, 400, "too_many_inputs", "input",
     [str(MAX_INPUTS + 1), f"at most {MAX_INPUTS}"]),
    ("far beyond the window", {"model": "minilm", "input": ["short", LONG]}, 400, "context_length_exceeded", "input",
     ["input[1] is ", "tokens (with the passage prompt)", f"limit of {MAX_TOKENS}", "256-token window"]),
    ("bad encoding_format", {"model": "minilm", "input": "x", "encoding_format": "int8"}, 400, "invalid_value",
     "encoding_format", ["float, base64"]),
    ("other dimensions", {"model": "minilm", "input": "x", "dimensions": 128}, 400, "invalid_value", "dimensions",
     ["128", "384"]),
    ("bad input_type", {"model": "minilm", "input": "x", "input_type": "document"}, 400, "invalid_value", "input_type",
     ["'query' or 'passage'"]),
    ("query model, passage input_type", {"model": "minilm-query", "input": "x", "input_type": "passage"}, 400,
     "conflicting_role", "input_type", ["minilm-query", "query"]),
    ("passage model, query input_type", {"model": "minilm-passage", "input": "x", "input_type": "query"}, 400,
     "conflicting_role", "input_type", ["minilm-passage"]),
]


@pytest.mark.parametrize(("what", "body", "status", "code", "param", "words"), BAD_REQUESTS,
                         ids=[case[0] for case in BAD_REQUESTS])
def test_bad_requests_get_openai_errors_and_the_server_goes_on(served, what, body, status, code, param, words):
    response = served.post(raw=body) if isinstance(body, bytes) else served.post(body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["code"], error["param"], error["type"]) == (code, param, "invalid_request_error")
    for word in words:
        assert word in error["message"], (word, error["message"])
    assert "Traceback" not in response.text
    assert _vectors(served.post({"model": "minilm", "input": "still serving"})).shape == (1, 384)


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/v1/embeddings", 405), ("DELETE", "/v1/models", 405), ("GET", "/v1/nothing", 404),
    ("POST", "/v1/chat/completions", 404), ("GET", "/", 404),
])
def test_wrong_method_or_path_answers_in_the_same_shape(served, method, path, status):
    response = served.http.request(method, served.url + path, headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code == status
    assert response.json()["error"]["code"] == {404: "not_found", 405: "method_not_allowed"}[status]
    assert served.get("/health").status_code == 200


@pytest.mark.parametrize(("header", "code"), [
    (None, "missing_api_key"), (f"Bearer {WRONG_KEY}", "invalid_api_key"), (f"Basic {KEY}", "missing_api_key"),
    ("Bearer", "missing_api_key"), (f"Bearer {KEY}x", "invalid_api_key"),
])
def test_the_key_is_required_when_configured(served, header, code):
    headers = {"Authorization": header} if header else {}
    for response in (served.http.post(served.url + "/v1/embeddings", json={"model": "minilm", "input": "x"}, headers=headers),
                     served.http.get(served.url + "/v1/models", headers=headers)):
        assert response.status_code == 401, response.text
        assert response.json()["error"]["code"] == code and response.headers["www-authenticate"] == "Bearer"
        assert KEY not in response.text and WRONG_KEY not in response.text
    assert served.get("/health", key=None).status_code == 200  # probes need no key
    assert served.post({"model": "minilm", "input": "x"}).status_code == 200  # the right key works


def test_the_key_appears_nowhere_in_the_servers_output(served):
    # Last in this module: by now the server has seen the right key, wrong keys and every bad request.
    served.post({"model": "minilm", "input": "x"}, key=WRONG_KEY)
    output = served.output()
    assert "POST /v1/embeddings" in output  # the access log is on, and holds no headers
    assert KEY not in output and WRONG_KEY not in output
    assert "Traceback" not in output
