"""Pick the hardware at run time: CUDA, else Apple MPS, else CPU; mixed precision where it is measured faster.

``compute.device`` and ``compute.precision`` default to ``auto`` so that one
committed ``params.yaml`` serves every teammate's machine; the resolved values
are recorded in the stage's metrics instead. The same precision applies to
training (the Trainer's mixed precision: fp32 master weights) and to every
encoding (``autocast``). ``auto`` times the model's own layer shape in fp32 and
in each low precision the device computes natively (bf16 on a CPU with
AVX512-BF16, AMX or Arm BF16; bf16 and fp16 on a GPU) and takes the fastest
(``precision_probe``); a CPU without native bf16 runs fp32 unmeasured, since
emulated bf16 is a hundred times slower.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from dataclasses import dataclass
from pathlib import Path

from stages.lib.common.errors import UserError
from stages.lib.models.precision_probe import LayerShape, ProbeResult, probe

log = logging.getLogger(__name__)

DEVICES = ("cuda", "mps", "cpu")


def available_devices() -> list[str]:
    import torch

    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        found.append("mps")
    return found + ["cpu"]


def resolve_device(requested: str) -> str:
    """``auto`` -> the best device present; a forced device must exist."""
    available = available_devices()
    if requested == "auto":
        return available[0]
    if requested not in available:
        raise UserError(
            f"params.yaml key 'compute.device' is {requested!r}, but this machine has no such device "
            f"(available: {', '.join(available)}). Set it to auto, or to one of those."
        )
    return requested


NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16", "bf16")  # x86 AMX, x86 AVX512, Arm


def cpu_bf16_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> list[str]:
    """The flags in ``cpuinfo`` that say this CPU computes in bf16 natively (none: it would be emulated)."""
    try:
        flags = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []  # macOS, Windows: no bf16 on the CPU assumed
    words = set(flags.replace("\t", " ").split())
    return [flag for flag in NATIVE_BF16_FLAGS if flag in words]


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (AVX512-BF16 or AMX-BF16 on x86, BF16 on Arm).

    Without it PyTorch emulates bf16 on the CPU, about a hundred times slower than fp32 (an AVX2-only AMD EPYC,
    torch 2.13, 2 threads: a 512x512 bf16 product at 1.15 GFLOP/s; fp32 products reach 154 GFLOP/s there).
    """
    return bool(cpu_bf16_flags())


def precision_candidates(device: str) -> list[str]:
    """The precisions ``auto`` chooses between on ``device``: fp32 and what the hardware computes natively."""
    if device == "cuda":
        import torch

        return ["fp32", "bf16", "fp16"] if torch.cuda.is_bf16_supported() else ["fp32", "fp16"]
    if device == "cpu" and cpu_has_native_bf16():
        return ["fp32", "bf16"]
    return ["fp32"]  # Apple MPS: its autocast is incomplete in the Trainer stack


def decide_precision(requested: str, device: str, model_dir: Path | None = None) -> tuple[str, ProbeResult | None]:
    """``auto`` -> the fastest of ``precision_candidates`` on one layer of the model in ``model_dir`` (measured
    once per machine, then cached), with the measurement; a forced value as it is, if the hardware can do it."""
    if requested == "auto":
        candidates = precision_candidates(device)
        if len(candidates) == 1:
            return candidates[0], None
        result = _probe_once(device, tuple(candidates), LayerShape.of_model(model_dir, device))
        return result.choice, result
    if requested == "fp16" and device == "cpu":
        raise UserError(
            "params.yaml key 'compute.precision' is 'fp16', which the CPU cannot train in. "
            "Use fp32 (or bf16 on a CPU that supports it), or auto."
        )
    if requested == "bf16" and device == "cpu" and not cpu_has_native_bf16():
        raise UserError(
            "params.yaml key 'compute.precision' is 'bf16', but this CPU has no native bf16 (no avx512_bf16 or "
            "amx_bf16 in /proc/cpuinfo): PyTorch would emulate it, hundreds of times slower than fp32. "
            "Use auto or fp32 here."
        )
    return requested, None


def resolve_precision(requested: str, device: str, model_dir: Path | None = None) -> str:
    return decide_precision(requested, device, model_dir)[0]


