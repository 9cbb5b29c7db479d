"""Batching over real HTTP: the app served by uvicorn on a background thread, over the real MiniLM encoder.

Concurrent requests share encoder calls (one per role) and each gets its own rows back; a full queue
answers 503 and a model failure 500, in OpenAI's error shape, and the server goes on. No key is
configured here: requests need no Authorization header.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from stages.lib.serving.server import ServerSettings, create_app
from tests.serving.fixtures import Background, cosines, english_golden_questions, prompted_minilm

pytestmark = pytest.mark.slow  # runs the pipeline, a stage, a browser or a server: not in `make test-quick`


class Recording:
    """The real encoder, recording each call's texts; ``gate`` (when set) holds calls until it opens."""

    def __init__(self, encoder) -> None:
        self._encoder = encoder
        self.name, self.dimension, self.max_seq_length = encoder.name, encoder.dimension, encoder.max_seq_length
        self.query_prompt, self.document_prompt = encoder.query_prompt, encoder.document_prompt
        self.calls: list[tuple[str, int]] = []
        self.gate: threading.Event | None = None
        self.entered = threading.Event()

    def _wait(self, texts) -> None:
        if "explode" in texts:
            raise RuntimeError("the model failed on purpose")
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(30)

    def encode_query(self, texts):
        self._wait(texts)
        self.calls.append(("query", len(texts)))
        return self._encoder.encode_query(texts)

    def encode_document(self, texts):
        self._wait(texts)
        self.calls.append(("passage", len(texts)))
        return self._encoder.encode_document(texts)

    def count_tokens(self, texts):
        return self._encoder.count_tokens(texts)


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    from stages.lib.serving.encoders import SentenceTransformerEncoder

    return SentenceTransformerEncoder(prompted_minilm(tmp_path_factory.mktemp("model") / "minilm"), device="cpu", precision="fp32")


def test_concurrent_requests_share_encoder_calls_and_get_their_own_rows(encoder):
    recording = Recording(encoder)
    texts = english_golden_questions("securities_law")[:24]
    # A generous wait makes the coalescing certain on a slow, loaded test machine; the default is 5 ms.
    app = create_app(recording, ServerSettings("minilm", max_wait_ms=300, max_batch_texts=256))
    barrier = threading.Barrier(len(texts))

    def one(i: int) -> np.ndarray:
        barrier.wait()
        role = "query" if i % 2 else "passage"  # both roles in the same batches
        response = server.post({"model": f"minilm-{role}", "input": texts[i]})
        assert response.status_code == 200, response.text
        return np.array(response.json()["data"][0]["embedding"])

    with Background(app) as server, ThreadPoolExecutor(len(texts)) as pool:
        got = list(pool.map(one, range(len(texts))))
    assert sum(n for _, n in recording.calls) == len(texts)
    assert len(recording.calls) < len(texts) / 2, recording.calls  # coalesced (one call per role and batch)
    assert max(n for _, n in recording.calls) > 1
    queries, passages = encoder.encode_query(texts), encoder.encode_document(texts)
    for i, vector in enumerate(got):
        assert cosines(vector, (queries if i % 2 else passages)[i])[0] >= 0.9999, i  # each request got its own row


def test_a_full_queue_answers_503_and_the_server_recovers(encoder):
    recording = Recording(encoder)
    recording.gate = threading.Event()
    app = create_app(recording, ServerSettings("minilm", max_batch_texts=1, max_queue=2, max_wait_ms=0))
    with Background(app) as server, ThreadPoolExecutor(3) as pool:
        first = pool.submit(server.post, {"model": "minilm", "input": "held in the encoder"})
        assert recording.entered.wait(30)
        waiting = [pool.submit(server.post, {"model": "minilm", "input": f"waiting {i}"}) for i in range(2)]
        deadline = time.time() + 30
        while server.waiting() < 2:
            assert time.time() < deadline
            time.sleep(0.02)
        refused = server.post({"model": "minilm", "input": "one too many"})
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["error"]["code"] == "overloaded" and refused.json()["error"]["type"] == "server_error"
        recording.gate.set()
        assert [f.result().status_code for f in (first, *waiting)] == [200, 200, 200]
        assert server.post({"model": "minilm", "input": "after the rush"}).status_code == 200


def test_a_model_failure_is_a_500_without_traceback_and_the_server_goes_on(encoder):
    app = create_app(Recording(encoder), ServerSettings("minilm"))
    with Background(app) as server:
        failed = server.post({"model": "minilm", "input": ["fine", "explode"]})
        assert failed.status_code == 500
        assert failed.json()["error"]["code"] == "encoding_failed"
        assert "Traceback" not in failed.text and "on purpose" not in failed.text
        assert server.post({"model": "minilm-query", "input": "fine"}).status_code == 200
