"""Pick the hardware at run time: CUDA, else Apple MPS, else CPU; mixed precision on a GPU.

``compute.device`` and ``compute.precision`` default to ``auto`` so that one
committed ``params.yaml`` serves every teammate's machine; the resolved values
are recorded in the stage's metrics instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stages.lib.common.errors import UserError

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


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (AVX512-BF16 or AMX-BF16 on x86, BF16 on Arm).

    Without it PyTorch emulates bf16 on the CPU, and a bf16 matrix product runs hundreds of times slower
    than fp32 (measured on this project's AVX2-only machine: 0.33 against 89 GFLOP/s).
    """
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False  # macOS, Windows: no bf16 on the CPU assumed
    words = set(flags.replace("\t", " ").split())
    return bool(words & {"avx512_bf16", "amx_bf16", "bf16"})


def resolve_precision(requested: str, device: str) -> str:
    """``auto`` -> bf16 on a CUDA GPU that supports it, fp16 on an older one, fp32 elsewhere.

    The CPU stays fp32 under ``auto``: whether bf16 autocast keeps golden val within noise has not been
    measured on a CPU that has bf16 (this project's has not). ``bf16`` asks for it on such a CPU.
    """
    if requested == "auto":
        if device != "cuda":
            # MPS autocast is incomplete in the Trainer stack; see above for the CPU.
            return "fp32"
        import torch

        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
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
    return requested


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
    processes: int


def resolve_hardware(device: str, precision: str, processes: int | str) -> Hardware:
    """The ``compute.*`` and ``train.processes`` params, with every ``auto`` resolved for this machine."""
    resolved = resolve_device(device)
    return Hardware(resolved, resolve_precision(precision, resolved), resolve_processes(processes, resolved))
