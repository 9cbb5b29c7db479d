"""The persistent vector cache and the cache-backed encoder: reuse, resume after a kill, damage, pruning."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from stages.lib.common.files import content_hash
from stages.lib.retrieval import vector_cache
from stages.lib.retrieval.dense_encoding import encode_eval_texts, encode_texts
from stages.lib.retrieval.vector_cache import VectorCache, model_cache_name, open_model_cache, prune_model_caches, text_hash


class FakeEncoder:
    """Deterministic vectors from the text itself; records every call."""

    def __init__(self, fail_on_call: int | None = None) -> None:
        self.calls: list[list[str]] = []
        self.prompts: list[str] = []
        self.fail_on_call = fail_on_call

    def __call__(self, texts: list[str], prompt: str = "") -> np.ndarray:
        self.calls.append(list(texts))
        self.prompts.append(prompt)
        if self.fail_on_call is not None and len(self.calls) == self.fail_on_call:
            raise KeyboardInterrupt  # what a Ctrl-C (or the last thing before a kill -9) looks like
        return np.stack([vector_of(prompt + t) for t in texts])

    @property
    def encoded(self) -> list[str]:
        return [t for call in self.calls for t in call]


def vector_of(text: str) -> np.ndarray:
    seed = int.from_bytes(text_hash(text)[:8], "little")
    vector = np.random.default_rng(seed).normal(size=8).astype(np.float32)
    return vector / np.linalg.norm(vector)


TEXTS = [f"文本 {i} " + "长" * (i % 13) for i in range(50)]


def test_vectors_come_back_aligned_and_each_distinct_text_is_encoded_once(tmp_path):
    encoder = FakeEncoder()
    texts = TEXTS + TEXTS[:5]  # duplicates share one vector
    matrix = encode_texts(texts, encoder, VectorCache(tmp_path / "st-x"), "test", block_size=16)
    assert np.array_equal(matrix, np.stack([vector_of(t) for t in texts]))
    assert sorted(encoder.encoded) == sorted(TEXTS)
    assert [len(call) for call in encoder.calls] == [16, 16, 16, 2]
    lengths = [len(t) for t in encoder.encoded]
    assert lengths == sorted(lengths, reverse=True)  # longest first, so each batch is evenly padded

    again = FakeEncoder()
    reopened = VectorCache(tmp_path / "st-x")
    assert len(reopened) == len(TEXTS) and len(reopened.shards) == 4
    assert np.array_equal(encode_texts(texts, again, reopened, "test"), matrix)
    assert again.calls == []  # everything from disk


def test_corpus_and_query_sets_split_back_apart(tmp_path):
    vectors = encode_eval_texts(TEXTS[:30], {"test": TEXTS[30:40], "val": TEXTS[35:50]}, FakeEncoder(),
                                VectorCache(None), "test")
    assert np.array_equal(vectors.corpus, np.stack([vector_of(t) for t in TEXTS[:30]]))
    assert np.array_equal(vectors.queries["val"], np.stack([vector_of(t) for t in TEXTS[35:50]]))
    assert vectors.queries["test"].shape == (10, 8)


def test_a_killed_run_resumes_from_the_blocks_it_finished(tmp_path):
    folder = tmp_path / "st-x"
    with pytest.raises(KeyboardInterrupt):
        encode_texts(TEXTS, FakeEncoder(fail_on_call=3), VectorCache(folder), "test", block_size=10)
    (folder / "00000000000000000009-1.npz.tmp").write_bytes(b"half a shard")  # what a kill mid-write leaves
    resumed = FakeEncoder()
    cache = VectorCache(folder)
    assert len(cache) == 20 and not list(folder.glob("*.tmp"))
    matrix = encode_texts(TEXTS, resumed, cache, "test", block_size=10)
    assert len(resumed.encoded) == 30 and not set(resumed.encoded) & set(cache_texts_before(TEXTS, 20))
    assert np.array_equal(matrix, np.stack([vector_of(t) for t in TEXTS]))


def cache_texts_before(texts: list[str], n: int) -> list[str]:
    """The n texts a first run encodes first (longest first, stable)."""
    return sorted(dict.fromkeys(texts), key=lambda t: -len(t))[:n]


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "wrong_dimension", "nan"])
def test_a_damaged_shard_is_dropped_and_its_texts_encoded_again(tmp_path, damage, logged):
    folder = tmp_path / "st-x"
    encode_texts(TEXTS, FakeEncoder(), VectorCache(folder), "test", block_size=20)
    shards = sorted(folder.glob("*.npz"))
    victim = shards[1]
    if damage == "garbage":
        victim.write_bytes(b"not a zip file at all")
    elif damage == "truncated":
        victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    elif damage == "empty":
        victim.write_bytes(b"")
    else:
        with np.load(victim) as data:
            hashes, vectors = data["hashes"], data["vectors"]
        vectors = np.zeros((len(hashes), 3), np.float32) if damage == "wrong_dimension" else vectors * np.nan
        np.savez(victim, hashes=hashes, vectors=vectors)
    cache = VectorCache(folder)
    assert any("1 unreadable vector shard(s)" in message for message in logged())
    assert len(cache) == 30 and not victim.exists()
    again = FakeEncoder()
    matrix = encode_texts(TEXTS, again, cache, "test", block_size=20)
    assert len(again.encoded) == 20
    assert np.array_equal(matrix, np.stack([vector_of(t) for t in TEXTS]))


def _model(folder, weights: bytes):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(weights)
    return folder


def test_cache_key_follows_model_content_and_truncation_not_readme(tmp_path):
    base = _model(tmp_path / "base", b"weights")
    copy = tmp_path / "copy"
    shutil.copytree(base, copy)
    (copy / "README.md").write_text("a model card says nothing about the vectors")
    name = model_cache_name(content_hash(base), 256)
    assert model_cache_name(content_hash(copy), 256) == name
    assert model_cache_name(content_hash(base), 128) != name
    # bf16 vectors differ from fp32 ones: their own folder; fp32 keeps the name it always had.
    assert model_cache_name(content_hash(base), 256, "bf16") not in (name, model_cache_name(content_hash(base), 256, "fp16"))
    assert model_cache_name(content_hash(base), 256, "fp32") == name
    (copy / "model.safetensors").write_bytes(b"weightz")
    assert model_cache_name(content_hash(copy), 256) != name
    assert name.startswith(vector_cache.LOCAL_PREFIX)


def test_only_the_changed_model_is_encoded_again_and_stale_models_are_pruned(tmp_path):
    root = tmp_path / "embedding_cache"
    root.mkdir()
    (root / "0123456789abcdef.jsonl").write_text('{"h": "x", "v": [1.0]}\n')  # an API model's vectors
    base, finetuned = _model(tmp_path / "base", b"base"), _model(tmp_path / "finetuned", b"v1")
    for model in (base, finetuned):
        encode_texts(TEXTS, FakeEncoder(), open_model_cache(root, model, 256), "test")
    (finetuned / "model.safetensors").write_bytes(b"v2")  # a new fine-tune
    base_encoder, finetuned_encoder = FakeEncoder(), FakeEncoder()
    base_cache = open_model_cache(root, base, 256)
    finetuned_cache = open_model_cache(root, finetuned, 256)
    encode_texts(TEXTS, base_encoder, base_cache, "test")
    encode_texts(TEXTS, finetuned_encoder, finetuned_cache, "test")
    assert base_encoder.calls == [] and len(finetuned_encoder.encoded) == len(TEXTS)
    assert len([p for p in root.iterdir() if p.is_dir()]) == 3

    removed = prune_model_caches(root, keep=[base_cache.folder.name, finetuned_cache.folder.name])
    assert len(removed) == 1
    assert sorted(p.name for p in root.iterdir()) == sorted(
        ["0123456789abcdef.jsonl", base_cache.folder.name, finetuned_cache.folder.name])


def test_compaction_keeps_only_what_the_run_used(tmp_path, monkeypatch):
    folder = tmp_path / "st-x"
    encode_texts(TEXTS, FakeEncoder(), VectorCache(folder), "test", block_size=5)
    cache = VectorCache(folder)
    assert not cache.compact()  # nothing used yet is not a reason to delete: only stale share and shard count are
    encode_texts(TEXTS[:10], FakeEncoder(), cache, "test")  # 40 of 50 vectors unused: stale
    assert cache.compact()
    assert len(list(folder.glob("*.npz"))) == 1
    reopened = VectorCache(folder)
    assert len(reopened) == 10
    assert np.array_equal(reopened.vectors([text_hash(t) for t in TEXTS[:10]]),
                          np.stack([vector_of(t) for t in TEXTS[:10]]))

    monkeypatch.setattr(vector_cache, "MAX_SHARDS", 3)
    fragmented = VectorCache(tmp_path / "st-y")
    encode_texts(TEXTS, FakeEncoder(), fragmented, "test", block_size=10)
    assert fragmented.compact() and len(list((tmp_path / "st-y").glob("*.npz"))) == 1
    assert len(VectorCache(tmp_path / "st-y")) == len(TEXTS)


def test_memory_only_cache_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cache = VectorCache(None)
    encode_texts(TEXTS, FakeEncoder(), cache, "test")
    assert len(cache) == len(TEXTS) and list(tmp_path.iterdir()) == [] and not cache.compact()


@pytest.mark.slow
def test_api_embedding_models_keep_their_own_cache_next_to_the_local_ones(tmp_path):
    from stages.lib.common.endpoint import Endpoint
    from stages.lib.retrieval.api_embeddings import CachedAPIEmbedder
    from tests.openai_stub import StubOpenAI, hashed_embedding

    root = tmp_path / "embedding_cache"
    with StubOpenAI() as stub:
        endpoint = Endpoint(stub.base_url, stub.api_key)
        for _ in range(2):
            embedder = CachedAPIEmbedder("stub-embed", endpoint, root, 8, 0, 30)
            matrix = encode_texts(TEXTS, embedder.encode, VectorCache(None), "api", block_size=16)
        assert stub.embedded_texts == len(TEXTS)  # the second pass came from the JSONL cache
    expected = np.asarray([hashed_embedding(t) for t in TEXTS], dtype=np.float32)
    assert np.allclose(matrix, expected / np.linalg.norm(expected, axis=1, keepdims=True), atol=1e-6)
    (api_file,) = root.glob("*.jsonl")
    assert prune_model_caches(root, keep=[]) == [] and api_file.is_file()


def test_vectors_are_keyed_by_prompt_and_text(tmp_path):
    from stages.lib.models.prompts import Prompts
    from stages.lib.retrieval.dense_encoding import encode_eval_texts

    encoder, cache = FakeEncoder(), VectorCache(tmp_path / "st-model")
    prompts = Prompts("query: ", "passage: ")
    # The same text as a document and as a query: two inputs, two vectors, each encoded after its own prompt.
    vectors = encode_eval_texts(["同一段文字", "第二段"], {"test": ["同一段文字"]}, encoder, cache, "test", prompts)
    assert sorted(encoder.prompts) == ["passage: ", "query: "]
    assert np.allclose(vectors.corpus[0], vector_of("passage: 同一段文字"))
    assert np.allclose(vectors.queries["test"][0], vector_of("query: 同一段文字"))
    assert text_hash("同一段文字", "query: ") in cache and text_hash("同一段文字", "passage: ") in cache
    assert text_hash("同一段文字") not in cache
    # A new query prompt encodes the queries again, and only them.
    again = FakeEncoder()
    encode_eval_texts(["同一段文字", "第二段"], {"test": ["同一段文字"]}, again, VectorCache(tmp_path / "st-model"), "test",
                      Prompts("Represent this question: ", "passage: "))
    assert again.prompts == ["Represent this question: "] and again.calls == [["同一段文字"]]


def test_the_runtime_is_weighed_on_the_texts_the_cache_lacks(tmp_path, monkeypatch):
    """evaluate.backend auto measures ONNX Runtime only on a pass with enough to encode: the texts PyTorch's cache
    lacks, each with its own prompt, not the whole pass."""
    from stages.lib.models.encoding_backend import decide
    from stages.lib.models.hardware import Hardware
    from stages.lib.retrieval import dense_encoding

    weighed: list[tuple[list[str], str]] = []

    def resolve(requested, device, precision, model_dir, max_seq_length, batch_size, texts, prompt, **_):
        weighed.append((list(texts), prompt))
        return decide(requested, device, precision, None, len(texts)), None

    monkeypatch.setattr(dense_encoding, "resolve_backend", resolve)
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}", encoding="utf-8")
    hardware = Hardware("cpu", "fp32")
    prompts = ["passage: "] * 3 + ["query: "] * 2
    texts = TEXTS[:5]

    def open_pass():
        return dense_encoding.open_model_pass(model, hardware, 64, 8, "auto", texts, prompts, tmp_path / "cache")

    first = open_pass()
    assert weighed[-1] == (texts, "passage: ") and first.choice.backend == "torch"
    # Every text but the third in the cache (a query text under the passage prompt does not count as cached).
    encode_texts(texts[:2] + texts[3:], FakeEncoder(), first.cache, "test", prompts=prompts[:2] + prompts[3:])
    encode_texts(texts[3:4], FakeEncoder(), first.cache, "test", prompts="passage: ")
    open_pass()
    assert weighed[-1] == ([texts[2]], "passage: ")
    encode_texts(texts, FakeEncoder(), open_pass().cache, "test", prompts=prompts)
    open_pass()
    assert weighed[-1] == ([], "")
