"""The precision probe: the decision from injected timings, the layer's FLOPs against torch's own counter, and the
cache: its key, and a corrupt, foreign or self-contradicting file ignored and rewritten."""

from __future__ import annotations

import json
import math

import pytest

from stages.lib.models import precision_probe
from stages.lib.models.hardware import cpu_has_native_bf16
from stages.lib.models.precision_probe import LayerShape, choose, measure_rates, probe

CPUINFO = "processor\t: 0\nmodel name\t: Some CPU 9000\nflags\t\t: fpu avx2 avx512f avx512_bf16\n\n" \
          "processor\t: 1\nmodel name\t: Some CPU 9000\nflags\t\t: fpu avx2 avx512f avx512_bf16\n"


@pytest.mark.parametrize(("rates", "expected"), [
    ({"fp32": 87.0, "bf16": 83.0}, "fp32"),  # an Intel Xeon with avx512_bf16 and no AMX
    ({"fp32": 178.0, "bf16": 401.0}, "bf16"),  # an AMD EPYC with avx512_bf16
    ({"fp32": 100.0, "bf16": 104.0}, "fp32"),  # within the margin: not worth the rounding
    ({"fp32": 100.0, "bf16": 106.0}, "bf16"),
    ({"fp32": 20_000.0, "bf16": 180_000.0, "fp16": 190_000.0}, "fp16"),  # a GPU: the fastest low precision
    ({"fp32": 50.0}, "fp32"),
])
def test_the_choice_follows_the_rates(rates, expected):
    assert choose(rates) == expected


def test_the_layer_shape_is_read_from_the_model_folder(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 768, "num_attention_heads": 12,
                                                     "intermediate_size": 3072}))
    assert LayerShape.of_model(tmp_path, "cpu") == LayerShape(width=768, heads=12, ffn=3072, batch=4)
    assert LayerShape.of_model(tmp_path, "cuda").batch == 32
    for broken in ("{", json.dumps({"hidden_size": 768}), json.dumps({"hidden_size": 100, "num_attention_heads": 12,
                                                                     "intermediate_size": 400})):
        (tmp_path / "config.json").write_text(broken)
        assert LayerShape.of_model(tmp_path, "cpu") == LayerShape()  # the bundled base's
    assert LayerShape.of_model(tmp_path / "absent", "cpu") == LayerShape() == LayerShape.of_model(None, "cpu")


def test_the_flop_count_agrees_with_torch_s_counter():
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    shape = LayerShape(width=64, heads=4, ffn=256, length=32, batch=2)
    layer = torch.nn.TransformerEncoderLayer(shape.width, shape.heads, shape.ffn, dropout=0.0, batch_first=True)
    inputs = torch.randn(shape.batch, shape.length, shape.width, requires_grad=True)
    # The round the probe times; attention on its plain matrix-product path, which the counter sees into.
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        with torch.no_grad():
            layer(inputs)
        layer(inputs).sum().backward()
    assert counter.get_total_flops() == shape.round_flops()  # matrix products (all there is to count) exactly


class Measurer:
    """Stands in for the timing: returns fixed rates and counts the measurements."""

    def __init__(self, rates: dict[str, float]) -> None:
        self.rates, self.calls = rates, 0

    def __call__(self, device, candidates, shape):
        self.calls += 1
        return {precision: self.rates[precision] for precision in candidates}


