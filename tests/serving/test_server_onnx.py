"""``--backend onnx`` / ``onnx-int8``: the export of the prompted MiniLM, served over real HTTP, gives the
PyTorch model's vectors (fp32: the same; int8: close), with the same prompts, window and token counts."""

from __future__ import annotations

import contextlib

import pytest

from stages.lib.serving.server import ServerSettings, create_app
from tests.serving.fixtures import Background, cosines, prompted_minilm

pytestmark = pytest.mark.slow  # runs the pipeline, a stage, a browser or a server: not in `make test-quick`

TEXTS = ["Can my broker lend my shares to someone else?", "margin call deadline", "word " * 400]  # the last one is cut


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from sentence_transformers import SentenceTransformer

    from stages.lib.models.onnx_export import write_onnx_folder
    from stages.lib.models.prompts import model_prompts

    root = tmp_path_factory.mktemp("onnx")
    model_dir = prompted_minilm(root / "minilm")
    model = SentenceTransformer(str(model_dir), device="cpu")
    folder = root / "finetuned-onnx"
    folder.mkdir()
    write_onnx_folder(model, model_prompts(model_dir), 256, folder, lambda _phase: contextlib.nullcontext())
    return folder, SentenceTransformer(str(model_dir), device="cpu")


@pytest.mark.parametrize(("backend", "floor"), [("onnx", 0.9999), ("onnx-int8", 0.95)])
def test_the_onnx_backends_serve_the_models_vectors(exported, backend, floor):
    from stages.serve import _encoder

    folder, reference = exported
    encoder = _encoder(backend, folder, "auto")  # what `python -m stages.serve --backend ...` builds
    assert (encoder.query_prompt, encoder.document_prompt, encoder.max_seq_length) == ("query: ", "passage: ", 256)
    with Background(create_app(encoder, ServerSettings("minilm"))) as server:
        for model, expected in (("minilm-query", reference.encode_query(TEXTS)),
                                ("minilm", reference.encode_document(TEXTS))):
            response = server.post({"model": model, "input": TEXTS})
            assert response.status_code == 200, response.text
            got = [row["embedding"] for row in response.json()["data"]]
            assert cosines(got, expected).min() >= floor, (backend, model, cosines(got, expected))
        tokens = [len(ids) for ids in reference.tokenizer(["passage: " + t for t in TEXTS])["input_ids"]]
        assert response.json()["usage"]["prompt_tokens"] == sum(min(n, 256) for n in tokens)
