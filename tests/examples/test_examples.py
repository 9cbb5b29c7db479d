"""The files in examples/ run as a user runs them (``python examples/<file>.py`` in a subprocess, offline), against a
real model folder (the packaged MiniLM given query/passage prompts, as the fine-tuned model has) and, for the
OpenAI path, ``python -m stages.serve`` in its own process.

The ranking each example prints must be the one sentence-transformers gives with the right prompts (queries with
the ``query`` prompt, chunks with the ``document`` one), the known answer must come first, and LangChain's vectors
must equal sentence-transformers' own. MiniLM reads English only, so the chunks are English paraphrases of the
Securities Law's articles, in the corpus stage's chunks.jsonl format.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import REPO_ROOT, command_env
from tests.local_servers import free_port
from tests.serving.fixtures import prompted_minilm, stages_serve

pytestmark = pytest.mark.slow  # runs example files and a server in subprocesses: not in `make test-quick`

EXAMPLES = REPO_ROOT / "examples"
CHUNKS = {
    "art-121": "A securities company that only brokers trades and advises investors must have registered capital of at least "
               "fifty million yuan; one that also underwrites or trades on its own account needs at least one hundred million yuan.",
    "art-6": "Securities, banking, trust and insurance businesses are operated and regulated separately; a securities company "
             "and a bank must be set up as separate institutions.",
    "art-7": "The securities regulator under the State Council supervises the national securities market in a centralised "
             "and unified way and may set up local offices.",
    "art-50": "Anyone who knows inside information about a listed company must not buy or sell its shares, disclose the "
              "information, or advise others to trade before it is made public.",
    "art-111": "When a sudden event such as a natural disaster or a major technical fault disrupts trading, the stock exchange "
               "may halt trading in a security or suspend the whole market temporarily.",
    "art-79": "A listed company shall publish its annual report within four months after the end of each fiscal year.",
    "art-44": "If a director or a shareholder holding five percent or more sells shares within six months of buying them, "
              "the profit belongs to the company and the board shall recover it.",
    "art-67": "A tender offer shall stay open for at least thirty days and at most sixty days; during that period the "
              "acquirer may not withdraw the offer.",
}
QUESTIONS = {  # question -> the chunk that answers it
    "How much registered capital does a brokerage firm need?": "art-121",
    "How long must a takeover offer remain open?": "art-67",
    "Can the exchange stop trading after a technical failure?": "art-111",
}
HIT = re.compile(r"^(\d+)  (-?\d\.\d{4})  (\S+)  ", re.MULTILINE)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return prompted_minilm(tmp_path_factory.mktemp("model") / "minilm")


@pytest.fixture(scope="module")
def chunks_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "chunks.jsonl"
    rows = [{"id": chunk_id, "text": text, "source": "securities_law_en.txt", "split": "test", "language": "en",
             "section": "", "position": position, "n_tokens": len(text.split())}
            for position, (chunk_id, text) in enumerate(CHUNKS.items())]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def reference(model_dir):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(model_dir), device="cpu")


@pytest.fixture(scope="module")
def server_url(tmp_path_factory, model_dir, request) -> str:
    """``python -m stages.serve`` on the model, fp32 on the CPU so its vectors compare with sentence-transformers'."""
    with stages_serve(tmp_path_factory.mktemp("serve"), model_dir,
                      while_starting=lambda: request.getfixturevalue("reference")) as (port, _):  # loads meanwhile
        yield f"http://127.0.0.1:{port}/v1"


