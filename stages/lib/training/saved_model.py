"""The model folder train writes: identical bytes for identical runs."""

from __future__ import annotations

import re
from pathlib import Path


def without_run_timing(model_card: str) -> str:
    """Drop the "Training Time" section sentence-transformers writes into the model card.

    It is the only part of a saved model that differs between two runs with the same
    inputs, and it would make DVC see a new model (and rerun `evaluate`) every time.
    """
    return re.sub(r"^### Training Time\n(?:.*\S.*\n)*\n?", "", model_card, flags=re.MULTILINE)


def strip_run_timing(model_dir: Path) -> None:
    """Rewrite ``model_dir``'s model card without its run timing (see ``without_run_timing``)."""
    card = model_dir / "README.md"
    if card.is_file():
        card.write_text(without_run_timing(card.read_text(encoding="utf-8")), encoding="utf-8")


