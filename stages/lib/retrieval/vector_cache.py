"""Persistent embedding vectors of local models: per model content, per text hash, in append-only shards.

Encoding the corpus is the slow part of evaluation (minutes per model on a CPU),
and most reruns change only one model (a new fine-tune) or nothing the vectors
depend on (a fusion knob). So every vector is stored the moment its block is
encoded, under ``data/embedding_cache/`` (a ``persist: true`` DVC output)::

    st-<key>/meta.json         what the key stands for (model content hash, max_seq_length)
    st-<key>/<name>.npz        one shard per encoded block: hashes uint8[n, 32], vectors float32[n, dim]

* A vector is stored under the hash of its text and the prompt put before it
  (``text_hash``), so one model's query and document vectors of the same
  text never mix, and changing a prompt re-encodes only what it touches.

* The key hashes the model folder's content (``files.content_hash``) and
  the settings that change a vector, so a retrained model gets a fresh folder
  and an unchanged base model keeps its vectors.
* A shard is written to a ``.tmp`` file and renamed: a killed run leaves whole
  shards (resumed from) and at most one ``.tmp`` file (ignored, removed later).
  A shard that cannot be read or fails a check is dropped and its texts are
  encoded again; it never stops the run.
* Shards are append-only, so DVC stores each one once however often the
  folder is committed; compaction and pruning (after a successful run) keep
  the folder's size bounded.

API embedding models keep their own JSONL files at the top of the same folder
(``stages/lib/retrieval/api_embeddings.py``); nothing here touches them.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from stages.lib.common.files import content_hash, write_json

log = logging.getLogger(__name__)

LOCAL_PREFIX = "st-"
SHARD_SUFFIX = ".npz"
HASH_BYTES = 32
# Compact a model's folder into one shard when it holds this many shards, or when
# more than this share of its vectors belong to texts the last run did not use.
MAX_SHARDS = 64
MAX_STALE_SHARE = 0.5


def text_hash(text: str, prompt: str = "") -> bytes:
    """The key of one model input: the text, and the prompt put before it (part of what the vector depends on)."""
    if not prompt:
        return hashlib.sha256(text.encode("utf-8")).digest()
    return hashlib.sha256(prompt.encode("utf-8") + b"\0" + text.encode("utf-8")).digest()


def model_cache_name(model_content_hash: str, max_seq_length: int, precision: str = "fp32") -> str:
    """Folder name for one model: its content plus the settings that change its vectors (truncation, and the
    precision of the forward pass: bf16 vectors differ from fp32 ones in the third decimal)."""
    settings = f"{model_content_hash}|max_seq_length={max_seq_length}|normalized"
    if precision != "fp32":  # fp32 keeps the name it had before precisions were told apart
        settings += f"|precision={precision}"
    return LOCAL_PREFIX + hashlib.sha256(settings.encode()).hexdigest()[:24]


class VectorCache:
    """Vectors by text hash, for one model; backed by a folder of shards, or by memory only (``folder=None``)."""

    def __init__(self, folder: Path | None, meta: dict | None = None) -> None:
        self.folder = folder
        self.meta = meta or {}
        self._rows: dict[bytes, np.ndarray] = {}
        self.dim: int | None = None
        self.shards: list[Path] = []
        self.dropped_shards: list[str] = []
        self.used: set[bytes] = set()  # what this run read: what compaction keeps
        if folder is not None:
            self._load()

    # -- reading ---------------------------------------------------------------------------------

    def _load(self) -> None:
        assert self.folder is not None
        self.folder.mkdir(parents=True, exist_ok=True)
        for leftover in self.folder.glob("*.tmp"):
            leftover.unlink(missing_ok=True)  # a block cut short by a kill: its texts are simply encoded again
        if self.meta and not (self.folder / "meta.json").is_file():
            write_json(self.folder / "meta.json", self.meta)
        for shard in self._take_shards(self.folder):
            self.dropped_shards.append(shard.name)
            shard.unlink(missing_ok=True)
        if self.dropped_shards:
            log.warning(f"WARNING: {len(self.dropped_shards)} unreadable vector shard(s) in {self.folder} "
                        "were dropped; their texts are encoded again.")

    def _take_shards(self, folder: Path) -> list[Path]:
        """Keep the vectors of every readable shard in ``folder``; return the unreadable ones."""
        unreadable = []
        for shard in sorted(folder.glob(f"*{SHARD_SUFFIX}")):
            loaded = self._read_shard(shard)
            if loaded is None:
                unreadable.append(shard)
                continue
            hashes, vectors = loaded
            self.dim = vectors.shape[1]
            self._rows.update(zip((h.tobytes() for h in hashes), vectors, strict=True))
            self.shards.append(shard)
        return unreadable

    def _read_shard(self, shard: Path) -> tuple[np.ndarray, np.ndarray] | None:
        """The shard's (hashes, vectors), or None when it is damaged in any way."""
        try:
            with np.load(shard, allow_pickle=False) as data:
                hashes, vectors = data["hashes"], data["vectors"]
        except Exception:  # truncated zip, bad header, missing array: all mean "encode again"
            return None
        valid = (
            hashes.dtype == np.uint8 and hashes.ndim == 2 and hashes.shape[1] == HASH_BYTES
            and vectors.dtype == np.float32 and vectors.ndim == 2 and len(vectors) == len(hashes)
            and vectors.shape[1] > 0 and (self.dim is None or vectors.shape[1] == self.dim)
            and bool(np.isfinite(vectors).all())
        )
        return (hashes, vectors) if valid else None

    def __contains__(self, digest: bytes) -> bool:
        return digest in self._rows

    def __len__(self) -> int:
        return len(self._rows)

    def vectors(self, digests: Sequence[bytes]) -> np.ndarray:
        """Rows for ``digests``, in order (each must be present)."""
        self.used.update(digests)
        if not digests:
            return np.zeros((0, self.dim or 0), dtype=np.float32)
        return np.stack([self._rows[d] for d in digests])

    # -- writing ---------------------------------------------------------------------------------

    def add(self, digests: Sequence[bytes], vectors: np.ndarray) -> None:
        """Keep a freshly encoded block, and (with a folder) store it as one shard before returning."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(digests):
            raise ValueError(f"expected {len(digests)} vectors, got an array of shape {vectors.shape}")
        if self.dim is not None and vectors.shape[1] != self.dim:
            raise ValueError(f"vectors of dimension {vectors.shape[1]} added to a cache of dimension {self.dim}")
        self.dim = vectors.shape[1]
        if self.folder is not None:
            self.shards.append(self._write_shard(digests, vectors))
        self._rows.update(zip(digests, vectors, strict=True))

    def _write_shard(self, digests: Sequence[bytes], vectors: np.ndarray) -> Path:
        assert self.folder is not None
        hashes = np.frombuffer(b"".join(digests), dtype=np.uint8).reshape(len(digests), HASH_BYTES)
        # Sortable and unique without coordination: time, then process id.
        name = f"{time.time_ns():020d}-{os.getpid()}{SHARD_SUFFIX}"
        final, partial = self.folder / name, self.folder / (name + ".tmp")
        with partial.open("wb") as handle:
            np.savez(handle, hashes=hashes, vectors=vectors)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, final)
        return final

    def compact(self) -> bool:
        """Rewrite the folder as one shard of the vectors this run used, when it has grown stale or fragmented."""
        if self.folder is None or not self.used:
            return False  # a cache this run never read says nothing about what is stale
        keep = sorted(d for d in self.used if d in self._rows)
        stale = len(self._rows) - len(keep)
        if len(self.shards) < MAX_SHARDS and stale <= MAX_STALE_SHARE * max(len(self._rows), 1):
            return False
        old = list(self.shards)
        kept_vectors = self.vectors(keep)
        self.shards = [self._write_shard(keep, kept_vectors)] if keep else []
        for shard in old:
            shard.unlink(missing_ok=True)
        self._rows = dict(zip(keep, kept_vectors, strict=True))
        return True


def open_model_cache(root: Path, model_dir: Path, max_seq_length: int, precision: str = "fp32") -> VectorCache:
    """The cache of the model in ``model_dir`` (identified by its content, wherever it lives)."""
    content = content_hash(model_dir)
    meta = {"model_dir": str(model_dir), "content_hash": content, "max_seq_length": max_seq_length, "precision": precision}
    return VectorCache(root / model_cache_name(content, max_seq_length, precision), meta)


def open_model_cache_read_only(root: Path, model_dir: Path, max_seq_length: int, precision: str = "fp32") -> VectorCache:
    """The same model's stored vectors in a memory-only cache: reading them changes nothing on disk."""
    stored = VectorCache(None)  # no folder: what it adds stays in memory
    folder = root / model_cache_name(content_hash(model_dir), max_seq_length, precision)
    if folder.is_dir():
        stored._take_shards(folder)  # unreadable shards are skipped, not removed
    return stored


def prune_model_caches(root: Path, keep: Iterable[str]) -> list[str]:
    """Delete the folders of local models not in ``keep``; API embedding files are never touched."""
    keep = set(keep)
    removed = []
    if not root.is_dir():
        return removed
    for folder in sorted(root.iterdir()):
        if folder.is_dir() and folder.name.startswith(LOCAL_PREFIX) and folder.name not in keep:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder.name)
    return removed
