"""Benchmark: where a training step of the default recipe spends its time, before anything is made faster.

Builds the default pipeline's inputs in a temporary project (as ``benchmarks.train_throughput`` does), then runs
the train stage's own Trainer for ``--warmup`` + ``--steps`` optimizer steps with clocks around each part of a
step, summed over the timed steps:

- collation: tokenising and padding a batch (the data collator);
- model forward: the trained model's forward passes (anchors and positives);
- guide forward: GIST's frozen guide model scoring the same texts (the default loss);
- backward: the gradient computation (``accelerator.backward``);
- optimizer: the optimizer's step (between the Trainer's pre- and post-optimizer-step events);
- other: the rest of the step (the loss's similarity matrices, the scheduler, zeroing gradients, callbacks).

It also counts the tokens the model computed against the real ones (padding) and reports the useful GFLOP/s
(weights and attention over real tokens, forward and backward: ``train_throughput``'s count) against the best
matrix product of this machine in the run's precision.

    python -m benchmarks.train_step_profile                          # about 3 minutes on 2 cores
    python -m benchmarks.train_step_profile --json benchmarks/results/train_step_profile_intel_amx.json
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from benchmarks.train_throughput import cpu_name, matmul_peak, run_on_default_inputs, training_flops_per_pair


class PartClocks:
    """Wall-clock seconds per part of a step, counted only while ``timing`` is on (after the warm-up)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.started: dict[str, float] = {}
        self.timing = False
        self.tokens_real = self.tokens_computed = 0

    def start(self, part: str) -> None:
        self.started[part] = time.perf_counter()

    def stop(self, part: str) -> None:
        began = self.started.pop(part, None)
        if began is not None and self.timing:
            self.seconds[part] += time.perf_counter() - began

    def timed(self, part: str, function):
        def wrapper(*args, **kwargs):
            self.start(part)
            try:
                return function(*args, **kwargs)
            finally:
                self.stop(part)
        return wrapper

    def hook_module(self, module, part: str) -> None:
        module.register_forward_pre_hook(lambda *_: self.start(part))
        module.register_forward_hook(lambda *_: self.stop(part))


class CountingCollator:
    """The Trainer's data collator, timed, counting real and padded tokens; its other attributes are the collator's
    (sentence-transformers reads some)."""

    def __init__(self, collator, clocks: PartClocks) -> None:
        self.collator, self.clocks = collator, clocks

    def __call__(self, features):
        self.clocks.start("collation")
        batch = self.collator(features)
        self.clocks.stop("collation")
        if self.clocks.timing:
            for key, mask in batch.items():
                if key.endswith("attention_mask"):
                    self.clocks.tokens_real += int(mask.sum())
                    self.clocks.tokens_computed += mask.numel()
        return batch

    def __getattr__(self, name: str):
        return getattr(self.collator, name)


def measure(steps: int, warmup: int) -> dict:
    import torch
    from transformers import TrainerCallback

    from stages.lib.common.cores import cpu_threads
    from stages.lib.common.params import load_params
    from stages.lib.common.progress import quiet_library_bars
    from stages.lib.models.hardware import resolve_hardware
    from stages.lib.training.inputs import build_inputs
    from stages.lib.training.locations import BASE_DIR
    from stages.lib.training.trainer import TrainerSettings, build_trainer

    quiet_library_bars()
    params = load_params()
    hardware = resolve_hardware(params.compute.device, params.compute.precision, 1, BASE_DIR)
    if hardware.device == "cpu":
        torch.set_num_threads(cpu_threads())
    built = build_inputs(params, hardware)
    train_params = params.train.model_copy(update={"checkpoint_fraction": 1.0})  # no checkpoint inside the timing
    clocks = PartClocks()

    class StepEvents(TrainerCallback):
        def __init__(self) -> None:
            self.step_seconds: list[float] = []
            self.began = 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            clocks.timing = state.global_step >= warmup
            self.began = time.perf_counter()

        def on_pre_optimizer_step(self, args, state, control, **kwargs):
            clocks.start("optimizer")

        def on_optimizer_step(self, args, state, control, **kwargs):
            clocks.stop("optimizer")

        def on_step_end(self, args, state, control, **kwargs):
            if clocks.timing:
                self.step_seconds.append(time.perf_counter() - self.began)

    with tempfile.TemporaryDirectory() as work:
        setup = build_trainer(built.model, built.train_data, None, TrainerSettings(
            params=train_params, hardware=hardware, work=Path(work),
            vocabulary_extended=built.vocabulary.tokens_added > 0))
        trainer = setup.trainer
        trainer.args.max_steps = warmup + steps
        events = StepEvents()
        trainer.add_callback(events)
        trainer.data_collator = CountingCollator(trainer.data_collator, clocks)
        clocks.hook_module(built.model, "model forward")
        guide = getattr(trainer.loss, "guide", None)
        if guide is not None:
            clocks.hook_module(guide, "guide forward")
        trainer.accelerator.backward = clocks.timed("backward", trainer.accelerator.backward)
        trainer.train()

    # Collation runs in the data loader, before the step's begin event: the step's wall time excludes it.
    stepping = sum(events.step_seconds)
    measured = {part: seconds for part, seconds in clocks.seconds.items() if part != "collation"}
    parts = {**measured, "other": max(0.0, stepping - sum(measured.values())), "collation": clocks.seconds["collation"]}
    total = stepping + clocks.seconds["collation"]
    per_pair = training_flops_per_pair(built.model, list(built.train_data["anchor"]), list(built.train_data["positive"]),
                                       params.model.max_seq_length)
    pairs_per_second = params.train.batch_size * steps / total
    peak = matmul_peak(hardware.device, hardware.precision)
    return {
        "cpu": cpu_name(),
        "device": hardware.device,
        "precision": hardware.precision,
        "threads": torch.get_num_threads() if hardware.device == "cpu" else None,
        "loss": params.train.loss,
        "batch_size": params.train.batch_size,
        "timed_steps": steps,
        "seconds_per_step_median": round(statistics.median(events.step_seconds), 3),
        "seconds_per_step_with_collation": round(total / steps, 3),
        "share_of_step": {part: round(seconds / total, 3) for part, seconds in
                          sorted(parts.items(), key=lambda item: -item[1])},
        "seconds_per_step_by_part": {part: round(seconds / steps, 3) for part, seconds in
                                     sorted(parts.items(), key=lambda item: -item[1])},
        "padding_overhead": round(clocks.tokens_computed / max(1, clocks.tokens_real) - 1, 3),
        "pairs_per_second": round(pairs_per_second, 2),
        "useful_gflops": round(pairs_per_second * per_pair / 1e9, 1),
        "matmul_peak_gflops": round(peak / 1e9, 1),
        "utilisation": round(pairs_per_second * per_pair / peak, 3),
    }


def main() -> None:
    run_on_default_inputs(__doc__, measure, default_steps=8)


if __name__ == "__main__":
    main()
