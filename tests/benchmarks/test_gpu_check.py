"""The GPU check runs as it would on a GPU machine, on the CPU at tiny sizes: the bundle it travels in, the model it
rebuilds from two parts, training steps and the vectors it compares with this machine's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import command_env

pytestmark = pytest.mark.slow  # runs the pipeline, a stage, a browser or a server: not in `make test-quick`

REPO = Path(__file__).resolve().parents[2]
MIB = 2**20


def gpu_check(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**command_env(), "PYTHONPATH": str(REPO)}  # benchmarks/ from the repository, stages/ from the project
    return subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", *args], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=600)


@pytest.fixture(scope="module")
def bundle(tiny_pipeline, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("gpu") / ".gpu-bundle"
    result = gpu_check(["--prepare", str(folder), "--max-corpus", "12"], tiny_pipeline.path)
    assert result.returncode == 0, result.stderr
    return folder


def test_the_bundle_fits_the_gpu_machine_s_limit_per_call(bundle):
    sizes = {p.name: p.stat().st_size for p in bundle.iterdir()}
    assert set(sizes) == {"e5-small-q4.bin.part1", "e5-small-q4.bin.part2", "inputs.json", "cpu_fp32_corpus_vectors.npy"}
    # Call 1 carries part 1; call 2 the rest. Each stays under the 64 MiB a call may carry.
    assert sizes["e5-small-q4.bin.part1"] < 40 * MIB
    assert sum(size for name, size in sizes.items() if name != "e5-small-q4.bin.part1") < 60 * MIB
    inputs = json.loads((bundle / "inputs.json").read_text(encoding="utf-8"))
    assert len(inputs["corpus"]) == 12 and len(inputs["anchors"]) == len(inputs["positives"]) == 120  # train.max_pairs
    assert inputs["recipe"]["batch_size"] == 8 and inputs["recipe"]["max_seq_length"] == 96


def test_on_the_cpu_it_trains_encodes_and_matches_this_machine_s_vectors(bundle, tmp_path):
    out = tmp_path / "gpu_check.json"
    result = gpu_check(["--bundle", str(bundle), "--device", "cpu", "--precision", "fp32", "--max-steps", "2",
                        "--encode-repeats", "1", "--encode-batch", "8", "--json", str(out)], tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["device"] == "cpu" and report["precision"] == "fp32" and report["matmul_peak_tflops"] > 0
    training, encoding = report["training"], report["encoding"]
    assert training["steps"] == 2 and training["pairs_per_second"] > 0 and training["useful_tflops"] > 0
    assert encoding["texts"] == 12 and encoding["texts_per_second"] > 0
    # The same model rebuilt from the same parts, in the same precision: the vectors of the CPU that made the bundle.
    assert encoding["cosine_to_cpu_fp32_min"] > 0.9999 and encoding["cosine_device_fp32_to_cpu_fp32_min"] > 0.9999


def test_a_part_from_another_file_is_refused_with_the_fix(bundle, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for path in bundle.iterdir():
        (broken / path.name).write_bytes(path.read_bytes())
    part = broken / "e5-small-q4.bin.part2"
    part.write_bytes(part.read_bytes()[:-1] + b"\0")
    result = gpu_check(["--bundle", str(broken), "--device", "cpu"], tmp_path)
    assert result.returncode != 0 and "does not match its SHA-256" in result.stderr and "Traceback" not in result.stderr