@pytest.fixture
def machine(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(CPUINFO)
    return tmp_path / "cache" / "precision.json", cpuinfo


def test_a_decision_is_measured_once_then_read_from_the_cache(machine):
    cache, cpuinfo = machine
    measurer = Measurer({"fp32": 87.0, "bf16": 83.0})
    first = probe("cpu", ["fp32", "bf16"], LayerShape(), cache=cache, measure=measurer, cpuinfo=cpuinfo)
    assert (first.choice, first.cached, first.rates, measurer.calls) == ("fp32", False, {"fp32": 87.0, "bf16": 83.0}, 1)
    stored = json.loads(cache.read_text())
    (entry,) = stored["entries"].values()
    assert entry["machine"]["cpu_model"] == "Some CPU 9000" and entry["choice"] == "fp32"
    again = probe("cpu", ["fp32", "bf16"], LayerShape(), cache=cache, measure=measurer, cpuinfo=cpuinfo)
    assert (again.choice, again.cached, again.rates, measurer.calls) == ("fp32", True, first.rates, 1)
    assert first.metrics() == {"precision_probe_fp32_gflops": 87.0, "precision_probe_bf16_gflops": 83.0}
    assert "fp32 87, bf16 83 GFLOP/s" in again.describe() and "cached" in again.describe()


def test_another_cpu_core_count_torch_or_shape_measures_again(machine, monkeypatch):
    import torch

    cache, cpuinfo = machine
    measurer = Measurer({"fp32": 87.0, "bf16": 83.0})

    def decide(shape: LayerShape | None = None):
        return probe("cpu", ["fp32", "bf16"], shape or LayerShape(), cache=cache, measure=measurer, cpuinfo=cpuinfo)

    decide()
    cpuinfo.write_text(CPUINFO.replace("Some CPU 9000", "Other CPU 1"))
    decide()
    cpuinfo.write_text(CPUINFO.replace("avx512_bf16", "avx512_bf16 amx_tile amx_bf16"))
    decide()
    monkeypatch.setattr(precision_probe, "usable_cores", lambda: 64)
    decide()
    monkeypatch.setattr(torch, "__version__", "9.9.9")
    decide()
    decide(LayerShape(width=768, ffn=3072))
    assert measurer.calls == 6
    assert len(json.loads(cache.read_text())["entries"]) == 6  # each kept beside the others
    decide()
    assert measurer.calls == 6  # the last machine again: cached


@pytest.mark.parametrize("damage", ["not json", "list", "old version", "foreign machine", "contradicting choice",
                                    "negative rate", "text rate", "nan rate", "other candidates"])
def test_a_corrupt_or_foreign_cache_is_ignored_and_rewritten(machine, damage):
    cache, cpuinfo = machine
    measurer = Measurer({"fp32": 87.0, "bf16": 83.0})
    probe("cpu", ["fp32", "bf16"], LayerShape(), cache=cache, measure=measurer, cpuinfo=cpuinfo)
    stored = json.loads(cache.read_text())
    (entry,) = stored["entries"].values()
    if damage == "not json":
        cache.write_bytes(b"\x00\xffgarbage")
    elif damage == "list":
        cache.write_text("[]")
    else:
        if damage == "old version":
            stored["version"] = 0
        elif damage == "foreign machine":
            entry["machine"]["cpu_model"] = "Other CPU 1"  # copied from another machine under this one's key
        elif damage == "contradicting choice":
            entry["choice"] = "bf16"
        elif damage == "negative rate":
            entry["rates"]["fp32"] = -87.0
        elif damage == "text rate":
            entry["rates"]["bf16"] = "fast"
        elif damage == "nan rate":
            entry["rates"]["bf16"] = math.nan
        elif damage == "other candidates":
            entry["rates"]["fp16"] = 500.0
        cache.write_text(json.dumps(stored))
    result = probe("cpu", ["fp32", "bf16"], LayerShape(), cache=cache, measure=measurer, cpuinfo=cpuinfo)
    assert (result.choice, result.cached, measurer.calls) == ("fp32", False, 2)  # measured again, not trusted
    (rewritten,) = json.loads(cache.read_text())["entries"].values()
    assert rewritten["rates"] == {"fp32": 87.0, "bf16": 83.0} and rewritten["machine"]["cpu_model"] == "Some CPU 9000"


def test_an_unwritable_cache_still_decides(machine):
    cache, cpuinfo = machine
    cache.parent.mkdir(parents=True)
    cache.mkdir()  # a folder where the file should be: writing fails
    measurer = Measurer({"fp32": 100.0, "bf16": 250.0})
    result = probe("cpu", ["fp32", "bf16"], LayerShape(), cache=cache, measure=measurer, cpuinfo=cpuinfo)
    assert (result.choice, result.cached) == ("bf16", False)


def test_the_cache_folder_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("EMBEDDING_FT_CACHE_DIR", str(tmp_path / "ours"))
    assert precision_probe.cache_file() == tmp_path / "ours" / "precision.json"
    monkeypatch.delenv("EMBEDDING_FT_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert precision_probe.cache_file() == tmp_path / "xdg" / "embedding-ft" / "precision.json"


def test_the_real_measurement_times_each_candidate():
    candidates = ["fp32", "bf16"] if cpu_has_native_bf16() else ["fp32"]  # emulated bf16 would take minutes
    rates = measure_rates("cpu", candidates, LayerShape(width=64, heads=4, ffn=256, length=32, batch=2))
    assert sorted(rates) == sorted(candidates)
    assert all(math.isfinite(rate) and rate > 0 for rate in rates.values())
