"""What the server needs from a model, and the sentence-transformers (PyTorch) implementation of it.

An ``Encoder`` turns texts into float32 rows with the model's own query or document prompt put before
each text, truncated to the model's ``max_seq_length`` exactly as the evaluation encoded them. The ONNX
backend (``stages/lib/models/onnx_encoder.py``: ``OnnxEncoder(folder, variant="fp32" | "int8")``)
implements the same protocol. The server calls an encoder from one worker thread only, so an
implementation need not be thread-safe.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from stages.lib.models.prompts import DOCUMENT_PROMPT_NAMES

# What a text is to the model: each role has its own prompt and its own encode method.
QUERY, PASSAGE = "query", "passage"
ROLES = (QUERY, PASSAGE)


@runtime_checkable
class Encoder(Protocol):
    name: str  # the model's name, e.g. its folder's ("finetuned")
    dimension: int  # floats per vector
    max_seq_length: int  # tokens the model reads per text (prompt and special tokens included); the rest is cut
    query_prompt: str  # put before every query ("" for none)
    document_prompt: str  # put before every document / passage

    def encode_query(self, texts: Sequence[str]) -> np.ndarray:
        """One float32 row per text, after the query prompt, as the evaluation encoded queries."""
        ...

    def encode_document(self, texts: Sequence[str]) -> np.ndarray:
        """One float32 row per text, after the document prompt, as the evaluation encoded passages."""
        ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens per text as given (callers put the prompt before it), special tokens included, before truncation."""
        ...


class SentenceTransformerEncoder:
    """A sentence-transformers folder on CUDA, else Apple MPS, else the CPU (``device="auto"``).

    Vectors are ``SentenceTransformer.encode_query`` / ``encode_document`` with the model's own prompts
    and ``max_seq_length``, normalised to unit length as the evaluation normalised them (the pipeline's
    models end in a Normalize module, so this changes nothing for them). ``precision="auto"`` encodes in bf16
    where the hardware computes it natively (a GPU, a CPU with AVX512-BF16 or AMX), as ``evaluate`` does.
    """

    def __init__(self, folder: Path, device: str = "auto", batch_size: int | None = None, precision: str = "auto") -> None:
        from stages.lib.models.hardware import encoding_batch_size, resolve_hardware
        from stages.lib.models.loading import count_without_length_warning, load_sentence_transformer

        hardware = resolve_hardware(device, precision, model_dir=folder)
        self.device, self.precision = hardware.device, hardware.precision
        self.hardware = hardware.describe()
        self._model = load_sentence_transformer(folder, self.device)  # with the folder's own max_seq_length
        # Texts per forward pass, after sentence-transformers sorts a call's texts by length: 8 on a CPU, where small
        # passes pad little and stay in cache (a request's few texts pad most: six calls of 36 random law articles
        # took 5.5 s at 8 per pass, 12 s at 32), wide on a GPU (models/hardware.py).
        self._batch_size = batch_size or encoding_batch_size("auto", self.device)
        self.name = Path(folder).resolve().name
        self.dimension = int(self._model.get_embedding_dimension())
        self.max_seq_length = int(self._model.max_seq_length)
        prompts = self._model.prompts or {}
        self.query_prompt = prompts.get("query") or ""
        # The prompt encode_document itself picks: the first of its names that the model has.
        self.document_prompt = next((prompts[n] or "" for n in DOCUMENT_PROMPT_NAMES if n in prompts), "")
        count_without_length_warning(self._model.tokenizer)  # count_tokens counts texts of any length

    def encode_query(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(self._model.encode_query, texts)

    def encode_document(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(self._model.encode_document, texts)

    def _encode(self, method, texts: Sequence[str]) -> np.ndarray:
        from stages.lib.models.encoding import encode_in_precision

        return encode_in_precision(self._model, list(texts), self._batch_size, self.device, self.precision, method=method)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        encoded = self._model.tokenizer(list(texts), add_special_tokens=True, truncation=False, return_attention_mask=False,
                            return_token_type_ids=False)
        return [len(ids) for ids in encoded["input_ids"]]
