"""The export stage's work once its inputs are checked: the ONNX folder written, then all three encoders measured.

``export_and_measure`` writes ``model.onnx``, ``model_int8.onnx`` and their config into the staging folder the
stage replaces its output with, encodes the measured questions and the corpus with each encoder (PyTorch on the
pipeline's device and precision, ONNX on CUDA when onnxruntime has it), times all three on the CPU on one sample
of those texts, and returns ``metrics/export.json``'s numbers (``export_check`` scores them).
"""

from __future__ import annotations

import logging
from pathlib import Path

from stages.lib.common.params import Params
from stages.lib.common.timers import PhaseTimer
from stages.lib.models.hardware import Hardware, encoding_batch_size, resolve_precision
from stages.lib.models.loading import load_sentence_transformer
from stages.lib.models.onnx_encoder import CPU, OnnxEncoder, default_providers
from stages.lib.models.onnx_export import write_onnx_folder
from stages.lib.models.prompts import Prompts
from stages.lib.serving.export_check import (
    ONNX,
    ONNX_INT8,
    PYTORCH,
    MeasuredQuestions,
    SentenceTransformerBackend,
    cpu_throughput,
    encode_measured,
    export_metrics,
    format_report,
    int8_warning,
    throughput_texts,
)

log = logging.getLogger(__name__)


def export_and_measure(model, model_dir: Path, staging: Path, prompts: Prompts, questions: MeasuredQuestions,
                       params: Params, hardware: Hardware, timer: PhaseTimer) -> dict:
    """Export ``model`` (loaded on the CPU from ``model_dir``) into ``staging``, and measure the three encoders."""
    # PyTorch's CPU throughput row runs in what the CPU computes natively (bf16 or fp32), whatever the GPU uses.
    cpu_precision = hardware.precision if hardware.device == "cpu" else resolve_precision("auto", "cpu", model_dir)

    # 1. The ONNX folder.
    config = write_onnx_folder(model, prompts, params.model.max_seq_length, staging, timer)
    log.info(f"{config.pooling} pooling{', normalised' if config.normalize else ''}, dimension "
             f"{config.dimension}, inputs {', '.join(config.inputs)}")

    # 2. Quality: each encoder's vectors of the questions and the corpus, PyTorch on the pipeline's device.
    batch = encoding_batch_size(params.evaluate.batch_size, "cpu")
    on_cpu = {PYTORCH: SentenceTransformerBackend(model, batch, cpu_precision),
              ONNX: OnnxEncoder(staging, "fp32", batch_size=batch, providers=[CPU]),
              ONNX_INT8: OnnxEncoder(staging, "int8", batch_size=batch, providers=[CPU])}
    measured = _on_pipeline_device(on_cpu, model_dir, hardware, staging, params)
    vectors = {}
    for name, encoder in measured.items():
        with timer(f"encode {name} ({getattr(encoder, 'device', hardware.device)})"):
            vectors[name] = encode_measured(encoder, questions.dataset, prompts)

    # 3. Speed: all three on the CPU, on the same sample of those texts.
    texts = throughput_texts(questions.dataset, prompts, params.export.throughput_texts)
    with timer(f"CPU throughput ({len(texts)} texts x 3)"):
        speed = cpu_throughput(on_cpu, texts, batch)
    return export_metrics(questions, vectors, speed, len(texts), hardware.device, hardware.precision)


def _on_pipeline_device(on_cpu: dict, model_dir: Path, hardware: Hardware, staging: Path, params: Params) -> dict:
    """The encoders the quality is measured with: PyTorch on the pipeline's device and precision, ONNX on CUDA when
    onnxruntime has it."""
    batch = encoding_batch_size(params.evaluate.batch_size, hardware.device)
    measured = dict(on_cpu)
    if hardware.device != "cpu":
        # max_seq_length as the evaluation encoded with it
        model = load_sentence_transformer(model_dir, hardware.device, params.model.max_seq_length)
        measured[PYTORCH] = SentenceTransformerBackend(model, batch, hardware.precision)
    if default_providers() != [CPU]:
        measured[ONNX] = OnnxEncoder(staging, "fp32", batch_size=batch, providers=default_providers())
        measured[ONNX_INT8] = OnnxEncoder(staging, "int8", batch_size=batch, providers=default_providers())
    return measured


def export_report(metrics: dict, questions: MeasuredQuestions, hardware: Hardware, output_dir: Path) -> list[str]:
    """The stage's closing lines: what was measured on what, the table, any int8 warning, how to serve it."""
    lines = [f"{questions.describe()}; PyTorch on {hardware.describe()}, throughput on the CPU for all three:\n"
             f"{format_report(metrics)}"]
    warning = int8_warning(metrics)
    if warning:
        lines.append(warning)
    lines.append(f"{output_dir}/: model.onnx, model_int8.onnx; `python -m stages.serve --backend onnx-int8` serves it")
    return lines
