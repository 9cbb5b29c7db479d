"""Encode texts once per model: cache-backed, longest first, in blocks, with progress.

Every dense ranking of a stage run (test, val for fusion tuning, hybrid, the
llama-index comparison) reads the vectors produced here; nothing encodes the
corpus twice. Each model's pass runs in the runtime ``evaluate.backend`` resolves
to (PyTorch, or ONNX Runtime fp32 where it measures faster: ``models/encoding_backend.py``),
with a vector cache per runtime and precision.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stages.lib.common.progress import progress
from stages.lib.models.encoding import encode_in_precision
from stages.lib.models.encoding_backend import BackendChoice, OnnxBulkEncoder, resolve_backend
from stages.lib.models.hardware import Hardware
from stages.lib.models.loading import load_sentence_transformer
from stages.lib.models.prompts import NO_PROMPTS, Prompts
from stages.lib.retrieval.vector_cache import VectorCache, open_model_cache, text_hash

# texts, and the prompt to put before each of them -> one row per text.
Encoder = Callable[[list[str], str], np.ndarray]
# Texts per block: one shard per block, so a kill loses at most one block of work
# (about 40 s on a 2-core CPU), and the progress line moves at least that often.
BLOCK_SIZE = 1024


class LazySentenceEncoder:
    """A sentence-transformers model, loaded on first use: a run whose vectors are all cached never loads it.

    ``precision`` is the resolved ``compute.precision``: bf16/fp16 encode under autocast (fp32 weights, low-precision
    matrix products), and every vector is turned to fp32 and normalised to unit length in fp32.
    """

    def __init__(self, model_dir: Path, device: str, max_seq_length: int, batch_size: int, precision: str = "fp32") -> None:
        self.model_dir, self.device, self.precision = model_dir, device, precision
        self.max_seq_length, self.batch_size = max_seq_length, batch_size
        self._model = None

    def _load(self):
        return load_sentence_transformer(self.model_dir, self.device, self.max_seq_length)

    def __call__(self, texts: list[str], prompt: str = "") -> np.ndarray:
        if self._model is None:
            self._model = self._load()
        # prompt=None would fall back to the model's default prompt; "" means exactly none.
        return encode_in_precision(self._model, texts, self.batch_size, self.device, self.precision, prompt=prompt)


@dataclass(frozen=True)
class ModelPass:
    """How one model encodes in this run: the runtime ``evaluate.backend`` resolved to, its encoder (loaded or
    exported on first use), and the vector cache of that model in that runtime and precision."""

    choice: BackendChoice
    encode: Encoder
    cache: VectorCache


def open_model_pass(model_dir: Path, hardware: Hardware, max_seq_length: int, batch_size: int, backend: str,
                    texts: Sequence[str], prompts: Sequence[str], cache_dir: Path) -> ModelPass:
    """The model's encoder and cache for a pass over ``texts`` (text i after ``prompts[i]``): ``auto`` weighs ONNX
    Runtime against the texts PyTorch's cache lacks (none: nothing to encode, nothing to measure)."""
    torch_cache = open_model_cache(cache_dir, model_dir, max_seq_length, hardware.precision)
    missing = [(text, prompt) for text, prompt in zip(texts, prompts, strict=True)
               if text_hash(text, prompt) not in torch_cache]
    choice, exported = resolve_backend(backend, hardware.device, hardware.precision, model_dir, max_seq_length,
                                       batch_size, [text for text, _ in missing],
                                       missing[0][1] if missing else "")  # the corpus's prompt: it comes first
    if choice.backend == "onnx":
        # ONNX Runtime fp32 vectors differ from PyTorch's in the last digits: a cache of their own.
        return ModelPass(choice, exported or OnnxBulkEncoder(model_dir, max_seq_length, batch_size),
                         open_model_cache(cache_dir, model_dir, max_seq_length, "onnx-fp32"))
    return ModelPass(choice, LazySentenceEncoder(model_dir, hardware.device, max_seq_length, batch_size, hardware.precision),
                     torch_cache)


def encode_texts(texts: Sequence[str], encode: Encoder, cache: VectorCache, desc: str,
                 block_size: int = BLOCK_SIZE, prompts: Sequence[str] | str = "") -> np.ndarray:
    """Vectors for ``texts`` (row i for text i, encoded after ``prompts[i]``, or one prompt for all),
    encoding only the distinct (prompt, text) inputs ``cache`` lacks."""
    prompts = [prompts] * len(texts) if isinstance(prompts, str) else list(prompts)
    digests = [text_hash(t, p) for t, p in zip(texts, prompts, strict=True)]
    distinct = dict(zip(digests, zip(prompts, texts, strict=True), strict=True))
    missing = [d for d in distinct if d not in cache]
    # Longest first: neighbours in a batch have similar lengths (little padding), and the
    # slowest blocks (and any out-of-memory error on a GPU) come first, so the ETA errs high.
    missing.sort(key=lambda d: -len(distinct[d][1]))
    print(f"{desc}: {len(distinct)} distinct texts, {len(distinct) - len(missing)} from cache, "
          f"{len(missing)} to encode", flush=True)
    if missing:
        bar = progress(len(missing), desc, unit="text")
        try:
            for start in range(0, len(missing), block_size):
                block = missing[start:start + block_size]
                for prompt in sorted({distinct[d][0] for d in block}):
                    group = [d for d in block if distinct[d][0] == prompt]
                    cache.add(group, np.asarray(encode([distinct[d][1] for d in group], prompt), dtype=np.float32))
                    bar.update(len(group))
        finally:
            bar.close()
    return cache.vectors(digests)


@dataclass(frozen=True)
class EvalVectors:
    """One model's vectors for the corpus and each query set, rows in the given id order."""

    corpus: np.ndarray
    queries: dict[str, np.ndarray]  # set name ("test", "val") -> rows aligned with that set's query ids


def encode_eval_texts(corpus_texts: Sequence[str], query_sets: dict[str, Sequence[str]], encode: Encoder,
                      cache: VectorCache, desc: str, prompts: Prompts = NO_PROMPTS) -> EvalVectors:
    """Corpus (after the document prompt) and queries (after the query prompt) in one pass (one progress bar,
    one length-sorted order), split afterwards."""
    texts = list(corpus_texts)
    bounds = {}
    for name, queries in query_sets.items():
        bounds[name] = (len(texts), len(texts) + len(queries))
        texts.extend(queries)
    per_text = [prompts.document] * len(corpus_texts) + [prompts.query] * (len(texts) - len(corpus_texts))
    matrix = encode_texts(texts, encode, cache, desc, prompts=per_text)
    return EvalVectors(matrix[:len(corpus_texts)], {name: matrix[a:b] for name, (a, b) in bounds.items()})
