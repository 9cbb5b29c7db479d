"""Read the corpus stage's output."""

from __future__ import annotations

from pathlib import Path

from stages.lib.common.errors import UserError
from stages.lib.common.files import read_jsonl
from stages.lib.documents.chunking import Chunk

CHUNKS_FILE = Path("data/corpus/chunks.jsonl")
DOCUMENTS_FILE = Path("data/corpus/documents.jsonl")  # one line per document: source, encoding, characters
# Chunks of 'corpus.extra_documents_dir': training material only, all in the train split.
EXTRA_CHUNKS_FILE = Path("data/corpus/extra_chunks.jsonl")


def load_chunks(path: Path = CHUNKS_FILE) -> list[Chunk]:
    if not path.is_file():
        raise UserError(f"{path} is missing: run `dvc repro corpus` first.")
    return [Chunk(**row) for row in read_jsonl(path)]
