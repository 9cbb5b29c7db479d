"""The ONNX export's folder, ``models/finetuned-onnx/``: which file is which, and its ``onnx_config.json``.

The one place both sides agree on: the ``export`` stage writes the folder (``onnx_export.py``), the
``OnnxEncoder`` reads it (``onnx_encoder.py``). The config holds everything a reader needs besides the
graph and the tokenizer: the prompts put before queries and documents, ``max_seq_length`` (the
tokens the model reads per text, prompt and special tokens included; the rest is cut, as
sentence-transformers cuts it), the pooling and normalisation baked into the graph, the vector size,
and the graph's input names.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from stages.lib.common.errors import UserError

CONFIG_FILE = "onnx_config.json"
README_FILE = "README.md"
# Written instead of a model when the stage is off (export.enabled: false).
DISABLED_FILE = "DISABLED.txt"
# variant -> graph file
VARIANT_FILES = {"fp32": "model.onnx", "int8": "model_int8.onnx"}
OUTPUT_NAME = "sentence_embedding"
POOLING_MODES = ("mean", "cls", "lasttoken")
FORMAT = "embedding-ft sentence-embedding ONNX export"
FORMAT_VERSION = 1
HOW_TO_MAKE = "set `export.enabled: true` in params.yaml and run `dvc repro export`"


@dataclass(frozen=True)
class OnnxConfig:
    dimension: int
    max_seq_length: int
    pooling: str  # one of POOLING_MODES, inside the graph
    normalize: bool  # L2 normalisation inside the graph
    query_prompt: str
    document_prompt: str
    inputs: tuple[str, ...]  # the graph's inputs, as the tokenizer names them
    files: dict[str, str]  # variant -> file
    quantization: dict[str, str | bool]  # how the int8 variant was made

    def to_json(self) -> dict:
        data = asdict(self)
        data["inputs"] = list(self.inputs)
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "output": OUTPUT_NAME, **data}


def write_config(folder: Path, config: OnnxConfig) -> None:
    text = json.dumps(config.to_json(), ensure_ascii=False, indent=2, sort_keys=True) + "\n"
    (folder / CONFIG_FILE).write_text(text, encoding="utf-8")


def _unusable(folder: Path, why: str) -> UserError:
    return UserError(f"{folder} is not a usable ONNX export: {why}. To make one, {HOW_TO_MAKE} "
                     "(it reads models/trained).")


def read_config(folder: Path, variant: str) -> OnnxConfig:
    """The folder's config, checked: every key there and the variant's graph and the tokenizer present."""
    if variant not in VARIANT_FILES:
        raise UserError(f"ONNX variant {variant!r} does not exist: use one of {', '.join(VARIANT_FILES)}.")
    if not folder.is_dir():
        raise UserError(f"{folder} is missing: the ONNX export has not been made. To make it, {HOW_TO_MAKE}.")
    if (folder / DISABLED_FILE).is_file():
        raise UserError(f"{folder} holds no model: the export stage is off (params.yaml: export.enabled: false). "
                        f"To make it, {HOW_TO_MAKE}.")
    path = folder / CONFIG_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _unusable(folder, f"it has no {CONFIG_FILE}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise _unusable(folder, f"{CONFIG_FILE} is not valid JSON ({error})") from None
    if not isinstance(raw, dict) or raw.get("format_version") != FORMAT_VERSION:
        raise _unusable(folder, f"{CONFIG_FILE} is not format version {FORMAT_VERSION} of this project's export")
    fields = OnnxConfig.__dataclass_fields__
    missing = [key for key in fields if key not in raw]
    if missing:
        raise _unusable(folder, f"{CONFIG_FILE} lacks {missing}")
    config = OnnxConfig(**{key: raw[key] for key in fields})
    config = OnnxConfig(**{**asdict(config), "inputs": tuple(config.inputs)})
    graph = folder / str(config.files.get(variant, ""))
    if not graph.is_file() or graph.stat().st_size == 0:
        raise _unusable(folder, f"the {variant} graph {graph.name} is missing or empty")
    if not (folder / "tokenizer.json").is_file() and not (folder / "tokenizer_config.json").is_file():
        raise _unusable(folder, "it has no tokenizer files")
    return config
