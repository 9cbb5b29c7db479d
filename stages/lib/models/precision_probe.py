"""Which precision computes this model fastest on this machine, measured instead of read from the CPU's flags.

A CPU's flags say whether it computes bf16 natively, not whether bf16 is faster there: on a 2-core Intel Xeon
with AVX512-BF16 and no AMX, bf16 autocast encoded about 1.6x slower than fp32 (../shared/NOTES.md, fifth
round), while on an AMD EPYC with the same flag a training step was 1.5x faster. So ``compute.precision: auto``
times one transformer layer of the model's own shape (its width, heads and feed-forward size, at a typical
chunk length), a forward pass as encoding does and a forward and backward pass as training does, in fp32 and
in each low precision the device computes natively, and takes the fastest.

The decision is cached per machine (CPU model, CPU flags, usable cores, torch version, GPU name, layer shape)
in the user's cache folder, so that a pipeline run probes once and every stage, and every data-parallel
worker, uses the same precision. A cache file that does not parse, or whose entry does not match this machine
or contradicts its own rates, is ignored and rewritten, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from stages.lib.common.cores import usable_cores
from stages.lib.common.files import write_text_atomic

PRECISIONS = ("fp32", "bf16", "fp16")  # the order rates are shown and recorded in
PROBE_VERSION = 1  # part of the cache key: a changed probe measures again
ROUNDS = 3  # timed rounds per precision after one warm-up; the median is kept
# A low precision must be this much faster to be chosen: it rounds the model's arithmetic, and two medians of a
# sub-second probe on a busy machine differ by a few percent between runs.
LOW_PRECISION_MARGIN = 1.05


@dataclass(frozen=True)
class LayerShape:
    """One encoder layer of the model, and the batch it is timed on."""

    width: int = 384  # multilingual-e5-small, the bundled base
    heads: int = 12
    ffn: int = 1536
    length: int = 128  # tokens: a 200-character Chinese chunk is about 110 XLM-R tokens
    batch: int = 4

    @classmethod
    def of_model(cls, model_dir: Path | None, device: str) -> LayerShape:
        """The shape in ``model_dir``'s ``config.json`` (BERT-like keys); the bundled base's where it has none."""
        batch = 4 if device == "cpu" else 32  # a GPU needs a wide batch for launch overheads not to decide
        try:
            config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8")) if model_dir else {}
            width, heads, ffn = int(config["hidden_size"]), int(config["num_attention_heads"]), int(config["intermediate_size"])
        except (OSError, ValueError, KeyError, TypeError):
            return cls(batch=batch)
        if width <= 0 or heads <= 0 or ffn <= 0 or width % heads:
            return cls(batch=batch)
        return cls(width=width, heads=heads, ffn=ffn, batch=batch)

    def round_flops(self) -> float:
        """Floating-point operations of one probe round: a forward pass, then a forward and a backward pass
        (backward costs about twice the forward)."""
        tokens = self.batch * self.length
        linear = 2 * tokens * (4 * self.width * self.width + 2 * self.width * self.ffn)  # q, k, v, out; FFN in, out
        attention = 2 * 2 * self.batch * self.length * self.length * self.width  # scores and weighted values
        return 4 * (linear + attention)


@dataclass(frozen=True)
class ProbeResult:
    """The measured rates (GFLOP/s per precision), the precision chosen from them, and where they came from."""

    rates: dict[str, float]
    choice: str
    cached: bool

    def describe(self) -> str:
        rates = ", ".join(f"{precision} {rate:.0f}" for precision, rate in self._in_order())
        return f"{rates} GFLOP/s on one layer of the model, {'cached' if self.cached else 'measured now'}"

    def metrics(self) -> dict[str, float]:
        return {f"precision_probe_{precision}_gflops": round(rate, 1) for precision, rate in self._in_order()}

    def _in_order(self) -> list[tuple[str, float]]:
        return sorted(self.rates.items(), key=lambda item: PRECISIONS.index(item[0]))


def choose(rates: dict[str, float]) -> str:
    """fp32 unless a low precision is at least ``LOW_PRECISION_MARGIN`` times faster; then the fastest of those."""
    low = {precision: rate for precision, rate in rates.items() if precision != "fp32"}
    if not low:
        return "fp32"
    fastest = max(low, key=low.get)
    return fastest if low[fastest] >= LOW_PRECISION_MARGIN * rates["fp32"] else "fp32"


def machine_key(device: str, shape: LayerShape, cpuinfo: Path = Path("/proc/cpuinfo")) -> dict:
    """What a measurement depends on: another CPU, core count, torch or GPU measures again."""
    import torch

    cpu_model, flags = _cpu_model_and_flags(cpuinfo)
    return {
        "probe_version": PROBE_VERSION,
        "device": device,
        "gpu": torch.cuda.get_device_name() if device == "cuda" else "",
        "cpu_model": cpu_model,
        "cpu_flags_sha256": hashlib.sha256(" ".join(sorted(flags)).encode()).hexdigest()[:16],
        "cores": usable_cores(),
        "torch": torch.__version__,
        "shape": asdict(shape),
    }


def _cpu_model_and_flags(cpuinfo: Path) -> tuple[str, set[str]]:
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:  # macOS, Windows
        return platform.processor() or platform.machine(), set()
    model, flags = "", set()
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "model name" and not model:
            model = value.strip()
        elif name.strip() in ("flags", "Features") and not flags:  # x86, Arm
            flags = set(value.split())
    return model or platform.machine(), flags


CACHE_DIR_VARIABLE = "EMBEDDING_FT_CACHE_DIR"


def cache_file() -> Path:
    """``precision.json`` in ``$EMBEDDING_FT_CACHE_DIR``, else ``$XDG_CACHE_HOME/embedding-ft`` (``~/.cache`` when
    unset): per user, shared by the user's projects. Delete it to measure again."""
    folder = os.environ.get(CACHE_DIR_VARIABLE)
    if not folder:
        folder = str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "embedding-ft")
    return Path(folder) / "precision.json"


