"""Where a training run reads from: the base model folder, the question files and the list of input files
that the checkpoint fingerprint covers. Constants only, so that every training module can import them
without importing each other.
"""

from __future__ import annotations

from pathlib import Path

from stages.lib.documents.chunk_file import CHUNKS_FILE

BASE_DIR = Path("models/base")
QUESTIONS_DIR = Path("data/questions")
TRAIN_QUESTIONS = QUESTIONS_DIR / "train.json"
VAL_QUESTIONS = QUESTIONS_DIR / "val.json"
# The files a run reads besides the base model and the code. Their order is part of the checkpoint
# fingerprint: reordering them would discard every resumable checkpoint.
INPUT_FILES = (CHUNKS_FILE, TRAIN_QUESTIONS, VAL_QUESTIONS)
