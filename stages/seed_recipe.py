"""Stage ``seed_recipe``: the recipe this project started from, trained as a baseline -> ``models/seed_recipe/``.

llama-index-finetuning's ``SentenceTransformersFinetuneEngine`` with the seed's own settings
(batch 10, 2 epochs, in-batch negatives, no vocabulary extension, no duplicate-free batches, no
embedding learning rate of its own), on exactly the (query, passage) pairs the ``train`` stage
trained on: those it wrote to ``data/training_pairs.jsonl``, after its round-trip filter and budgets.
``evaluate`` adds it as the ``seed_recipe`` row, so the table shows what our changes to the recipe
are worth on the same questions.

Off by default (``seed_recipe.enabled``): the folder then holds only a note, and ``evaluate``
leaves the row out. Switching it on reruns this stage and ``evaluate``, never ``train`` or
``questions``. A baseline run is not resumable after a crash (it is minutes long, and the engine's
checkpoint option writes where its output goes); the engine runs inside ``models/.seed-recipe-work/``
(ignored by git and DVC), where its trainer puts whatever it writes relative to the current folder.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from pathlib import Path

# The engine's trainer draws only tqdm bars; let them show (stages/__init__.py hides library bars).
os.environ["TQDM_DISABLE"] = "0"

from stages.lib.common.errors import UserError, run_stage  # noqa: E402
from stages.lib.common.files import replacing_directory  # noqa: E402
from stages.lib.common.params import Params, load_params  # noqa: E402
from stages.lib.models.hardware import resolve_device  # noqa: E402
from stages.lib.questions.qa_dataset import QADataset  # noqa: E402
from stages.lib.training.pairs import read_training_pairs  # noqa: E402

log = logging.getLogger(__name__)

BASE_DIR = Path("models/base")
OUTPUT_DIR = Path("models/seed_recipe")
WORK_DIR = Path("models/.seed-recipe-work")
QUESTIONS_DIR = Path("data/questions")
DISABLED_NOTE = ("The seed-recipe baseline is off (params.yaml: seed_recipe.enabled: false), so this folder\n"
                 "holds no model and `evaluate` has no seed_recipe row.\n")


@run_stage("seed_recipe")
def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    params = load_params()
    if not params.seed_recipe.enabled:
        with replacing_directory(OUTPUT_DIR) as staging:
            (staging / "DISABLED.txt").write_text(DISABLED_NOTE, encoding="utf-8")
        log.info("off (seed_recipe.enabled: false): no model, no row in the evaluation")
        return

    # 1. Build: the pairs `train` trained on (its pairs file), as the seed's dataset format.
    dataset = seed_dataset(*read_training_pairs())
    val_set = _load(QUESTIONS_DIR / "val.json")
    device = resolve_device(params.compute.device)
    log.info(f"{len(dataset.queries)} pairs, batch {params.seed_recipe.batch_size}, "
             f"{params.seed_recipe.epochs} epochs, on {device}")

    # 2. Run the seed's engine as it is, into a staging folder that replaces the output only when complete.
    with replacing_directory(OUTPUT_DIR) as staging:
        train_with_seed_engine(dataset, seed_dataset_from(val_set), staging, params, device)

    # 3. Report.
    log.info(f"model in {OUTPUT_DIR}/; `evaluate` adds it as the seed_recipe row")


def _load(path: Path) -> QADataset:
    if not path.is_file():
        raise UserError(f"{path} is missing: run `dvc repro questions` first.")
    return QADataset.load(path)


def seed_dataset(anchors: list[str], positives: list[str]):
    """The pairs in llama-index-finetuning's dataset format: one query and one passage per pair."""
    from llama_index.finetuning import EmbeddingQAFinetuneDataset

    width = len(str(len(anchors)))
    queries = {f"q{i:0{width}d}": anchor for i, anchor in enumerate(anchors)}
    corpus = {f"d{i:0{width}d}": positive for i, positive in enumerate(positives)}
    relevant = {qid: [did] for qid, did in zip(queries, corpus, strict=True)}
    return EmbeddingQAFinetuneDataset(queries=queries, corpus=corpus, relevant_docs=relevant)


def seed_dataset_from(dataset: QADataset):
    from llama_index.finetuning import EmbeddingQAFinetuneDataset

    return EmbeddingQAFinetuneDataset(queries=dataset.queries, corpus=dataset.corpus, relevant_docs=dataset.relevant_docs)


def train_with_seed_engine(dataset, val_dataset, output: Path, params: Params, device: str) -> None:
    from llama_index.finetuning import SentenceTransformersFinetuneEngine
    from transformers import set_seed

    from stages.lib.training.saved_model import strip_run_timing

    set_seed(params.train.seed)
    # The engine's evaluator logs every metric at INFO, twice over once llama-index configured logging.
    logging.getLogger("sentence_transformers").setLevel(logging.WARNING)
    output, base = output.resolve(), BASE_DIR.resolve()
    shutil.rmtree(WORK_DIR, ignore_errors=True)
    WORK_DIR.mkdir(parents=True)
    with contextlib.chdir(WORK_DIR):
        engine = SentenceTransformersFinetuneEngine(
            dataset, model_id=str(base), model_output_path=str(output), batch_size=params.seed_recipe.batch_size,
            val_dataset=val_dataset, epochs=params.seed_recipe.epochs, device=device,
        )
        engine.finetune()
    shutil.rmtree(WORK_DIR, ignore_errors=True)
    if not (output / "modules.json").is_file():
        raise UserError(f"llama-index-finetuning's engine finished without writing a model to {output}.")
    strip_run_timing(output)  # the same run twice must give the same files, or DVC reruns evaluate


if __name__ == "__main__":
    main()
