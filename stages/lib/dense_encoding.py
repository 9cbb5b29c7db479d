"""Encode texts once per model: cache-backed, longest first, in blocks, with progress.

Every dense ranking of a stage run (test, val for fusion tuning, hybrid, the
llama-index comparison) reads the vectors produced here; nothing encodes the
corpus twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stages.lib.progress import progress
from stages.lib.vector_cache import VectorCache, text_hash

Encoder = Callable[[list[str]], np.ndarray]
# Texts per block: one shard per block, so a kill loses at most one block of work
# (about 40 s on a 2-core CPU), and the progress line moves at least that often.
BLOCK_SIZE = 1024


class LazySentenceEncoder:
    """A sentence-transformers model, loaded on first use: a run whose vectors are all cached never loads it."""

    def __init__(self, model_dir: Path, device: str, max_seq_length: int, batch_size: int) -> None:
        self.model_dir, self.device = model_dir, device
        self.max_seq_length, self.batch_size = max_seq_length, batch_size
        self._model = None

    def _load(self):
        import torch
        from sentence_transformers import SentenceTransformer

        from stages.lib.device import cpu_threads

        # The cores this process may use (a container's share, not the host's count).
        torch.set_num_threads(cpu_threads())
        model = SentenceTransformer(str(self.model_dir), device=self.device)
        model.max_seq_length = self.max_seq_length
        return model

    def __call__(self, texts: list[str]) -> np.ndarray:
        if self._model is None:
            self._model = self._load()
        return self._model.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True,
            show_progress_bar=False,
        )


def encode_texts(texts: Sequence[str], encode: Encoder, cache: VectorCache, desc: str,
                 block_size: int = BLOCK_SIZE) -> np.ndarray:
    """Vectors for ``texts`` (row i for text i), encoding only the distinct texts ``cache`` lacks."""
    digests = [text_hash(t) for t in texts]
    distinct = dict(zip(digests, texts, strict=True))
    missing = [d for d in distinct if d not in cache]
    # Longest first: neighbours in a batch have similar lengths (little padding), and the
    # slowest blocks (and any out-of-memory error on a GPU) come first, so the ETA errs high.
    missing.sort(key=lambda d: -len(distinct[d]))
    print(f"{desc}: {len(distinct)} distinct texts, {len(distinct) - len(missing)} from cache, "
          f"{len(missing)} to encode", flush=True)
    if missing:
        bar = progress(len(missing), desc, unit="text")
        try:
            for start in range(0, len(missing), block_size):
                block = missing[start:start + block_size]
                cache.add(block, np.asarray(encode([distinct[d] for d in block]), dtype=np.float32))
                bar.update(len(block))
        finally:
            bar.close()
    return cache.vectors(digests)


@dataclass(frozen=True)
class EvalVectors:
    """One model's vectors for the corpus and each query set, rows in the given id order."""

    corpus: np.ndarray
    queries: dict[str, np.ndarray]  # set name ("test", "val") -> rows aligned with that set's query ids


def encode_eval_texts(corpus_texts: Sequence[str], query_sets: dict[str, Sequence[str]], encode: Encoder,
                      cache: VectorCache, desc: str) -> EvalVectors:
    """Corpus and queries in one pass (one progress bar, one length-sorted order), split afterwards."""
    texts = list(corpus_texts)
    bounds = {}
    for name, queries in query_sets.items():
        bounds[name] = (len(texts), len(texts) + len(queries))
        texts.extend(queries)
    matrix = encode_texts(texts, encode, cache, desc)
    return EvalVectors(matrix[:len(corpus_texts)], {name: matrix[a:b] for name, (a, b) in bounds.items()})
