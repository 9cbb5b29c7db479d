"""Benchmark: does ``compute.precision: auto``'s probe pick the precision the model really runs faster in, and
how long does it take?

1. The probe, cold, in ``--probes`` fresh processes, each with an empty cache: its seconds (torch imported before
   the clock starts), its rates and its choice.
2. The bundled base model itself (``models/base``), fp32 and bf16 autocast taken in turn ``--rounds`` times:
   encoding 64 chunks of the corpus (batch 8, document prompt, as ``evaluate`` does) and a forward and backward
   pass over 8 questions and their 8 chunks (a training step without the optimizer).
3. A 2048x2048 matrix product per precision, best of 10 (the peak the other benchmarks quote).

It reports whether the probe's choice is the faster precision in both real workloads. Needs the default run's
``models/base``, ``data/corpus/chunks.jsonl`` and ``data/questions/train.json`` (``dvc repro questions base_model``).

    python -m benchmarks.precision_probe                       # about 2 minutes on 2 cores
    python -m benchmarks.precision_probe --json benchmarks/results/precision_probe_intel_amx.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.project import write_result
from benchmarks.train_throughput import cpu_name, matmul_peak

MODEL = Path("models/base")
CHUNKS = Path("data/corpus/chunks.jsonl")
QUESTIONS = Path("data/questions/train.json")

# Run in a fresh interpreter: the probe as a stage meets it, with nothing warmed up but torch's import.
PROBE_ONCE = """
import json, sys, time
import torch
from stages.lib.models.hardware import decide_precision
started = time.perf_counter()
chosen, measured = decide_precision("auto", "cpu", __import__("pathlib").Path(sys.argv[1]))
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "choice": chosen, "rates": measured.rates if measured else {}}))
"""


def probe_cold(model_dir: Path) -> dict:
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "EMBEDDING_FT_CACHE_DIR": cache, "PYTHONPATH": str(Path.cwd())}
        done = subprocess.run([sys.executable, "-c", PROBE_ONCE, str(model_dir)], env=env, check=True,
                              capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def real_workloads(rounds: int, precisions: list[str]) -> dict:
    """Texts/s encoding 64 chunks, and pairs/s of forward+backward on 8 pairs, per precision (medians)."""

    from stages.lib.common.params import load_params
    from stages.lib.models.hardware import autocast
    from stages.lib.models.loading import load_sentence_transformer

    chunks = [json.loads(line)["text"] for line in CHUNKS.read_text(encoding="utf-8").splitlines()[:64]]
    train = json.loads(QUESTIONS.read_text(encoding="utf-8"))
    query_ids = list(train["queries"])[:8]
    queries = [train["queries"][qid] for qid in query_ids]
    passages = [train["corpus"][train["relevant_docs"][qid][0]] for qid in query_ids]
    model = load_sentence_transformer(MODEL, "cpu", load_params().model.max_seq_length)
    prompts = model.prompts
    transformer, tokenizer = model[0].auto_model, model.tokenizer
    batch = tokenizer([prompts.get("query", "") + q for q in queries] + [prompts.get("document", "") + p for p in passages],
                      padding=True, truncation=True, max_length=model.max_seq_length, return_tensors="pt")

    def encode(precision: str) -> float:
        started = time.perf_counter()
        with autocast("cpu", precision):
            model.encode_document(chunks, batch_size=8)
        return len(chunks) / (time.perf_counter() - started)

    def train_step(precision: str) -> float:
        transformer.train()
        started = time.perf_counter()
        with autocast("cpu", precision):
            transformer(**batch).last_hidden_state.float().mean().backward()
        transformer.zero_grad(set_to_none=True)
        transformer.eval()
        return len(queries) / (time.perf_counter() - started)

    rates: dict[str, dict[str, list[float]]] = {p: {"encode_texts_per_second": [], "train_pairs_per_second": []}
                                                for p in precisions}
    for precision in precisions:  # warm-up: kernels chosen, caches filled
        encode(precision)
        train_step(precision)
    for _ in range(rounds):
        for precision in precisions:
            rates[precision]["encode_texts_per_second"].append(encode(precision))
            rates[precision]["train_pairs_per_second"].append(train_step(precision))
    return {precision: {name: round(statistics.median(values), 2) for name, values in measured.items()}
            for precision, measured in rates.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--probes", type=int, default=5, help="cold probes, each in a fresh process")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds of the real workloads per precision")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()

    import torch

    from stages.lib.models.hardware import cpu_bf16_flags, precision_candidates
    from stages.lib.models.precision_probe import LayerShape

    for path, stage in ((MODEL, "base_model"), (CHUNKS, "corpus"), (QUESTIONS, "questions")):
        if not path.exists():
            sys.exit(f"{path} is missing: run `dvc repro {stage}` first (this benchmark times the default run's model).")
    candidates = precision_candidates("cpu")
    # 1. The probe, cold.
    probes = [probe_cold(MODEL) for _ in range(args.probes)]
    # 2. The model itself.
    real = real_workloads(args.rounds, candidates)
    # 3. The matrix-product peak.
    peaks = {precision: round(matmul_peak("cpu", precision) / 1e9, 1) for precision in candidates}

    choices = [probe["choice"] for probe in probes]
    faster = {workload: max(candidates, key=lambda p: real[p][workload]) for workload in next(iter(real.values()))}
    result = {
        "cpu": cpu_name(),
        "cpu_native_bf16_flags": cpu_bf16_flags(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "candidates": candidates,
        "probe_shape": LayerShape.of_model(MODEL, "cpu").__dict__,
        "probe_seconds_median": round(statistics.median(p["seconds"] for p in probes), 3),
        "probe_seconds_max": round(max(p["seconds"] for p in probes), 3),
        "probe_choices": choices,
        "probe_gflops_median": {precision: round(statistics.median(p["rates"][precision] for p in probes), 1)
                                for precision in candidates if all(p["rates"] for p in probes)},
        "model": real,
        "model_faster": faster,
        "matmul_peak_gflops": peaks,
        "probe_agrees_with_the_model": all(choice == winner for choice in choices for winner in faster.values()),
    }
    print(json.dumps(result, indent=2))
    write_result(args.json, result)


if __name__ == "__main__":
    main()
