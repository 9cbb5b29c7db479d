"""GIST's frozen guide, run once per distinct text instead of in every step.

The guide (the base model, frozen) only scores in-batch negatives; its embedding of a text never changes during
training. sentence-transformers' GISTEmbedLoss nevertheless runs it on both columns of every batch: a quarter of a
CPU step in the default run (benchmarks/results/train_step_profile_*.json), on batches padded to their longest text,
and again for every passage that several questions share. ``RememberedGuide`` stands in for the guide inside the
loss: before training it embeds every distinct training text once, sorted by length so that a pass pads little, and
during training it answers each batch from that memory. A text it has not seen (a resumed run's batches are the
same texts, so only a change of tokenisation would do that) is embedded as before and remembered.

The memory is written to the run's work folder once filled (``GUIDE_MEMORY_FILE``), so a run resumed after a crash
or ``kill -9`` reads it instead of embedding every text again. That folder is keyed by the run's fingerprint (inputs,
settings, precision, code), so a stored memory was computed by the same guide from the same texts; a file that does
not read back as one is ignored and written again.

Texts are told apart by the token ids the guide receives (and the prompt length, which pooling may read), so the
memory holds exactly what the guide would have computed from those inputs, up to the float rounding of a
different padding width. Memory: one vector per distinct text (384 floats for e5-small: 1.5 KB; 100,000 pairs take
about 300 MB on the CPU side).
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import torch
from torch import nn

from stages.lib.common.files import write_bytes_atomic
from stages.lib.common.progress import progress
from stages.lib.models.hardware import autocast

log = logging.getLogger(__name__)

# Features of a tokenised text that ``tokenizer.pad`` knows how to pad; a guide that reads anything else (images,
# audio, packed sequences) is answered batch by batch, as the loss would have run it.
PADDED_KEYS = ("input_ids", "attention_mask", "token_type_ids")
# What a model writes into the features it is given: cached_gist hands the guide the dict the trained model has
# just filled. Outputs, not inputs: not part of what the guide reads.
MODEL_OUTPUTS = ("token_embeddings", "sentence_embedding", "all_layer_embeddings")
GUIDE_MEMORY_FILE = "guide_memory.pt"  # in the run's work folder, beside the checkpoints


def _batch_metadata(features: dict) -> dict | None:
    """What a batch carries besides its padded token tensors (the modality, the prompt length that pooling may
    read): the same for every row. None if anything else is there (per-row tensors this module cannot pad)."""
    metadata = {}
    for name, value in features.items():
        if name in PADDED_KEYS or name in MODEL_OUTPUTS:
            continue
        if isinstance(value, torch.Tensor):
            if value.numel() > 1:
                return None
            value = value.item()
        if not isinstance(value, (str, int, float, bool, type(None))):
            return None
        metadata[name] = value
    return metadata


def _row_keys(features: dict) -> list[bytes] | None:
    """One key per row: its real (unpadded) token ids and the batch's metadata; None for inputs that are not
    padded token-id batches."""
    ids, mask = features.get("input_ids"), features.get("attention_mask")
    if not isinstance(ids, torch.Tensor) or ids.ndim != 2 or not isinstance(mask, torch.Tensor):
        return None
    metadata = _batch_metadata(features)
    if metadata is None:
        return None
    prefix = repr(sorted(metadata.items())).encode()
    ids, mask = ids.cpu(), mask.cpu().bool()
    return [prefix + row[row_mask].numpy().tobytes() for row, row_mask in zip(ids, mask, strict=True)]


class RememberedGuide(nn.Module):
    """The guide model behind a memory of its sentence embeddings, keyed by the token ids it is given.

    Called like the guide (``guide(features)["sentence_embedding"]``) and exposing what the GIST losses read from
    it (tokenizer, max_seq_length, device, preprocess). ``hits``/``misses`` count rows answered from memory and
    rows embedded during training.
    """

    def __init__(self, guide) -> None:
        super().__init__()
        self.guide = guide
        self.memory: dict[bytes, torch.Tensor] = {}
        self.hits = 0
        self.misses = 0
        self.eval()

    def train(self, mode: bool = True):
        """Always in eval mode, like the guide itself (no dropout in its judgement), whatever a caller asks."""
        return super().train(False)

    @property
    def tokenizer(self):
        return self.guide.tokenizer

    @property
    def max_seq_length(self) -> int:
        return self.guide.max_seq_length

    @property
    def device(self) -> torch.device:
        return self.guide.device

    def preprocess(self, *args, **kwargs):
        return self.guide.preprocess(*args, **kwargs)

    def __getitem__(self, index):  # the losses check the guide's first module (StaticEmbedding or not)
        return self.guide[index]

    def forward(self, features: dict) -> dict:
        keys = _row_keys(features)
        if keys is None:
            return self.guide(features)
        if all(key in self.memory for key in keys):
            self.hits += len(keys)
            return {"sentence_embedding": torch.stack([self.memory[key] for key in keys]).to(self.guide.device)}
        embeddings = self.guide(features)["sentence_embedding"]
        self.misses += len(keys)
        for key, embedding in zip(keys, embeddings.detach(), strict=True):
            self.memory[key] = embedding.to("cpu", copy=True)
        return {"sentence_embedding": embeddings}

    def remember(self, column_batches, precision: str, batch_size: int) -> int:
        """Embed every distinct text of ``column_batches`` (feature dicts as the loss receives them) once, the
        shortest first, ``batch_size`` at a time; returns how many were embedded."""
        # Rows by metadata (one per column, part of the key): a guide pass shares it.
        rows: dict[str, dict] = {}
        for features in column_batches:
            keys = _row_keys(features)
            if keys is None:
                return 0
            metadata = _batch_metadata(features)
            mask = features["attention_mask"].bool()
            same = rows.setdefault(repr(sorted(metadata.items())), {"metadata": metadata, "rows": {}})
            for index, key in enumerate(keys):
                if key not in self.memory and key not in same["rows"]:
                    same["rows"][key] = {name: features[name][index][mask[index]].tolist()
                                         for name in PADDED_KEYS if name in features}
        total = sum(len(group["rows"]) for group in rows.values())
        bar = progress(total, "[train] guide embeddings, once per distinct text", unit="text")
        device = self.guide.device
        # no_grad, not inference_mode: the loss indexes its (differentiated) scores with masks made from these.
        with torch.no_grad(), autocast(device.type, precision):
            for group in rows.values():
                texts = group["rows"]
                ordered = sorted(texts, key=lambda key: len(texts[key]["input_ids"]))
                for start in range(0, len(ordered), batch_size):
                    keys = ordered[start:start + batch_size]
                    padded = dict(self.guide.tokenizer.pad([texts[key] for key in keys], return_tensors="pt"))
                    padded = {name: value.to(device) for name, value in padded.items()} | group["metadata"]
                    embeddings = self.guide(padded)["sentence_embedding"]
                    for key, embedding in zip(keys, embeddings, strict=True):
                        self.memory[key] = embedding.to("cpu", copy=True)
                    bar.update(len(keys))
        bar.close()
        return total


    def save(self, path: Path) -> None:
        """Write the memory to ``path`` (atomically: a kill mid-write leaves the previous file or none)."""
        keys = list(self.memory)
        vectors = torch.stack([self.memory[key] for key in keys]) if keys else torch.empty(0)
        buffer = io.BytesIO()
        torch.save({"keys": [key.hex() for key in keys], "vectors": vectors}, buffer)
        write_bytes_atomic(path, buffer.getvalue())

    def load(self, path: Path) -> int:
        """Add the memory stored in ``path``; returns how many texts it held (0 when there is no readable file)."""
        if not path.is_file():
            return 0
        try:
            stored = torch.load(path, map_location="cpu", weights_only=True)
            keys, vectors = stored["keys"], stored["vectors"]
            if not isinstance(keys, list) or not isinstance(vectors, torch.Tensor) or len(keys) != len(vectors):
                raise ValueError("keys and vectors do not match")
            loaded = {bytes.fromhex(key): vector for key, vector in zip(keys, vectors, strict=True)}
        except Exception as error:  # noqa: BLE001 - any unreadable file is only a cache miss
            log.info(f"ignoring the stored guide memory {path} ({type(error).__name__}: {error}); embedding again")
            return 0
        self.memory.update(loaded)
        return len(loaded)


def remember_training_texts(trainer, precision: str, batch_size: int, store: Path | None = None,
                            is_writer: bool = True) -> RememberedGuide | None:
    """Put a GIST loss's guide behind a memory filled with every training text, as the Trainer's collator tokenises
    it (prompts included); None for a loss without a guide, or whose guide re-tokenises (another vocabulary):
    those keep running the guide in every step. With ``store``, the memory is read from that file first and
    written there (by the writer) when texts were added."""
    loss = trainer.loss
    if not isinstance(getattr(loss, "guide", None), nn.Module) or getattr(loss, "must_retokenize", True):
        return None
    memory = loss.guide if isinstance(loss.guide, RememberedGuide) else RememberedGuide(loss.guide)
    loss.guide = memory
    stored = memory.load(store) if store is not None else 0
    data = trainer.train_dataset
    # 256 rows per collation: the memory is filled from the same tensors the loss will receive.
    batches = (trainer.collect_features(trainer.data_collator([data[i] for i in range(start, min(start + 256, len(data)))]))[0]
               for start in range(0, len(data), 256))
    embedded = memory.remember((features for columns in batches for features in columns), precision, batch_size)
    if store is not None and embedded and is_writer:
        memory.save(store)
    read = f" ({stored} read from {store})" if stored else ""
    log.info(f"guide: {embedded} distinct texts embedded once for {len(data)} training rows{read}")
    return memory