def _example(name: str, *args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    """``python examples/<name>.py ARGS`` as a user runs it: offline, from the repository root."""
    env = {**command_env(), "PYTHONPATH": ""}
    env.pop("EMBEDDING_API_KEY", None)
    return subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py"), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def _hits(output: str) -> list[tuple[str, float]]:
    return [(chunk_id, float(score)) for _rank, score, chunk_id in HIT.findall(output)]


def _expected_hits(reference, question: str, k: int) -> list[tuple[str, float]]:
    """The top k by cosine with the model's own prompts: what each example must print."""
    passages = reference.encode_document(list(CHUNKS.values()), normalize_embeddings=True)
    scores = passages @ reference.encode_query(question, normalize_embeddings=True)
    order = np.argsort(-scores)[:k]
    return [(list(CHUNKS)[i], float(scores[i])) for i in order]


def _load_example(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _assert_same_ranking(got: list[tuple[str, float]], expected: list[tuple[str, float]], output: str) -> None:
    assert [chunk_id for chunk_id, _ in got] == [chunk_id for chunk_id, _ in expected], output
    np.testing.assert_allclose([score for _, score in got], [score for _, score in expected], atol=2e-4)


# -- LangChain ----------------------------------------------------------------------------------------------------------

def test_langchain_example_with_the_saved_model_puts_the_answer_first(model_dir, chunks_file, reference):
    question = "How much registered capital does a brokerage firm need?"
    result = _example("langchain_rag", "--model", str(model_dir), "--chunks", str(chunks_file), "--question", question)
    assert result.returncode == 0, result.stderr
    assert "query prompt 'query: ', passage prompt 'passage: '" in result.stdout
    assert f"{len(CHUNKS)} chunks indexed" in result.stdout
    hits = _hits(result.stdout)
    assert hits[0][0] == QUESTIONS[question]
    _assert_same_ranking(hits, _expected_hits(reference, question, 3), result.stdout)


def test_langchain_example_through_the_server_prints_the_same_ranking(server_url, chunks_file, reference):
    question = "How much registered capital does a brokerage firm need?"
    result = _example("langchain_rag", "--server", server_url, "--served-model", "minilm", "--chunks", str(chunks_file),
                      "--question", question, "--model", "no/such/folder")  # --model is not read with --server
    assert result.returncode == 0, result.stderr
    assert "queries as minilm-query, chunks as minilm-passage" in result.stdout
    _assert_same_ranking(_hits(result.stdout), _expected_hits(reference, question, 3), result.stdout)


def test_langchain_vectors_are_sentence_transformers_with_the_right_prompt(model_dir, reference, server_url):
    example = _load_example("langchain_rag")
    texts, question = list(CHUNKS.values())[:4], next(iter(QUESTIONS))
    as_query = reference.encode(question, prompt_name="query", normalize_embeddings=True)
    as_documents = reference.encode(texts, prompt_name="document", normalize_embeddings=True)
    # The prompt is really applied: without it, or with the other one, the vector differs.
    assert np.abs(as_query - reference.encode(question, normalize_embeddings=True)).max() > 1e-2
    assert np.abs(as_query - reference.encode(question, prompt_name="document", normalize_embeddings=True)).max() > 1e-2
    np.testing.assert_allclose(as_query, reference.encode("query: " + question, normalize_embeddings=True), atol=1e-5)

    saved = example.SavedModelEmbeddings(model_dir, device="cpu")
    np.testing.assert_allclose(saved.embed_query(question), as_query, atol=1e-5)
    np.testing.assert_allclose(saved.embed_documents(texts), as_documents, atol=1e-5)

    served = example.ServedEmbeddings(server_url, "minilm", "no-key")
    np.testing.assert_allclose(served.embed_query(question), as_query, atol=1e-5)
    np.testing.assert_allclose(served.embed_documents(texts), as_documents, atol=1e-5)


# -- FAISS ---------------------------------------------------------------------------------------------------------------

def test_vector_store_example_builds_saves_loads_and_finds_the_answers(model_dir, chunks_file, reference, tmp_path):
    import faiss

    index_dir = tmp_path / "index"
    questions = [arg for question in QUESTIONS for arg in ("--question", question)]
    common = ["--model", str(model_dir), "--chunks", str(chunks_file), "--index-dir", str(index_dir), "--top-k", "2"]

    built = _example("vector_store", *common, *questions)
    assert built.returncode == 0, built.stderr
    assert f"Built an index of {len(CHUNKS)} chunks (384 dimensions) and saved it to {index_dir}" in built.stdout
    assert faiss.read_index(str(index_dir / "chunks.faiss")).ntotal == len(CHUNKS)
    hits = _hits(built.stdout)
    assert len(hits) == 2 * len(QUESTIONS)
    for number, (question, answer) in enumerate(QUESTIONS.items()):
        got = hits[2 * number:2 * number + 2]
        assert got[0][0] == answer, built.stdout
        _assert_same_ranking(got, _expected_hits(reference, question, 2), built.stdout)

    loaded = _example("vector_store", *common, *questions)
    assert loaded.returncode == 0, loaded.stderr
    assert f"Loaded the index of {len(CHUNKS)} chunks from {index_dir}" in loaded.stdout
    assert _hits(loaded.stdout) == hits

    # Other chunks: the saved index no longer fits, and is built again rather than searched with the wrong ids.
    fewer = chunks_file.parent / "fewer.jsonl"
    fewer.write_text("".join(chunks_file.read_text(encoding="utf-8").splitlines(keepends=True)[1:]), encoding="utf-8")
    rebuilt = _example("vector_store", *[fewer if arg == str(chunks_file) else arg for arg in common], "--question",
                       next(iter(QUESTIONS)))
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "was built from other chunks or another model: building it again" in rebuilt.stdout
    assert f"Built an index of {len(CHUNKS) - 1} chunks" in rebuilt.stdout
    assert "art-121" not in rebuilt.stdout  # the dropped chunk, the answer before


# -- What a user gets wrong ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "args", "words"), [
    ("langchain_rag", ["--model", "no/such/folder"], ["no/such/folder is missing", "`dvc repro`", "`dvc pull`", "--model"]),
    ("vector_store", ["--model", "no/such/folder"], ["no/such/folder is missing", "`dvc repro`", "`dvc pull`", "--model"]),
    ("vector_store", ["--chunks", "no/chunks.jsonl"], ["no/chunks.jsonl is missing", "`dvc repro`", "corpus stage"]),
    ("langchain_rag", ["--server", "http://127.0.0.1:{port}/v1"], ["No server answers at", "python -m stages.serve"]),
])
def test_a_missing_model_chunk_file_or_server_is_one_clear_message(model_dir, chunks_file, name, args, words):
    base = ["--chunks", str(chunks_file)] if "--chunks" not in args else []
    if "--model" not in args and name == "vector_store":
        base += ["--model", str(model_dir)]
    args = [arg.format(port=free_port()) for arg in args]  # a free port: nothing listens there
    result = _example(name, *base, *args)
    assert result.returncode == 2, result.stdout + result.stderr
    message = " ".join(result.stderr.split())
    for word in words:
        assert word in message, (word, result.stderr)
    assert "Traceback" not in result.stderr
