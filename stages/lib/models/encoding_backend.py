"""Which runtime encodes texts in bulk: PyTorch, in the precision ``compute.precision`` resolved to, or ONNX Runtime
in fp32 over an export of the model (``evaluate.backend``: auto | torch | onnx).

ONNX Runtime runs the same graph with other kernels, so whether it is faster depends on the machine: on one AMD
EPYC it encoded at 0.82x PyTorch fp32 (benchmarks/results/export.json); on a 2-core Intel Xeon with AMX at 0.86x
PyTorch fp32 and 0.44x PyTorch bf16 (benchmarks/results/encode_throughput_intel_amx.json). A probe of a few layers
with random weights did not tell: there it timed ONNX Runtime between 0.9x and 1.1x PyTorch bf16, against 0.44x on
the real model and texts. So ``auto`` measures on the model itself, and only where it can pay off:

- on a GPU, PyTorch;
- a pass of fewer than ``MIN_PROBE_TEXTS`` texts stays on PyTorch unmeasured: exporting the model (``EXPORT_SECONDS``
  and more) costs more than ONNX Runtime could save on it;
- otherwise the model is exported once (fp32 graph, temporary folder), ``PROBE_TEXTS`` texts of the pass are encoded
  with PyTorch in the run's precision, with PyTorch fp32 and with ONNX Runtime, and ONNX Runtime is used when it is at
  least ``ONNX_MARGIN`` times faster, its vectors match PyTorch fp32's (cosine at least ``MIN_COSINE`` for every
  text) and the time it saves on the pass exceeds the export's. The export made for the probe is the one that
  encodes. Never int8: its vectors differ (benchmarks/results/export.json: 10 of 254 questions changed).

The measurement is cached per machine (CPU, cores, torch and onnxruntime versions), model architecture and
precision, in ``encoding_backend.json`` beside the precision probe's ``precision.json``: a later pass on the same
machine decides from it without exporting, unless ONNX Runtime won. An unreadable or foreign entry is measured again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from stages.lib.common.errors import UserError
from stages.lib.common.files import write_text_atomic
from stages.lib.common.timers import PhaseTimer
from stages.lib.models.precision_probe import LayerShape, cache_file, machine_key

log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnx")
PROBE_VERSION = 1
PROBE_TEXTS = 64  # a seeded sample of the pass's texts: a few seconds per runtime on 2 cores
ONNX_MARGIN = 1.05  # two medians of a short measurement on a busy machine differ by a few percent
MIN_COSINE = 0.9999
# Exporting the model and loading the graph: about 12 s for multilingual-e5-small on a 2-core Intel Xeon (the fp32
# export 10.4 s with another job running, the 470 MB graph's session 1-2 s); the probe measures it for its model.
EXPORT_SECONDS = 15.0
# Below this many texts even ONNX Runtime at twice PyTorch's speed would not pay for the export on a 2-core CPU
# (multilingual-e5-small: 5,000 texts at about 100 texts/s save 25 s at best): no probe, PyTorch.
MIN_PROBE_TEXTS = 5_000
# What a model's architecture is, for the cache: its config without the keys a save adds or changes.
ARCHITECTURE_KEYS = ("model_type", "hidden_size", "num_attention_heads", "intermediate_size", "num_hidden_layers",
                     "vocab_size", "max_position_embeddings", "hidden_act", "position_embedding_type")


@dataclass(frozen=True)
class BackendRates:
    """Texts per second of the probe's sample in each runtime, how closely ONNX Runtime's vectors follow PyTorch's
    fp32 vectors (the smallest cosine), and what the export took."""

    torch_texts_per_s: float
    onnx_texts_per_s: float
    min_cosine: float
    export_seconds: float
    cached: bool = False

    @property
    def speedup(self) -> float:
        """ONNX Runtime's speed over PyTorch's: above 1, ONNX Runtime is faster."""
        return self.onnx_texts_per_s / self.torch_texts_per_s

    def metrics(self) -> dict[str, float]:
        return {"backend_probe_torch_texts_per_s": round(self.torch_texts_per_s, 1),
                "backend_probe_onnx_texts_per_s": round(self.onnx_texts_per_s, 1),
                "backend_probe_onnx_min_cosine": round(self.min_cosine, 6)}


@dataclass(frozen=True)
class BackendChoice:
    backend: str  # torch | onnx
    reason: str
    rates: BackendRates | None = None

    def metrics(self) -> dict:
        return {"encode_backend": self.backend, **(self.rates.metrics() if self.rates else {})}


def decide(requested: str, device: str, precision: str, rates: BackendRates | None, texts: int,
           export_paid: bool = False) -> BackendChoice:
    """The backend for a pass of ``texts`` texts (pure: the rates are given). ``export_paid``: the probe has just
    exported the model, so using ONNX Runtime costs no export any more."""
    if requested in ("torch", "onnx"):
        return BackendChoice(requested, f"evaluate.backend: {requested}", rates)
    if device != "cpu":
        return BackendChoice("torch", f"auto: PyTorch on the {device}", rates)
    if rates is None:
        return BackendChoice("torch", f"auto: PyTorch ({texts} texts: fewer than {MIN_PROBE_TEXTS}, too few for ONNX "
                             "Runtime to pay for exporting the model, or it could not be measured)")
    if rates.min_cosine < MIN_COSINE:
        return BackendChoice("torch", f"auto: PyTorch (ONNX Runtime's vectors differ, cosine {rates.min_cosine:.6f})",
                             rates)
    if rates.speedup < ONNX_MARGIN:
        return BackendChoice("torch", f"auto: PyTorch {precision}, {rates.torch_texts_per_s:.0f} texts/s against ONNX "
                             f"Runtime fp32's {rates.onnx_texts_per_s:.0f} here", rates)
    saved = texts / rates.torch_texts_per_s - texts / rates.onnx_texts_per_s
    if saved < rates.export_seconds and not export_paid:
        return BackendChoice("torch", f"auto: PyTorch; ONNX Runtime fp32 is {rates.speedup:.2f}x faster here, but "
                             f"{texts} texts would save about {saved:.0f} s, less than exporting the model costs "
                             f"({rates.export_seconds:.0f} s)", rates)
    return BackendChoice("onnx", f"auto: ONNX Runtime fp32, {rates.onnx_texts_per_s:.0f} texts/s against PyTorch "
                         f"{precision}'s {rates.torch_texts_per_s:.0f} here, about {saved:.0f} s saved on {texts} texts",
                         rates)


def architecture(model_dir: Path) -> dict:
    try:
        config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {key: config.get(key) for key in ARCHITECTURE_KEYS} if isinstance(config, dict) else {}


def backend_cache_file() -> Path:
    return cache_file().with_name("encoding_backend.json")


def cache_key(model_dir: Path, precision: str) -> dict:
    import onnxruntime

    return {**machine_key("cpu", LayerShape.of_model(model_dir, "cpu")), "backend_probe_version": PROBE_VERSION,
            "onnxruntime": onnxruntime.__version__, "precision": precision, "architecture": architecture(model_dir)}


def cached_rates(key: dict, cache: Path) -> BackendRates | None:
    entry = _read_entries(cache).get(_digest(key))
    if not _sound(entry, key):
        return None
    return BackendRates(**entry["rates"], cached=True)


def store_rates(key: dict, rates: BackendRates, cache: Path) -> None:
    entries = _read_entries(cache)
    fields = {name: getattr(rates, name) for name in RATE_FIELDS}
    entries[_digest(key)] = {"machine": key, "rates": fields, "measured_at": datetime.now(UTC).isoformat(timespec="seconds")}
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(cache, json.dumps({"version": PROBE_VERSION, "entries": entries}, indent=1, sort_keys=True))
    except OSError:
        pass  # a read-only home: measured again next time, nothing else lost


RATE_FIELDS = ("torch_texts_per_s", "onnx_texts_per_s", "min_cosine", "export_seconds")


def _digest(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]


def _read_entries(cache: Path) -> dict:
    try:
        stored = json.loads(cache.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(stored, dict) or stored.get("version") != PROBE_VERSION or not isinstance(stored.get("entries"), dict):
        return {}
    return {digest: entry for digest, entry in stored["entries"].items() if isinstance(entry, dict)}


def _sound(entry: dict | None, key: dict) -> bool:
    if not entry or entry.get("machine") != key or not isinstance(entry.get("rates"), dict):
        return False
    rates = entry["rates"]
    if sorted(rates) != sorted(RATE_FIELDS):
        return False
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in rates.values()):
        return False
    return (rates["torch_texts_per_s"] > 0 and rates["onnx_texts_per_s"] > 0 and rates["export_seconds"] >= 0
            and -1 <= rates["min_cosine"] <= 1.0001)


def resolve_backend(requested: str, device: str, precision: str, model_dir: Path, max_seq_length: int,
                    batch_size: int, texts: Sequence[str], prompt: str, *, cache: Path | None = None,
                    measure: Callable | None = None) -> tuple[BackendChoice, OnnxBulkEncoder | None]:
    """``evaluate.backend`` for one model's pass over ``texts`` (most of them after ``prompt``), and the ONNX export
    if the probe made one (the encoder to use when ONNX Runtime is chosen)."""
    if requested not in BACKENDS:
        raise UserError(f"params.yaml key 'evaluate.backend' is {requested!r}: use one of {', '.join(BACKENDS)}.")
    if requested != "auto" or device != "cpu":
        return decide(requested, device, precision, None, len(texts)), None
    cache = cache or backend_cache_file()
    key = cache_key(model_dir, precision)
    rates = cached_rates(key, cache)
    if rates is not None or len(texts) < MIN_PROBE_TEXTS:
        return decide(requested, device, precision, rates, len(texts)), None
    sample = random.Random(0).sample(list(texts), min(PROBE_TEXTS, len(texts)))
    encoder = OnnxBulkEncoder(model_dir, max_seq_length, batch_size)
    try:
        rates = (measure or measure_rates)(model_dir, precision, max_seq_length, batch_size, sample, prompt, encoder)
    except UserError:
        raise
    except Exception as error:  # noqa: BLE001 - an exporter or runtime failure of any kind means: stay on PyTorch
        encoder.close()
        first = (str(error).strip().splitlines() or [""])[0]
        log.warning(f"evaluate.backend auto: ONNX Runtime could not encode with {model_dir} ({type(error).__name__}: "
                    f"{first}); PyTorch encodes")
        return BackendChoice("torch", "auto: PyTorch (ONNX Runtime could not run this model)"), None
    store_rates(key, rates, cache)
    choice = decide(requested, device, precision, rates, len(texts), export_paid=True)
    if choice.backend != "onnx":
        encoder.close()
        return choice, None
    return choice, encoder


def measure_rates(model_dir: Path, precision: str, max_seq_length: int, batch_size: int, sample: list[str],
                  prompt: str, onnx: OnnxBulkEncoder) -> BackendRates:
    """Export the model (timed), then encode ``sample`` with PyTorch in ``precision``, with ONNX Runtime fp32, and
    with PyTorch fp32 (the reference ONNX Runtime's vectors must match), each after one warm-up batch."""
    from stages.lib.models.encoding import encode_in_precision
    from stages.lib.models.loading import load_sentence_transformer

    started = time.perf_counter()
    onnx.export()
    export_seconds = time.perf_counter() - started
    model = load_sentence_transformer(model_dir, "cpu", max_seq_length)

    def with_torch(in_precision: str) -> Callable[[list[str]], np.ndarray]:
        return lambda texts: encode_in_precision(model, texts, batch_size, "cpu", in_precision, prompt=prompt)

    def timed(encode: Callable[[list[str]], np.ndarray]) -> tuple[float, np.ndarray]:
        encode(sample[:batch_size])
        began = time.perf_counter()
        vectors = np.asarray(encode(sample), dtype=np.float32)
        return len(sample) / (time.perf_counter() - began), vectors

    torch_rate, _ = timed(with_torch(precision))
    onnx_rate, onnx_vectors = timed(lambda texts: onnx(texts, prompt))
    _, reference = timed(with_torch("fp32"))
    cosine = np.sum(onnx_vectors * reference, axis=1) / (
        np.linalg.norm(onnx_vectors, axis=1) * np.linalg.norm(reference, axis=1) + 1e-12)
    return BackendRates(torch_texts_per_s=torch_rate, onnx_texts_per_s=onnx_rate, min_cosine=float(cosine.min()),
                        export_seconds=export_seconds)


class OnnxBulkEncoder:
    """ONNX Runtime fp32 over an export of ``model_dir``, made on first use (or ``export()``) in a temporary folder
    removed when the encoder is closed or collected; vectors normalised to unit length, as PyTorch's encoding
    returns them."""

    def __init__(self, model_dir: Path, max_seq_length: int, batch_size: int) -> None:
        self.model_dir, self.max_seq_length, self.batch_size = Path(model_dir), max_seq_length, batch_size
        self._folder: tempfile.TemporaryDirectory | None = None
        self._encoder = None

    def __call__(self, texts: list[str], prompt: str = "") -> np.ndarray:
        self.export()
        vectors = self._encoder.encode(texts, prompt)
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)

    def export(self) -> None:
        """Write the fp32 graph and load it (once)."""
        if self._encoder is not None:
            return
        from stages.lib.models.loading import load_sentence_transformer
        from stages.lib.models.onnx_encoder import OnnxEncoder
        from stages.lib.models.onnx_export import write_onnx_folder
        from stages.lib.models.prompts import NO_PROMPTS

        self._folder = tempfile.TemporaryDirectory(prefix="embedding-ft-onnx-")
        folder = Path(self._folder.name)
        model = load_sentence_transformer(self.model_dir, "cpu", self.max_seq_length)
        try:
            write_onnx_folder(model, NO_PROMPTS, self.max_seq_length, folder, PhaseTimer("onnx"), variants=("fp32",))
        except UserError as error:
            raise UserError(f"{error} Or encode {self.model_dir} with PyTorch: set evaluate.backend: torch.") from None
        self._encoder = OnnxEncoder(folder, "fp32", batch_size=self.batch_size)

    def close(self) -> None:
        self._encoder = None
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None