def probe(device: str, candidates: list[str], shape: LayerShape, *, cache: Path | None = None,
          measure: Callable[[str, list[str], LayerShape], dict[str, float]] | None = None,
          cpuinfo: Path = Path("/proc/cpuinfo")) -> ProbeResult:
    """The cached decision for this machine and shape if the cache holds a sound one, else a new measurement
    (written back to the cache)."""
    cache = cache or cache_file()
    key = machine_key(device, shape, cpuinfo)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    entries = _read_entries(cache)
    found = _sound_entry(entries.get(digest), key, candidates)
    if found:
        return ProbeResult(found["rates"], found["choice"], cached=True)
    rates = (measure or measure_rates)(device, candidates, shape)
    result = ProbeResult(rates, choose(rates), cached=False)
    entries[digest] = {"machine": key, "rates": rates, "choice": result.choice,
                       "measured_at": datetime.now(UTC).isoformat(timespec="seconds")}
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(cache, json.dumps({"version": PROBE_VERSION, "entries": entries}, indent=1, sort_keys=True))
    except OSError:
        pass  # a read-only home: measured again next time, nothing else lost
    return result


def _read_entries(cache: Path) -> dict:
    try:
        stored = json.loads(cache.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # absent, or not JSON: rewritten from scratch
    if not isinstance(stored, dict) or stored.get("version") != PROBE_VERSION or not isinstance(stored.get("entries"), dict):
        return {}
    return {digest: entry for digest, entry in stored["entries"].items() if isinstance(entry, dict)}


def _sound_entry(entry: dict | None, key: dict, candidates: list[str]) -> dict | None:
    """The entry if it was measured on this machine for these candidates and its choice follows from its rates."""
    if not entry or entry.get("machine") != key:
        return None
    rates = entry.get("rates")
    if not isinstance(rates, dict) or sorted(rates) != sorted(candidates):
        return None
    if not all(isinstance(rate, int | float) and not isinstance(rate, bool) and math.isfinite(rate) and rate > 0
               for rate in rates.values()):
        return None
    return entry if entry.get("choice") == choose(rates) else None


def measure_rates(device: str, candidates: list[str], shape: LayerShape) -> dict[str, float]:
    """GFLOP/s of one encoder layer of ``shape`` per precision: a warm-up round each (kernels chosen, caches
    filled), then ``ROUNDS`` rounds taken in turn, so that a change of machine load hits every precision alike."""
    import torch

    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    torch.manual_seed(0)
    # Train mode with no dropout: the path a Hugging Face encoder takes (eval mode would take torch's fused
    # fast path, which the models never use).
    layer = torch.nn.TransformerEncoderLayer(shape.width, shape.heads, shape.ffn, dropout=0.0, batch_first=True).to(device)
    # A layer in the middle of the model: its input needs a gradient too (the layer before it trains).
    inputs = torch.randn(shape.batch, shape.length, shape.width, device=device, requires_grad=True)

    def one_round(precision: str) -> float:
        start = time.perf_counter()
        with torch.autocast(device_type=device, dtype=dtypes[precision], enabled=precision != "fp32"):
            with torch.no_grad():
                layer(inputs)
            layer(inputs).float().sum().backward()
        layer.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    for precision in candidates:
        one_round(precision)
    seconds: dict[str, list[float]] = {precision: [] for precision in candidates}
    for _ in range(ROUNDS):
        for precision in candidates:
            seconds[precision].append(one_round(precision))
    return {precision: shape.round_flops() / statistics.median(times) / 1e9 for precision, times in seconds.items()}
