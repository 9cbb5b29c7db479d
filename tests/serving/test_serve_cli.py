"""``python -m stages.serve`` without a model to serve: exit 2 with one paragraph naming the stage that makes it."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT, command_env

pytestmark = pytest.mark.slow  # runs the pipeline, a stage, a browser or a server: not in `make test-quick`


def _serve(cwd: Path, *flags: str) -> subprocess.CompletedProcess:
    # From an empty project folder: the default model paths are relative to it, as to the repository root.
    env = {**command_env(), "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run([sys.executable, "-m", "stages.serve", "--port", "1", *flags], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("flags", "words"), [
    ((), ["models/finetuned is missing", "`dvc repro`", "--model-dir"]),
    (("--backend", "onnx"), ["models/finetuned-onnx is missing", "export.enabled: true", "`dvc repro export`"]),
    (("--backend", "onnx-int8"), ["models/finetuned-onnx is missing", "`dvc repro export`"]),
    (("--model-dir", "no/such/folder"), ["--model-dir no/such/folder is not a folder", "models/finetuned"]),
])
def test_a_missing_model_folder_exits_2_naming_the_stage(tmp_path, flags, words):
    result = _serve(tmp_path, *flags)
    assert result.returncode == 2, result.stderr
    message = " ".join(result.stderr.split())
    for word in words:
        assert word in message, (word, result.stderr)
    assert "Traceback" not in result.stderr


def test_a_folder_that_is_not_a_sentence_transformers_model_exits_2(tmp_path):
    (tmp_path / "models/finetuned").mkdir(parents=True)
    result = _serve(tmp_path)
    assert result.returncode == 2
    assert "not a sentence-transformers folder" in " ".join(result.stderr.split())


def test_a_port_in_use_exits_2_before_loading_the_model(tmp_path):
    (tmp_path / "models/finetuned").mkdir(parents=True)
    (tmp_path / "models/finetuned/modules.json").write_text("[]", encoding="utf-8")  # never loaded: the port fails first
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _serve(tmp_path, "--port", str(port))
    assert result.returncode == 2, result.stderr
    message = " ".join(result.stderr.split())
    assert f"Cannot listen on 127.0.0.1:{port}" in message and "--port" in message


@pytest.mark.parametrize(("backend", "flags", "words"), [
    ("torch", ("--device", "cpu", "--precision", "fp16"), ["--precision fp16", "this CPU cannot encode in it", "--precision auto"]),
    ("onnx", ("--precision", "fp32"), ["--device and --precision are for the torch backend", "int8"]),
])
def test_a_precision_the_backend_or_hardware_cannot_use_exits_2_before_loading_the_model(tmp_path, backend, flags, words):
    folder = tmp_path / "models/finetuned"
    folder.mkdir(parents=True)
    (folder / "modules.json").write_text("[]", encoding="utf-8")  # never loaded: the precision fails first
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = _serve(tmp_path, "--port", str(port), "--backend", backend, "--model-dir", str(folder), *flags)
    assert result.returncode == 2, result.stderr
    message = " ".join(result.stderr.split())
    for word in words:
        assert word in message, (word, result.stderr)
    assert "Traceback" not in result.stderr
