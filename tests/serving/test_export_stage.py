"""The export stage through real ``dvc repro``: off by default (a note, metrics that say so); switched on, it runs
alone, writes the ONNX folder the encoder reads and the metrics keys, and a second ``dvc repro`` runs nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ruamel.yaml import YAML

from stages.lib.models.onnx_encoder import OnnxEncoder
from stages.lib.models.onnx_folder import DISABLED_FILE
from stages.lib.serving.export_check import BACKENDS
from tests.helpers import TINY_ZH_PARAMS, copy_project, make_project, repository_params, run, stage_run, stages_run, update_params

pytestmark = pytest.mark.slow  # runs the pipeline, a stage, a browser or a server: not in `make test-quick`

MAX_SEQ = TINY_ZH_PARAMS["model"]["max_seq_length"]
EXPORT_OUTPUTS = ("models/finetuned-onnx", "metrics/export.json")
SECTION_KEYS = {"hit@5", "mrr@10", "cpu_texts_per_s"}
EXPORT_KEYS = {"hit@5_diff_vs_pytorch", "mrr@10_diff_vs_pytorch", "hit@5_queries_changed_vs_pytorch", "cosine_gap_max",
               "cosine_gap_mean", "cpu_speedup_vs_pytorch_cpu"}


def test_off_by_default_it_writes_a_note_and_says_so(tiny_pipeline):
    assert repository_params().export.enabled is False  # the default run stays within its time budget
    folder = tiny_pipeline.path / "models/finetuned-onnx"
    assert [p.name for p in folder.iterdir()] == [DISABLED_FILE]
    assert json.loads((tiny_pipeline.path / "metrics/export.json").read_text(encoding="utf-8")) == {"enabled": 0}


def _dependents_of_export(project) -> list[str]:
    stages = YAML(typ="safe").load((project / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    return [name for name, stage in stages.items()
            if any((dep if isinstance(dep, str) else next(iter(dep))) in EXPORT_OUTPUTS for dep in stage.get("deps", []))]


def test_switched_on_it_runs_alone_and_measures_the_export(tiny_pipeline, tmp_path):
    project = copy_project(tiny_pipeline.path, tmp_path / "project")
    update_params(project, {"export": {"enabled": True, "throughput_texts": 24}})
    first = run(["dvc", "repro"], project)
    # check_params rereads the changed params.yaml; its output does not change, so only export (and what reads it) runs.
    assert stages_run(first.stdout) == ["check_params", "export", *_dependents_of_export(project)], first.stdout
    assert "hit@5" in first.stdout and "CPU speed-up" in first.stdout

    metrics = json.loads((project / "metrics/export.json").read_text(encoding="utf-8"))
    # The tiny laws have no golden set: measured on the synthetic test split, and the metrics say so.
    assert (metrics["enabled"], metrics["golden"], metrics["pytorch_quality_on_gpu"]) == (1, 0, 0)
    assert metrics["queries"] > 0 and metrics["corpus_chunks"] > 0 and metrics["cpu_throughput_texts"] == 24
    assert set(metrics["pytorch"]) == SECTION_KEYS
    assert set(metrics["onnx"]) == set(metrics["onnx_int8"]) == SECTION_KEYS | EXPORT_KEYS
    if metrics["pytorch_bf16"]:  # a CPU with native bf16: the PyTorch reference encodes in bf16, ONNX in fp32
        assert metrics["onnx"]["hit@5_queries_changed_vs_pytorch"] <= 1 and metrics["onnx"]["cosine_gap_max"] < 1e-3
    else:
        assert metrics["onnx"]["hit@5_diff_vs_pytorch"] == 0 and metrics["onnx"]["cosine_gap_max"] < 1e-4
    assert all(metrics[name]["cpu_texts_per_s"] > 0 for name in BACKENDS)
    assert {p.name for p in (project / "models/finetuned-onnx").iterdir()} >= {"model.onnx", "model_int8.onnx",
                                                                                "onnx_config.json", "tokenizer.json"}

    # The folder serves the trained model (here with its vocabulary extended for Chinese) as sentence-transformers does.
    from sentence_transformers import SentenceTransformer

    texts = ["契税的纳税人是谁？", "国歌的标准演奏曲谱由谁审定？" * 20]
    model = SentenceTransformer(str(project / "models/trained"), device="cpu")
    model.max_seq_length = MAX_SEQ
    onnx = OnnxEncoder(project / "models/finetuned-onnx", "fp32").encode_query(texts)
    assert np.min(np.sum(onnx * model.encode_query(texts), axis=1)) >= 0.9999

    second = run(["dvc", "repro"], project)
    assert stages_run(second.stdout) == [], second.stdout


def test_without_a_trained_model_it_says_which_stage_to_run(tmp_path):
    project = make_project(tmp_path / "p", {"export": {"enabled": True}}, git=False)
    result = stage_run("export", project)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "models/trained is missing" in result.stderr and "dvc repro train" in result.stderr
    assert not (project / "models/finetuned-onnx").exists()
