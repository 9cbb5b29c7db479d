"""Benchmark: encoding speed of the default model, as a share of this machine's matrix-product peak, and padding.

Encodes a seeded sample of real chunks (the bundled Securities Law) the way ``evaluate`` does (document prompt,
``model.max_seq_length``, ``compute.precision`` resolved for this machine), at
several batch sizes, in the length-sorted order sentence-transformers uses and
in the given order. For each it reports texts/s, the useful GFLOP/s (weights and
attention over the texts' real tokens, from ``benchmarks.train_throughput``'s
count) against the best matrix product the same threads reach in the same
precision, and the padding overhead: padded tokens computed over real tokens.
Each setting is timed ``--repeats`` times; the median is reported.

    python -m benchmarks.encode_throughput                       # about 3 minutes on 2 cores
    python -m benchmarks.encode_throughput --json benchmarks/results/encode_throughput.json

Names the CPU and whether it computes bf16 natively; on a GPU it reports the GPU's numbers. On a CPU it also
encodes the same texts at 8 per pass with PyTorch fp32, PyTorch bf16 (with native bf16) and ONNX Runtime fp32
(``backends_at_8_per_pass``): whether another backend would encode faster on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.project import write_result
from benchmarks.train_throughput import cpu_name, flops_per_token, matmul_peak, prepare_project


def padded_tokens(lengths: list[int], batch_size: int) -> int:
    """Tokens computed when ``lengths`` are cut into batches in this order, each padded to its longest."""
    return sum(max(lengths[i:i + batch_size]) * len(lengths[i:i + batch_size]) for i in range(0, len(lengths), batch_size))


def measure(texts: list[str], batch_sizes: list[int], repeats: int) -> dict:
    import torch

    from stages.lib.common.params import load_params
    from stages.lib.models.encoding import encode_in_precision
    from stages.lib.models.hardware import cpu_bf16_flags, resolve_hardware
    from stages.lib.models.loading import load_sentence_transformer
    from stages.lib.models.prompts import resolve_prompts

    params = load_params()
    hardware = resolve_hardware(params.compute.device, params.compute.precision)
    model = load_sentence_transformer("models/base", hardware.device, params.model.max_seq_length)
    prompt = resolve_prompts(params.model.query_prompt, params.model.document_prompt, Path("models/base")).document
    lengths = [len(ids) for ids in model.tokenizer([prompt + t for t in texts], truncation=True,
                                                   max_length=params.model.max_seq_length)["input_ids"]]
    useful_flops = sum(n * flops_per_token(model, n) for n in lengths)
    by_length = sorted(lengths, reverse=True)  # what sentence-transformers' encode does inside one call
    encode_in_precision(model, texts[:8], 8, hardware.device, hardware.precision, prompt=prompt)  # warm-up
    peak = matmul_peak(hardware.device, hardware.precision)
    rows = []
    for batch_size in batch_sizes:
        seconds = []
        for _ in range(repeats):
            started = time.perf_counter()
            encode_in_precision(model, texts, batch_size, hardware.device, hardware.precision, prompt=prompt)
            if hardware.device == "cuda":
                torch.cuda.synchronize()
            seconds.append(time.perf_counter() - started)
        median = statistics.median(seconds)
        rows.append({
            "batch_size": batch_size,
            "seconds_median": round(median, 2), "seconds_min": round(min(seconds), 2), "seconds_max": round(max(seconds), 2),
            "texts_per_second": round(len(texts) / median, 1),
            "achieved_gflops": round(useful_flops / median / 1e9, 1),
            "utilisation": round(useful_flops / median / peak, 3),
            "padding_overhead_sorted": round(padded_tokens(by_length, batch_size) / sum(lengths) - 1, 4),
            "padding_overhead_unsorted": round(padded_tokens(lengths, batch_size) / sum(lengths) - 1, 4),
        })
        print(f"batch {batch_size:>3}: {rows[-1]['texts_per_second']} texts/s, {rows[-1]['achieved_gflops']} GFLOP/s "
              f"({rows[-1]['utilisation']:.0%} of the {peak / 1e9:.0f} GFLOP/s peak)", flush=True)
    best = max(rows, key=lambda r: r["texts_per_second"])
    backends = compare_backends(model, texts, prompt, useful_flops, params.model.max_seq_length, repeats) \
        if hardware.device == "cpu" else None
    return {
        "cpu": cpu_name(),
        "cpu_native_bf16_flags": cpu_bf16_flags(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "device": hardware.device,
        "gpu": torch.cuda.get_device_name() if hardware.device == "cuda" else None,
        "precision": hardware.precision,
        "threads": torch.get_num_threads() if hardware.device == "cpu" else None,
        "texts": len(texts),
        "mean_tokens": round(sum(lengths) / len(lengths), 1),
        "max_tokens": max(lengths),
        "gflop_per_text": round(useful_flops / len(texts) / 1e9, 2),
        "matmul_peak_gflops": round(peak / 1e9, 1),
        "repeats": repeats,
        "best_batch_size": best["batch_size"],
        "by_batch_size": rows,
        "backends_at_8_per_pass": backends,
    }


def compare_backends(model, texts: list[str], prompt: str, useful_flops: float, max_seq_length: int,
                     repeats: int) -> dict:
    """The same texts at 8 per pass through PyTorch fp32, PyTorch bf16 autocast (where the CPU has native bf16) and
    ONNX Runtime fp32 (the export stage's graph of this model, in a temporary folder): texts/s, the share of the
    fp32 or bf16 matrix-product peak, and ONNX Runtime's largest cosine gap to PyTorch fp32 (the same graph in
    another runtime should agree to float rounding)."""
    from stages.lib.common.timers import PhaseTimer
    from stages.lib.models.encoding import encode_in_precision
    from stages.lib.models.hardware import cpu_has_native_bf16
    from stages.lib.models.onnx_encoder import OnnxEncoder
    from stages.lib.models.onnx_export import write_onnx_folder
    from stages.lib.models.prompts import Prompts

    def timed(encode) -> tuple[float, np.ndarray]:
        encode(texts[:8])  # warm-up
        seconds, vectors = [], None
        for _ in range(repeats):
            started = time.perf_counter()
            vectors = encode(texts)
            seconds.append(time.perf_counter() - started)
        return statistics.median(seconds), np.asarray(vectors, dtype=np.float32)

    out: dict = {}
    reference = None
    for precision in ("fp32", "bf16") if cpu_has_native_bf16() else ("fp32",):
        median, vectors = timed(lambda batch, p=precision: encode_in_precision(model, batch, 8, "cpu", p, prompt=prompt))
        reference = vectors if precision == "fp32" else reference
        out[f"pytorch_{precision}"] = {"texts_per_second": round(len(texts) / median, 1),
                                       "utilisation": round(useful_flops / median / matmul_peak("cpu", precision), 3)}
    with tempfile.TemporaryDirectory() as folder:
        write_onnx_folder(model, Prompts(query="", document=prompt), max_seq_length, Path(folder), PhaseTimer("bench"))
        onnx = OnnxEncoder(Path(folder), "fp32", batch_size=8)
        median, vectors = timed(lambda batch: onnx.encode(batch, prompt))
    cosine = np.sum(vectors * reference, axis=1) / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(reference, axis=1))
    out["onnxruntime_fp32"] = {"texts_per_second": round(len(texts) / median, 1),
                               "utilisation": round(useful_flops / median / matmul_peak("cpu", "fp32"), 3),
                               "min_cosine_to_pytorch_fp32": round(float(cosine.min()), 6)}
    for name, row in out.items():
        print(f"{name}: {row}", flush=True)
    return out


def sample_texts(n: int, seed: int) -> list[str]:
    """``n`` chunk texts of the default pipeline's corpus, a seeded sample."""
    texts = [json.loads(line)["text"] for line in Path("data/corpus/chunks.jsonl").read_text(encoding="utf-8").splitlines()]
    return random.Random(seed).sample(texts, min(n, len(texts)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=200, help="chunks to encode per timing (default 200)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--precision", choices=("auto", "bf16", "fp32"), help="compute.precision (default: params.yaml's)")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as folder:
        project = Path(folder)
        prepare_project(project, args.precision)
        os.chdir(project)
        result = measure(sample_texts(args.texts, seed=42), args.batch_sizes, args.repeats)
    print(json.dumps({k: v for k, v in result.items() if k != "by_batch_size"}, indent=1))
    write_result(args.json, result)


if __name__ == "__main__":
    main()
