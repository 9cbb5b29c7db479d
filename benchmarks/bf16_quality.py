"""Benchmark: does encoding in bf16 cost retrieval quality? bf16 against fp32 vectors of the same models.

Run in a reproduced project (after ``dvc repro``): it encodes the corpus and the golden
val and test questions with the base and the fine-tuned model (``models/base``,
``models/trained``) in fp32 and in bf16, and reports per model and question set hit@5
and MRR@10 in both precisions, the paired-bootstrap 95% interval of bf16 - fp32 (it
should include 0), and the cosine of each bf16 vector to its fp32 one.

bf16 is computed the way the pipeline computes it: ``torch.autocast`` on a GPU or on a
CPU with native bf16 (``--mode native``). On a CPU without it, autocast would be
emulated and far too slow, so ``--mode simulated`` (the default there) rounds the
inputs and the output of every matrix product autocast would run in bf16 (linear
layers, matmul/bmm, attention) to bf16 and computes it in fp32 with fp32
accumulation, as native bf16 kernels do; elementwise operations stay fp32, so this
simulates the dominant rounding, not every one. The result file says which was used.

    python -m benchmarks.bf16_quality --project PATH --json benchmarks/results/bf16_quality.json

Training in bf16 is not covered here: it needs a CPU or GPU that computes bf16.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from pathlib import Path

import numpy as np

from benchmarks.project import write_result
from benchmarks.train_throughput import cpu_name

MODELS = {"base": Path("models/base"), "finetuned": Path("models/trained")}


def bf16_round(tensor):
    import torch

    return tensor.to(torch.bfloat16).to(tensor.dtype) if tensor.is_floating_point() else tensor


@contextlib.contextmanager
def simulated_bf16():
    """Matrix products with bf16-rounded inputs and output, computed in fp32 (see the module docstring)."""
    import torch
    from torch.overrides import TorchFunctionMode

    rounded = {torch.nn.functional.linear, torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.bmm,
               torch.baddbmm, torch.mm, torch.addmm, torch.nn.functional.scaled_dot_product_attention}

    class Mode(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func in rounded:
                args = tuple(bf16_round(a) if isinstance(a, torch.Tensor) else a for a in args)
                kwargs = {k: bf16_round(v) if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
                return bf16_round(func(*args, **kwargs))
            return func(*args, **kwargs)

    with Mode():
        yield


def encode(model, texts: list[str], prompt: str, precision: str, mode: str, device: str) -> np.ndarray:
    from stages.lib.models.encoding import encode_in_precision

    if precision == "bf16" and mode == "simulated":
        with simulated_bf16():
            return encode_in_precision(model, texts, 8, device, "fp32", prompt=prompt)
    return encode_in_precision(model, texts, 8, device, precision, prompt=prompt)


def measure(mode: str) -> dict:

    from stages.lib.common.params import load_params
    from stages.lib.documents.chunk_file import load_chunks
    from stages.lib.models.hardware import resolve_device
    from stages.lib.models.loading import load_sentence_transformer
    from stages.lib.models.prompts import resolve_prompts
    from stages.lib.retrieval.intervals import intervals, per_query
    from stages.lib.retrieval.question_sets import golden_parts, merge
    from stages.lib.retrieval.rankers import dense_rank

    params = load_params()
    device = resolve_device(params.compute.device)
    chunks = load_chunks()
    parts = golden_parts(chunks, params.evaluate.golden_sets)
    sets = {"golden_val": merge(parts.val), **{name: merge(d) for name, d in parts.test.items() if "incl_trained" in name}}
    corpus_ids = [c.id for c in chunks]
    prompts = resolve_prompts(params.model.query_prompt, params.model.document_prompt, MODELS["base"])
    result: dict = {"cpu": cpu_name(), "device": device, "mode": mode, "models": {}}
    for name, path in MODELS.items():
        model = load_sentence_transformer(path, device, params.model.max_seq_length)
        vectors = {}
        for precision in ("fp32", "bf16"):
            docs = encode(model, [c.text for c in chunks], prompts.document, precision, mode, device)
            queries = {s: encode(model, list(d.queries.values()), prompts.query, precision, mode, device) for s, d in sets.items()}
            vectors[precision] = (docs, queries)
        cosine = np.sum(vectors["fp32"][0] * vectors["bf16"][0], axis=1)
        row: dict = {"corpus_cosine_min": round(float(cosine.min()), 5), "corpus_cosine_mean": round(float(cosine.mean()), 6)}
        for set_name, dataset in sets.items():
            ids = list(dataset.queries)
            scores = {}
            for precision, (docs, queries) in vectors.items():
                ranking = dense_rank(ids, queries[set_name], corpus_ids, docs, 10)
                scores[precision] = per_query(ranking, dataset.relevant_docs, ids)
            bounds = intervals(scores, baseline="fp32")["bf16"]
            row[set_name] = {
                "queries": len(ids),
                **{f"{m}_{p}": round(float(scores[p][m].mean()), 4) for p in scores for m in ("hit@5", "mrr@10")},
                **{k.replace("_vs_fp32", ""): v for k, v in bounds.items() if "diff" in k},
                "hit@5_queries_changed": int(np.sum(scores["fp32"]["hit@5"] != scores["bf16"]["hit@5"])),
            }
        result["models"][name] = row
        print(f"[bf16] {name}: corpus cosine min {row['corpus_cosine_min']}, "
              + ", ".join(f"{s} hit@5 {row[s]['hit@5_fp32']} -> {row[s]['hit@5_bf16']}" for s in sets), flush=True)
    return result


def main() -> None:
    from stages.lib.models.hardware import cpu_has_native_bf16, resolve_device

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("auto", "native", "simulated"), default="auto")
    parser.add_argument("--project", type=Path, default=Path("."), help="a reproduced project (default: here)")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    os.chdir(args.project)
    native = resolve_device("auto") == "cuda" or cpu_has_native_bf16()
    mode = ("native" if native else "simulated") if args.mode == "auto" else args.mode
    result = measure(mode)
    print(json.dumps(result, indent=1))
    write_result(args.json, result)


if __name__ == "__main__":
    main()