@functools.cache  # one probe (or cache read) and one line per process, however many encoders ask
def _probe_once(device: str, candidates: tuple[str, ...], shape: LayerShape) -> ProbeResult:
    result = probe(device, list(candidates), shape)
    log.info(f"precision auto -> {result.choice} ({result.describe()})")
    return result


def resolve_processes(requested: int | str, device: str) -> int:
    """``auto`` -> one process per CUDA GPU (data parallel), one elsewhere."""
    gpus = 0
    if device == "cuda":
        import torch

        gpus = torch.cuda.device_count()
    if requested == "auto":
        return max(1, gpus)
    processes = int(requested)
    if processes > 1 and device == "mps":
        raise UserError(
            f"params.yaml key 'train.processes' is {processes}, but data-parallel training runs on CUDA GPUs or the "
            "CPU, not on Apple MPS. Set it to 1 (or auto), or set 'compute.device' to cpu."
        )
    if device == "cuda" and processes > gpus:
        raise UserError(
            f"params.yaml key 'train.processes' is {processes}, but only {gpus} CUDA GPU(s) are visible: one process "
            "drives one GPU. Set it to auto (one per GPU) or at most the number of GPUs (see CUDA_VISIBLE_DEVICES)."
        )
    return processes


@dataclass(frozen=True)
class Hardware:
    device: str
    precision: str
    processes: int = 1
    probe: ProbeResult | None = None  # the measurement ``auto`` chose the precision by, if it measured

    def describe(self) -> str:
        """One line for the log: where, in what precision, and why that precision."""
        if self.probe:
            return f"{self.device}, {self.precision} (the fastest: {self.probe.describe()})"
        if self.precision == "fp32":
            # Said only where it is the reason: fp32 may also be asked for on a CPU that has bf16.
            why = "no native bf16 on this CPU" if self.device == "cpu" and not cpu_has_native_bf16() else "full precision"
        elif self.device == "cpu":
            why = f"autocast, native bf16 ({', '.join(cpu_bf16_flags()) or 'forced'})"
        else:
            why = "autocast"
        return f"{self.device}, {self.precision} ({why})"


    def metrics(self) -> dict[str, str | float]:
        """What a stage records of it: device, precision, and the probe's rates if ``auto`` measured them."""
        return {"device": self.device, "precision": self.precision, **(self.probe.metrics() if self.probe else {})}


def resolve_hardware(device: str, precision: str, processes: int | str = 1, model_dir: Path | None = None) -> Hardware:
    """The ``compute.*`` (and for training ``train.processes``) params, with every ``auto`` resolved for this machine;
    ``model_dir`` gives the layer shape a precision probe times (the bundled base's shape without it)."""
    resolved = resolve_device(device)
    chosen, measured = decide_precision(precision, resolved, model_dir)
    return Hardware(resolved, chosen, resolve_processes(processes, resolved), measured)


# Texts per forward pass when encoding, for ``auto``. sentence-transformers sorts a call's texts by length, so
# batches pad little whatever their size; on a CPU small ones keep the activations in cache: multilingual-e5-small
# on 2 cores encoded 22.0 chunks/s at 8 per pass against 18.2 at 64 (``python -m benchmarks.encode_throughput``,
# benchmarks/results/encode_throughput.json). A GPU wants wide passes.
CPU_ENCODE_BATCH, ACCELERATOR_ENCODE_BATCH = 8, 128


def encoding_batch_size(requested: int | str, device: str) -> int:
    """``evaluate.batch_size``: a number as given; ``auto`` -> what this device encodes fastest with."""
    if requested != "auto":
        return int(requested)
    return CPU_ENCODE_BATCH if device == "cpu" else ACCELERATOR_ENCODE_BATCH


def autocast(device: str, precision: str):
    """The context to encode in: bf16/fp16 matrix products with fp32 weights (``torch.autocast``), or none for fp32.

    Vectors come out of it in the low precision; callers turn them to fp32 before normalising or storing.
    """
    if precision == "fp32" or device not in ("cpu", "cuda"):
        return contextlib.nullcontext()
    import torch

    return torch.autocast(device_type=device, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
