"""Benchmark: where a training step of the default recipe spends its time, fed two ways.

Builds the default pipeline's inputs in a temporary project (as ``benchmarks.train_throughput`` does), then runs
the train stage's own Trainer for ``--warmup`` + ``--steps`` optimizer steps (the default's whole epoch) with clocks
around each part of a step, summed over the timed steps, once per variant (``VARIANTS``): shuffled duplicate-free
batches with GIST's guide run in every step (the stage before stages/lib/training/batches.py and guide_memory.py),
and similar-length batches with the guide's embeddings remembered (the stage now). The parts:

- collation: tokenising and padding a batch (the data collator);
- model forward: the trained model's forward passes (anchors and positives);
- guide forward / guide lookup: GIST's frozen guide scoring the same texts in the step, or read from its memory;
- guide memory fill: embedding every distinct training text once before the first step, per step of the epoch;
- backward: the gradient computation (``accelerator.backward``);
- optimizer: the optimizer's step (between the Trainer's pre- and post-optimizer-step events);
- other: the rest of the step (the loss's similarity matrices, the scheduler, zeroing gradients, callbacks).

It also counts the tokens the model computed against the real ones (padding) and reports the useful GFLOP/s
(weights and attention over real tokens, forward and backward: ``train_throughput``'s count) against the best
matrix product of this machine in the run's precision.

    python -m benchmarks.train_step_profile                          # about 2 minutes on 2 cores
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


# The two ways a step can be fed: the variant the train stage ran before training/batches.py and guide_memory.py
# (shuffled duplicate-free batches, GIST's guide run in every step), and the one it runs now.
VARIANTS = {
    "random batches, guide every step": {"similar_length_batches": False, "guide_memory": False},
    "similar-length batches, guide remembered": {"similar_length_batches": True, "guide_memory": True},
}


def measure(steps: int, warmup: int) -> dict:
    import torch

    from stages.lib.common.cores import cpu_threads
    from stages.lib.common.params import load_params
    from stages.lib.common.progress import quiet_library_bars
    from stages.lib.models.hardware import resolve_hardware
    from stages.lib.training.inputs import build_inputs
    from stages.lib.training.locations import BASE_DIR

    quiet_library_bars()
    params = load_params()
    hardware = resolve_hardware(params.compute.device, params.compute.precision, 1, BASE_DIR)
    if hardware.device == "cpu":
        torch.set_num_threads(cpu_threads())
    built = build_inputs(params, hardware)
    per_pair = training_flops_per_pair(built.model, list(built.train_data["anchor"]), list(built.train_data["positive"]),
                                       params.model.max_seq_length)
    peak = matmul_peak(hardware.device, hardware.precision)
    variants = {name: _profile(built, params, hardware, steps, warmup, per_pair, peak, **settings)
                for name, settings in VARIANTS.items()}
    before, after = (variants[name]["pairs_per_second"] for name in VARIANTS)
    return {
        "cpu": cpu_name(),
        "device": hardware.device,
        "precision": hardware.precision,
        "threads": torch.get_num_threads() if hardware.device == "cpu" else None,
        "loss": params.train.loss,
        "batch_size": params.train.batch_size,
        "timed_steps": steps,
        "matmul_peak_gflops": round(peak / 1e9, 1),
        "speedup": round(after / before, 2),
        "variants": variants,
    }


def _profile(built, params, hardware, steps: int, warmup: int, per_pair: float, peak: float,
             similar_length_batches: bool, guide_memory: bool) -> dict:
    """One variant's step, part by part. The guide memory's fill (before the first step) is counted per step of the
    whole epoch, the share of it a full run pays for each step."""
    from transformers import TrainerCallback

    from stages.lib.training.guide_memory import RememberedGuide
    from stages.lib.training.trainer import TrainerSettings, build_trainer, steps_per_epoch

    # No checkpoint inside the timing.
    train_params = params.train.model_copy(update={"checkpoint_fraction": 1.0,
                                                   "similar_length_batches": similar_length_batches})
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
        started = time.perf_counter()
        setup = build_trainer(built.model, built.train_data, None, TrainerSettings(
            params=train_params, hardware=hardware, work=Path(work),
            vocabulary_extended=built.vocabulary.tokens_added > 0))
        trainer = setup.trainer
        guide = getattr(trainer.loss, "guide", None)
        fill_seconds = time.perf_counter() - started if isinstance(guide, RememberedGuide) else 0.0
        if isinstance(guide, RememberedGuide) and not guide_memory:
            guide = trainer.loss.guide = guide.guide  # the guide itself, run in every step
        trainer.args.max_steps = warmup + steps
        events = StepEvents()
        trainer.add_callback(events)
        trainer.data_collator = CountingCollator(trainer.data_collator, clocks)
        hooks = _hook(built.model, "model forward", clocks)
        if guide is not None:
            hooks += _hook(guide, "guide forward" if not guide_memory else "guide lookup", clocks)
        trainer.accelerator.backward = clocks.timed("backward", trainer.accelerator.backward)
        trainer.train()
        for hook in hooks:
            hook.remove()

    # Collation runs in the data loader, before the step's begin event: the step's wall time excludes it.
    stepping = sum(events.step_seconds)
    measured = {part: seconds for part, seconds in clocks.seconds.items() if part != "collation"}
    epoch_steps = steps_per_epoch(len(built.train_data), params.train.batch_size)
    fill_per_step = fill_seconds / epoch_steps * steps if guide_memory else 0.0
    parts = {**measured, "other": max(0.0, stepping - sum(measured.values())), "collation": clocks.seconds["collation"],
             **({"guide memory fill": fill_per_step} if guide_memory else {})}
    total = stepping + clocks.seconds["collation"] + fill_per_step
    pairs_per_second = params.train.batch_size * steps / total
    return {
        "seconds_per_step_median": round(statistics.median(events.step_seconds), 3),
        "seconds_per_step_all_included": round(total / steps, 3),
        "share_of_step": {part: round(seconds / total, 3) for part, seconds in
                          sorted(parts.items(), key=lambda item: -item[1])},
        "seconds_per_step_by_part": {part: round(seconds / steps, 3) for part, seconds in
                                     sorted(parts.items(), key=lambda item: -item[1])},
        "padding_overhead": round(clocks.tokens_computed / max(1, clocks.tokens_real) - 1, 3),
        "pairs_per_second": round(pairs_per_second, 2),
        "useful_gflops": round(pairs_per_second * per_pair / 1e9, 1),
        "utilisation": round(pairs_per_second * per_pair / peak, 3),
    }


def _hook(module, part: str, clocks: PartClocks) -> list:
    return [module.register_forward_pre_hook(lambda *_: clocks.start(part)),
            module.register_forward_hook(lambda *_: clocks.stop(part))]


def main() -> None:
    run_on_default_inputs(__doc__, measure, default_steps=10)


if __name__ == "__main__":
    main()
