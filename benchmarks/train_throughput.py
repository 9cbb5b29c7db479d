"""Benchmark: training pairs per second for the default model, and how close that is to the machine's peak.

Builds the default pipeline's inputs in a temporary project (sample, corpus,
questions, base_model: seconds), then times real optimizer steps of the train
stage's own Trainer (same model, vocabulary extension, batch, loss, device and
precision) after a few warm-up steps.

The peak is measured, not looked up: the best dense matrix-multiply rate of this
machine with the same threads and dtype. The model's work per pair is counted
from its shapes: 2 FLOPs per weight per token for the linear layers, plus the
attention products, times 3 for forward and backward, over the tokens actually
in the pairs (padding not counted, so the ratio is a lower bound on utilisation).

    python -m benchmarks.train_throughput                 # 10 timed steps after 2 warm-up steps
    python -m benchmarks.train_throughput --steps 30 --json benchmarks/results/train_throughput.json
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.project import copy_pipeline, write_result

PREPARE = ("sample", "corpus", "questions", "base_model")


def prepare_project(folder: Path, precision: str | None = None) -> None:
    """The default pipeline's inputs in ``folder``; ``precision``: a ``compute.precision`` other than params.yaml's."""
    copy_pipeline(folder)
    if precision:
        params = folder / "params.yaml"
        text = params.read_text(encoding="utf-8")
        params.write_text(text.replace("  precision: auto", f"  precision: {precision}", 1), encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    for stage in PREPARE:
        subprocess.run([sys.executable, "-m", f"stages.{stage}"], cwd=folder, env=env, check=True, capture_output=True)


def flops_per_token(model, tokens_in_sequence: int) -> float:
    """Forward FLOPs per token of a BERT-like encoder: linear layers plus attention scores and mixing."""
    import torch

    transformer = model[0].auto_model
    linear = sum(m.weight.numel() for m in transformer.modules() if isinstance(m, torch.nn.Linear))
    layers = transformer.config.num_hidden_layers
    hidden = transformer.config.hidden_size
    return 2.0 * linear + 4.0 * layers * tokens_in_sequence * hidden


def training_flops_per_pair(model, anchors: list[str], positives: list[str], max_length: int) -> float:
    tokenizer = model.tokenizer
    total = 0.0
    for texts in (anchors, positives):
        lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]
        total += sum(n * flops_per_token(model, n) for n in lengths)
    return 3.0 * total / len(anchors)  # backward costs about twice the forward


def matmul_peak(device: str, dtype_name: str, size: int = 2048, repeats: int = 10) -> float:
    """Best FLOP/s of a square matrix product on this device: what the model's linear layers could reach."""
    import torch

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(dtype_name, torch.float32)
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - started)
    return 2.0 * size**3 / best


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def measure(steps: int, warmup: int) -> dict:
    import torch
    from transformers import TrainerCallback

    from stages.lib.common.cores import cpu_threads
    from stages.lib.common.params import load_params
    from stages.lib.common.progress import quiet_library_bars
    from stages.lib.models.hardware import cpu_bf16_flags, resolve_hardware
    from stages.lib.training.inputs import build_inputs
    from stages.lib.training.trainer import TrainerSettings, build_trainer

    quiet_library_bars()
    params = load_params()
    hardware = resolve_hardware(params.compute.device, params.compute.precision, 1)
    if hardware.device == "cpu":
        torch.set_num_threads(cpu_threads())
    built = build_inputs(params, hardware)
    # No checkpoint or validation inside the timed steps: this measures the training step itself.
    train_params = params.train.model_copy(update={"checkpoint_fraction": 1.0})

    class StepClock(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []

        def on_step_end(self, args, state, control, **kwargs):
            self.times.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as work:
        trainer = build_trainer(built.model, built.train_data, None, TrainerSettings(
            params=train_params, hardware=hardware, work=Path(work),
            vocabulary_extended=built.vocabulary.tokens_added > 0)).trainer
        trainer.args.max_steps = warmup + steps
        clock = StepClock()
        trainer.add_callback(clock)
        trainer.train()
    step_seconds = (clock.times[-1] - clock.times[warmup - 1]) / steps
    pairs_per_second = params.train.batch_size / step_seconds
    per_pair = training_flops_per_pair(built.model, list(built.train_data["anchor"]), list(built.train_data["positive"]),
                                       params.model.max_seq_length)
    peak = matmul_peak(hardware.device, hardware.precision)
    return {
        "device": hardware.device,
        "precision": hardware.precision,
        "threads": torch.get_num_threads() if hardware.device == "cpu" else None,
        "machine": platform.processor() or platform.machine(),
        "cpu": cpu_name(),
        "cpu_native_bf16_flags": cpu_bf16_flags(),
        "batch_size": params.train.batch_size,
        "timed_steps": steps,
        "seconds_per_step": round(step_seconds, 3),
        "pairs_per_second": round(pairs_per_second, 2),
        "gflop_per_pair": round(per_pair / 1e9, 2),
        "achieved_gflops": round(pairs_per_second * per_pair / 1e9, 1),
        "matmul_peak_gflops": round(peak / 1e9, 1),
        "utilisation": round(pairs_per_second * per_pair / peak, 3),
    }


def run_on_default_inputs(description: str, measure_steps, default_steps: int) -> None:
    """The command line of a training-step benchmark: ``measure_steps(steps, warmup)`` run in a temporary project
    holding the default pipeline's inputs, its result printed and written to ``--json``."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=default_steps)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--precision", choices=("auto", "bf16", "fp32"), help="compute.precision (default: params.yaml's)")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        project = Path(folder)
        prepare_project(project, args.precision)
        os.chdir(project)
        result = measure_steps(args.steps, max(1, args.warmup))
    width = max(len(key) for key in result)
    for key, value in result.items():
        print(f"{key:>{width}}: {value}")
    write_result(args.json, result)


def main() -> None:
    run_on_default_inputs(__doc__, measure, default_steps=10)


if __name__ == "__main__":
    main()
