"""Stage ``model_card``: ``models/trained`` plus a model card with the run's evidence -> ``models/finetuned/``.

``models/finetuned`` is what ships: the weights ``train`` selected (byte for byte), and a
``README.md`` that states the base model and its pin, the training data, the recipe, the prompts,
the golden-test table against the base model and BM25 with intervals, the hardware, and how to load
the model in sentence-transformers, LlamaIndex and through ``stages.serve``; its front matter carries the
Hub's metadata (base model, licence, languages, golden-test results) for ``python -m stages.publish``. It is a stage of its own
because the evidence exists only after ``evaluate`` (and ``export``), and DVC lets one stage alone
write a folder. It copies rather than trains: a rerun takes seconds, and nothing else depends on it.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from stages.lib.common.errors import UserError, run_stage
from stages.lib.common.files import read_json, read_jsonl, replacing_directory
from stages.lib.common.params import load_params
from stages.lib.models.prompts import model_prompts
from stages.lib.serving.model_card import CardInputs, build_card

log = logging.getLogger(__name__)

TRAINED_DIR = Path("models/trained")
BASE_CARD = Path("models/base/README.md")  # the base model's own card: its licence metadata
OUTPUT_DIR = Path("models/finetuned")
CARD = "README.md"
METRICS = {name: Path(f"metrics/{name}.json") for name in ("train", "eval", "questions", "corpus")}
EXPORT_METRICS = Path("metrics/export.json")
DOCUMENTS_FILE = Path("data/corpus/documents.jsonl")


@run_stage("model_card")
def main() -> None:
    params = load_params()

    # 1. Build: the evidence, from the run's own files.
    missing = [str(path) for path in (TRAINED_DIR / "modules.json", *METRICS.values(), DOCUMENTS_FILE) if not path.is_file()]
    if missing:
        raise UserError(f"model_card needs {', '.join(missing)}: run `dvc repro` so the stages that write them run.")
    trained_card = TRAINED_DIR / CARD
    inputs = CardInputs(
        params=params,
        prompts=model_prompts(TRAINED_DIR),
        train=read_json(METRICS["train"]),
        evaluation=read_json(METRICS["eval"]),
        questions=read_json(METRICS["questions"]),
        corpus=read_json(METRICS["corpus"]),
        documents=[row["source"] for row in read_jsonl(DOCUMENTS_FILE)],
        sentence_transformers_card=trained_card.read_text(encoding="utf-8") if trained_card.is_file() else "",
        export=read_json(EXPORT_METRICS) if EXPORT_METRICS.is_file() else {},
        base_card=BASE_CARD.read_text(encoding="utf-8") if BASE_CARD.is_file() else "",
    )
    card = build_card(inputs)

    # 2. Run: the trained model as it is, with the card, replacing the output only when complete.
    with replacing_directory(OUTPUT_DIR) as staging:
        shutil.copytree(TRAINED_DIR, staging, dirs_exist_ok=True)
        (staging / CARD).write_text(card, encoding="utf-8")

    # 3. Report.
    log.info(f"{OUTPUT_DIR}/ = {TRAINED_DIR}/ + {CARD} ({len(card.splitlines())} lines of evidence and usage)")


if __name__ == "__main__":
    main()
