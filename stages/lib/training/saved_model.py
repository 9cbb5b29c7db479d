"""The model folder train writes: the selected model (the best validated checkpoint, possibly ensembled
with the base model's weights, the base model itself when no fine-tuned step beat it, or the last one
without validation), replaced as a whole, with identical bytes for identical runs.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from stages.lib.common.files import replacing_directory


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


def save_selected_model(model, keeper, work: Path, output_dir: Path, weights_mixed: bool = False) -> None:
    """Write the best validated model (or the last one, without validation) to ``output_dir``.

    ``weights_mixed``: ``model`` holds the best checkpoint's weights ensembled with the base model's
    (``weight_ensembling.py``), so it is saved itself rather than the checkpoint's copy on disk.
    """
    from stages.lib.training.checkpoints import BEST_DIR

    best = work / BEST_DIR
    with replacing_directory(output_dir) as staging:
        if keeper.best_step is not None and best.is_dir() and not weights_mixed:
            shutil.copytree(best, staging, dirs_exist_ok=True)
        else:
            model.save(str(staging))
        strip_run_timing(staging)
