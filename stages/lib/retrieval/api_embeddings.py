"""OpenAI-compatible embedding models as extra evaluation rows: batched, retried, cached.

Vectors are cached per (model, text hash) in an append-only JSONL file, written
batch by batch, so re-evaluating (or resuming after a crash) never pays twice.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from stages.lib.common.endpoint import Endpoint

ENV_PREFIX = "$"


def resolve_model_name(entry: str) -> str:
    """'$EMBEDDING_MODEL' reads the name from the environment (the seed's variable)."""
    from stages.lib.common.errors import UserError

    if not entry.startswith(ENV_PREFIX):
        return entry
    value = os.environ.get(entry[1:], "").strip()
    if not value:
        raise UserError(
            f"params.yaml key 'evaluate.api_embedding_models' lists {entry!r}, but {entry[1:]} is not set in the "
            "environment or .env. Set it, or write the model name in params.yaml."
        )
    return value


def _text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class CachedAPIEmbedder:
    """A ``SentenceTransformer.encode``-like front to an OpenAI-compatible embeddings endpoint."""

    def __init__(self, model: str, endpoint: Endpoint, cache_dir: Path, batch_size: int, max_retries: int,
                 timeout_s: float) -> None:
        from llama_index.embeddings.openai_like import OpenAILikeEmbedding

        self.model, self.batch_size = model, batch_size
        self.client = OpenAILikeEmbedding(
            model_name=model, api_base=endpoint.api_base, api_key=endpoint.api_key,
            embed_batch_size=batch_size, max_retries=max_retries, timeout=timeout_s,
        )
        self.cache_file = cache_dir / f"{hashlib.sha256(model.encode()).hexdigest()[:16]}.jsonl"
        self.vectors = self._load()
        self.requested_texts = 0

    def _load(self) -> dict[str, list[float]]:
        vectors: dict[str, list[float]] = {}
        if self.cache_file.is_file():
            for line in self.cache_file.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by a crash: that text is simply embedded again
                vectors[row["h"]] = row["v"]
        return vectors

    def _append(self, rows: list[dict]) -> None:
        self.cache_file.parent.mkdir(parents=True, exist_ok=True)
        with self.cache_file.open("a", encoding="utf-8") as handle:
            handle.write("".join(json.dumps(row) + "\n" for row in rows))
            handle.flush()
            os.fsync(handle.fileno())

    def encode(self, texts: list[str], prompt: str = "", normalize_embeddings: bool = True) -> np.ndarray:
        """Vectors of ``prompt + text`` for each text (the instruction an instruction-tuned model expects)."""
        texts = [prompt + t for t in texts]
        hashes = [_text_hash(t) for t in texts]
        missing = list(dict.fromkeys(t for t, h in zip(texts, hashes, strict=True) if h not in self.vectors))
        for start in range(0, len(missing), self.batch_size):
            batch = missing[start:start + self.batch_size]
            vectors = self.client.get_text_embedding_batch(batch)
            rows = [{"h": _text_hash(t), "v": v} for t, v in zip(batch, vectors, strict=True)]
            self._append(rows)
            self.vectors.update((row["h"], row["v"]) for row in rows)
            self.requested_texts += len(batch)
        matrix = np.asarray([self.vectors[h] for h in hashes], dtype=np.float32)
        if normalize_embeddings:
            matrix /= np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
        return matrix
