"""Stage ``export``: ``models/trained`` as ONNX, fp32 and int8 -> ``models/finetuned-onnx/``, measured in ``metrics/export.json``.

The folder holds ``model.onnx`` (fp32), ``model_int8.onnx`` (onnxruntime's dynamic quantisation),
the model's tokenizer, ``onnx_config.json`` (prompts, ``max_seq_length``, pooling, normalisation,
dimension, which file is which) and a README; ``stages/lib/serving/onnx_encoder.py`` reads it and
``python -m stages.serve --backend onnx-int8`` serves it. Pooling and normalisation are in the graph.

Measured against the PyTorch model itself, in the same run: golden test hit@5 and MRR@10 of each
(the synthetic test split when no golden set is about the corpus: ``golden: 0``), the cosine gap of
each export's vectors to PyTorch's on the same texts, and CPU throughput of all three on one sample
of those texts (PyTorch's quality on the pipeline's device, its speed on the CPU like the others').

Off by default (``export.enabled``): the folder then holds only a note and the metrics say it is off.
It reads ``models/trained``, not the shipped ``models/finetuned``, so a new model card never reruns it.
"""

from __future__ import annotations

import os
from pathlib import Path

from stages.lib.common.errors import UserError, run_stage
from stages.lib.common.files import replacing_directory, write_json
from stages.lib.common.params import Params, load_params
from stages.lib.common.progress import quiet_library_bars
from stages.lib.common.timers import PhaseTimer
from stages.lib.documents.chunk_file import load_chunks
from stages.lib.models.hardware import Hardware, encoding_batch_size, resolve_hardware, resolve_precision
from stages.lib.models.prompts import resolve_prompts
from stages.lib.questions.qa_dataset import QADataset
from stages.lib.serving.export_check import (
    ONNX,
    ONNX_INT8,
    PYTORCH,
    SentenceTransformerBackend,
    cpu_throughput,
    encode_measured,
    export_metrics,
    format_report,
    int8_warning,
    measured_questions,
    throughput_texts,
)
from stages.lib.serving.onnx_encoder import CPU, OnnxEncoder, default_providers
from stages.lib.serving.onnx_export import write_onnx_folder
from stages.lib.serving.onnx_folder import DISABLED_FILE

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
        print("[export] off (export.enabled: false): no ONNX model, no measurements")
        return
    timer = PhaseTimer("export")
    hardware = resolve_hardware(params.compute.device, params.compute.precision)
    device = hardware.device
    # PyTorch's CPU throughput row runs in what the CPU computes natively (bf16 or fp32), whatever the GPU uses.
    cpu_precision = hardware.precision if device == "cpu" else resolve_precision("auto", "cpu")

    # 1. Inputs, checked before any slow work: the model, its prompts, the questions to measure on.
    if not (MODEL_DIR / "modules.json").is_file():
        raise UserError(f"{MODEL_DIR} is missing or not a sentence-transformers folder: run `dvc repro train` first.")
    prompts = resolve_prompts(params.model.query_prompt, params.model.document_prompt, MODEL_DIR)
    questions = measured_questions(load_chunks(), params.evaluate.golden_sets, lambda: QADataset.load(TEST_FILE),
                                   params.evaluate.max_queries)
    print(f"[export] {MODEL_DIR} -> {OUTPUT_DIR}/; measured on {questions.describe()}; {prompts.describe()}", flush=True)
    with timer("load model"):
        model = _load_model(MODEL_DIR, "cpu", params)

    # 2. Export into a staging folder that replaces the output only once everything below succeeded.
    with replacing_directory(OUTPUT_DIR) as staging:
        config = write_onnx_folder(model, prompts, params.model.max_seq_length, staging, timer)
        print(f"[export] {config.pooling} pooling{', normalised' if config.normalize else ''}, dimension "
              f"{config.dimension}, inputs {', '.join(config.inputs)}", flush=True)

        # 3. Quality: each encoder's vectors of the questions and the corpus, PyTorch on the pipeline's device.
        batch = encoding_batch_size(params.evaluate.batch_size, "cpu")
        on_cpu = {PYTORCH: SentenceTransformerBackend(model, batch, cpu_precision),
                  ONNX: OnnxEncoder(staging, "fp32", batch_size=batch, providers=[CPU]),
                  ONNX_INT8: OnnxEncoder(staging, "int8", batch_size=batch, providers=[CPU])}
        measured = _on_pipeline_device(on_cpu, hardware, staging, params)
        vectors = {}
        for name, encoder in measured.items():
            with timer(f"encode {name} ({getattr(encoder, 'device', device)})"):
                vectors[name] = encode_measured(encoder, questions.dataset, prompts)

        # 4. Speed: all three on the CPU, on the same sample of those texts.
        texts = throughput_texts(questions.dataset, prompts, params.export.throughput_texts)
        with timer(f"CPU throughput ({len(texts)} texts x 3)"):
            speed = cpu_throughput(on_cpu, texts, batch)

    # 5. Report.
    metrics = export_metrics(questions, vectors, speed, len(texts), device, hardware.precision)
    write_json(METRICS_FILE, metrics)
    print(f"[export] {questions.describe()}; PyTorch on {hardware.describe()}, throughput on the CPU for all three:")
    print(format_report(metrics))
    warning = int8_warning(metrics)
    if warning:
        print(f"[export] {warning}")
    print(f"[export] {OUTPUT_DIR}/: model.onnx, model_int8.onnx; `python -m stages.serve --backend onnx-int8` serves it")
    print(timer.summary(), flush=True)


def _on_pipeline_device(on_cpu: dict, hardware: Hardware, staging: Path, params: Params) -> dict:
    """The encoders the quality is measured with: PyTorch on the pipeline's device and precision, ONNX on CUDA when
    onnxruntime has it."""
    batch = encoding_batch_size(params.evaluate.batch_size, hardware.device)
    measured = dict(on_cpu)
    if hardware.device != "cpu":
        measured[PYTORCH] = SentenceTransformerBackend(_load_model(MODEL_DIR, hardware.device, params), batch,
                                                       hardware.precision)
    if default_providers() != [CPU]:
        measured[ONNX] = OnnxEncoder(staging, "fp32", batch_size=batch, providers=default_providers())
        measured[ONNX_INT8] = OnnxEncoder(staging, "int8", batch_size=batch, providers=default_providers())
    return measured


def _load_model(path: Path, device: str, params: Params):
    import torch
    from sentence_transformers import SentenceTransformer

    from stages.lib.common.cores import cpu_threads

    torch.set_num_threads(cpu_threads())
    model = SentenceTransformer(str(path), device=device)
    model.max_seq_length = params.model.max_seq_length  # as the evaluation encoded with it
    return model


if __name__ == "__main__":
    main()
