"""Stage ``export``: ``models/trained`` as ONNX, fp32 and int8 -> ``models/finetuned-onnx/``, measured in ``metrics/export.json``.

The folder holds ``model.onnx`` (fp32), ``model_int8.onnx`` (onnxruntime's dynamic quantisation),
the model's tokenizer, ``onnx_config.json`` (prompts, ``max_seq_length``, pooling, normalisation,
dimension, which file is which) and a README; ``stages/lib/models/onnx_encoder.py`` reads it and
``python -m stages.serve --backend onnx-int8`` serves it. Pooling and normalisation are in the graph.

Measured against the PyTorch model itself, in the same run: golden test hit@5 and MRR@10 of each
(the synthetic test split when no golden set is about the corpus: ``golden: 0``), the cosine gap of
each export's vectors to PyTorch's on the same texts, and CPU throughput of all three on one sample
of those texts (PyTorch's quality on the pipeline's device, its speed on the CPU like the others').

Off by default (``export.enabled``): the folder then holds only a note and the metrics say it is off.
It reads ``models/trained``, not the shipped ``models/finetuned``, so a new model card never reruns it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from stages.lib.common.errors import UserError, run_stage
from stages.lib.common.files import replacing_directory, write_json
from stages.lib.common.params import load_params
from stages.lib.common.progress import quiet_library_bars
from stages.lib.common.timers import PhaseTimer
from stages.lib.documents.chunk_file import load_chunks
from stages.lib.models.hardware import resolve_hardware
from stages.lib.models.loading import load_sentence_transformer
from stages.lib.models.onnx_folder import DISABLED_FILE
from stages.lib.models.prompts import resolve_prompts
from stages.lib.questions.qa_dataset import QADataset
from stages.lib.serving.export_check import measured_questions
from stages.lib.serving.export_run import export_and_measure, export_report

log = logging.getLogger(__name__)

MODEL_DIR = Path("models/trained")
OUTPUT_DIR = Path("models/finetuned-onnx")
METRICS_FILE = Path("metrics/export.json")
TEST_FILE = Path("data/questions/test.json")
DISABLED_NOTE = ("The ONNX export is off (params.yaml: export.enabled: false), so this folder holds no model.\n"
                 "Set export.enabled: true and run `dvc repro export` to write model.onnx and model_int8.onnx here.\n")


@run_stage("export")
def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    quiet_library_bars()
    params = load_params()
    if not params.export.enabled:
        with replacing_directory(OUTPUT_DIR) as staging:
            (staging / DISABLED_FILE).write_text(DISABLED_NOTE, encoding="utf-8")
        write_json(METRICS_FILE, {"enabled": 0})
        log.info("off (export.enabled: false): no ONNX model, no measurements")
        return
    timer = PhaseTimer("export")
    hardware = resolve_hardware(params.compute.device, params.compute.precision, model_dir=MODEL_DIR)

    # 1. Inputs, checked before any slow work: the model, its prompts, the questions to measure on.
    if not (MODEL_DIR / "modules.json").is_file():
        raise UserError(f"{MODEL_DIR} is missing or not a sentence-transformers folder: run `dvc repro train` first.")
    prompts = resolve_prompts(params.model.query_prompt, params.model.document_prompt, MODEL_DIR)
    questions = measured_questions(load_chunks(), params.evaluate.golden_sets, lambda: QADataset.load(TEST_FILE),
                                   params.evaluate.max_queries)
    log.info(f"{MODEL_DIR} -> {OUTPUT_DIR}/; measured on {questions.describe()}; {prompts.describe()}")
    with timer("load model"):
        model = load_sentence_transformer(MODEL_DIR, "cpu", params.model.max_seq_length)

    # 2. Export and measure, in a staging folder that replaces the output only once everything succeeded.
    with replacing_directory(OUTPUT_DIR) as staging:
        metrics = export_and_measure(model, MODEL_DIR, staging, prompts, questions, params, hardware, timer)

    # 3. Report.
    write_json(METRICS_FILE, metrics)
    for line in export_report(metrics, questions, hardware, OUTPUT_DIR):
        log.info(line)
    timer.log_summary()


if __name__ == "__main__":
    main()
