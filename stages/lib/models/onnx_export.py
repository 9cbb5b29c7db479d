"""A sentence-transformers model -> ONNX (fp32) and a dynamically quantised int8 copy, pooling inside the graph.

sentence-transformers' own ONNX backend needs optimum-onnx, which caps transformers below 4.58; this
project pins transformers 5. So the graph is traced with ``torch.onnx.export``'s TorchScript exporter
(``dynamo=False``: the dynamo exporter needs onnxscript, which is not installed) through a small module
that calls the transformer with keyword arguments, pools (mean, CLS or last token, as the model's
Pooling module says) and L2-normalises (when the model has a Normalize module). The graph maps the
tokenizer's ``input_ids``, ``attention_mask`` (and ``token_type_ids`` when the tokenizer makes them)
to ``sentence_embedding``, with dynamic batch and sequence axes. The int8 copy is onnxruntime's
``quantize_dynamic``: int8 weights per output channel (per-tensor scales lost up to 0.03 cosine on
multilingual-e5-small, per channel 0.007), activations quantised at run time.

The same model and settings give the same bytes: tracing, constant folding and quantisation are
deterministic, and the folder holds no timestamps.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

from stages.lib.common.errors import UserError
from stages.lib.models.onnx_folder import (
    CONFIG_FILE,
    OUTPUT_NAME,
    POOLING_MODES,
    README_FILE,
    VARIANT_FILES,
    OnnxConfig,
    write_config,
)
from stages.lib.models.prompts import Prompts

OPSET = 17  # LayerNormalization is one op from 17 on; onnxruntime 1.32 runs up to 23
# A single ONNX protobuf holds at most 2 GiB; larger models need external data files, not written here.
MAX_GRAPH_BYTES = 2_000_000_000
QUANTIZATION = {"method": "onnxruntime.quantization.quantize_dynamic", "weight_type": "QInt8", "per_channel": True,
                "activations": "uint8, quantised at run time"}
# Two texts of different lengths: the trace must see padding, or the attention mask could be traced away.
TRACE_TEXTS = ("A sample sentence to trace the graph with, longer than the other one.", "Short.")


@dataclass(frozen=True)
class Layout:
    """What the exported graph computes, read from the model's modules."""

    pooling: str
    normalize: bool
    dimension: int
    inputs: tuple[str, ...]


def model_layout(model) -> Layout:
    """The model's pooling and normalisation, or a clear error for a module stack the export cannot reproduce."""
    from sentence_transformers.models import Normalize, Pooling, Transformer

    modules = list(model)
    names = [type(module).__name__ for module in modules]
    shape_ok = (len(modules) in (2, 3) and isinstance(modules[0], Transformer) and isinstance(modules[1], Pooling)
                and (len(modules) == 2 or isinstance(modules[2], Normalize)))
    if not shape_ok:
        raise UserError(f"The ONNX export handles a Transformer, a Pooling and optionally a Normalize module; this model "
                        f"has {names}. Export it by other means, or set `export.enabled: false`.")
    transformer, pooling = modules[0], modules[1]
    if transformer.modality_config.get("text", {}).get("method_output_name") != "last_hidden_state":
        raise UserError(f"The ONNX export pools the transformer's last_hidden_state; this model's Transformer module reads "
                        f"{transformer.modality_config}. Set `export.enabled: false`.")
    if getattr(transformer, "do_lower_case", False):
        raise UserError("The model's Transformer module lower-cases its input (do_lower_case), which the exported tokenizer "
                        "would not do. Set `export.enabled: false`.")
    mode = pooling.pooling_mode
    if not isinstance(mode, str) or mode not in POOLING_MODES:
        raise UserError(f"The ONNX export puts {', '.join(POOLING_MODES)} pooling in the graph; this model pools with "
                        f"{mode!r}. Set `export.enabled: false`, or use a model with one of those.")
    if not pooling.include_prompt and any((model.prompts or {}).values()):
        raise UserError("The model's Pooling module leaves the prompt's tokens out (include_prompt: false), which the "
                        "exported graph does not do. Set `export.enabled: false`.")
    probe = model.tokenizer(["x"])
    inputs = ("input_ids", "attention_mask", *(("token_type_ids",) if "token_type_ids" in probe else ()))
    return Layout(mode, len(modules) == 3, int(model.get_embedding_dimension()), inputs)


def _graph_module(transformer, layout: Layout):
    import torch

    class SentenceEmbedding(torch.nn.Module):
        """Transformer, pooling, normalisation: sentence-transformers' forward for these modules, traceable."""

        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
            hidden = self.transformer(input_ids=input_ids, attention_mask=attention_mask, return_dict=True,
                                      **extra).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            if layout.pooling == "mean":
                pooled = (hidden * mask).sum(dim=1) / torch.clamp(mask.sum(dim=1), min=1e-9)
            else:
                # cls: the first position the mask keeps; lasttoken: the last one (position 0 for an empty mask,
                # as sentence-transformers gathers it); ties in argmax go to the first index in torch and ONNX.
                positions = torch.arange(hidden.shape[1], device=hidden.device, dtype=hidden.dtype).unsqueeze(0)
                kept = mask.squeeze(-1)
                index = kept.argmax(dim=1) if layout.pooling == "cls" else (positions * kept).amax(dim=1).to(torch.long)
                source = hidden if layout.pooling == "cls" else hidden * mask
                pooled = torch.gather(source, 1, index.view(-1, 1, 1).expand(-1, 1, hidden.shape[-1])).squeeze(1)
            if layout.normalize:
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
            return pooled

    return SentenceEmbedding().eval()


def export_fp32(model, layout: Layout, path: Path) -> None:
    """Trace the model (on the CPU, in fp32) into ``path``."""
    import torch

    transformer = model[0].auto_model
    size = sum(p.numel() * 4 for p in transformer.parameters())
    if size > MAX_GRAPH_BYTES:
        raise UserError(f"The model has {size / 1e9:.1f} GB of fp32 weights; the ONNX export writes one file of at most "
                        "2 GB. Set `export.enabled: false` for a model this large.")
    graph = _graph_module(transformer.float().cpu().eval(), layout)
    sample = model.tokenizer(list(TRACE_TEXTS), padding=True, return_tensors="pt")
    args = tuple(sample[name] for name in layout.inputs)
    axes = {name: {0: "batch", 1: "sequence"} for name in layout.inputs}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's warnings are about Python branches it cannot follow: none here
        torch.onnx.export(graph, args, str(path), input_names=list(layout.inputs), output_names=[OUTPUT_NAME],
                          dynamic_axes={**axes, OUTPUT_NAME: {0: "batch"}}, opset_version=OPSET, do_constant_folding=True,
                          dynamo=False)


def quantize_int8(source: Path, destination: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # It logs a generic "consider pre-processing" warning on the root logger; measured on multilingual-e5-small,
    # onnxruntime's quant_pre_process changed the int8 vectors' cosine to fp32 by under 0.0003.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(str(source), str(destination), weight_type=QuantType.QInt8, per_channel=True)
    finally:
        root.setLevel(level)


def write_readme(folder: Path, config: OnnxConfig) -> None:
    files = ", ".join(f"`{file}` ({variant})" for variant, file in config.files.items())
    prompts = f"queries after {config.query_prompt!r}, documents after {config.document_prompt!r}"
    pooling = f"{config.pooling} pooling" + (" and L2 normalisation" if config.normalize else "")
    text = f"""# The fine-tuned embedding model, as ONNX

Written by the pipeline's `export` stage from `models/trained` (do not edit: `dvc repro export` rewrites it).

* Graphs: {files}. Inputs {', '.join(f'`{n}`' for n in config.inputs)} (int64, batch x sequence); output
  `{OUTPUT_NAME}` (float32, batch x {config.dimension}), {pooling} inside the graph.
* Tokenizer: the model's own (`tokenizer.json`), cut at {config.max_seq_length} tokens (prompt and special tokens included).
* Prompts: {prompts}; `{CONFIG_FILE}` holds these settings.
* Quality and speed against the PyTorch model: `metrics/export.json`.

```python
from pathlib import Path
from stages.lib.models.onnx_encoder import OnnxEncoder

encoder = OnnxEncoder(Path("models/finetuned-onnx"), variant="int8")   # or "fp32"
queries = encoder.encode_query(["公司不给交社保，我能辞职要补偿吗？"])      # prompt put before each text
documents = encoder.encode_document(["第三十八条 用人单位有下列情形之一的……"])
```

Without this project: tokenize `prompt + text` with `transformers.AutoTokenizer.from_pretrained(folder)`
(`padding=True, truncation=True, max_length={config.max_seq_length}, return_tensors="np"`), feed the
inputs above to an `onnxruntime.InferenceSession` of either graph, and read `{OUTPUT_NAME}`.
Or serve it: `python -m stages.serve --backend onnx-int8`.
"""
    (folder / README_FILE).write_text(text, encoding="utf-8")


def write_onnx_folder(model, prompts: Prompts, max_seq_length: int, folder: Path, timer,
                      variants: tuple[str, ...] = ("fp32", "int8")) -> OnnxConfig:
    """The graphs (fp32, and int8 unless left out), the tokenizer (cutting at ``max_seq_length``), the config and a
    README into ``folder``."""
    layout = model_layout(model)
    config = OnnxConfig(
        dimension=layout.dimension, max_seq_length=max_seq_length, pooling=layout.pooling, normalize=layout.normalize,
        query_prompt=prompts.query, document_prompt=prompts.document, inputs=layout.inputs,
        files={variant: file for variant, file in VARIANT_FILES.items() if variant in variants},
        quantization=dict(QUANTIZATION) if "int8" in variants else {},
    )
    fp32, int8 = folder / VARIANT_FILES["fp32"], folder / VARIANT_FILES["int8"]
    with timer("export fp32"):
        export_fp32(model, layout, fp32)
    if "int8" in variants:
        with timer("quantise int8"):
            quantize_int8(fp32, int8)
    model.tokenizer.model_max_length = max_seq_length
    model.tokenizer.save_pretrained(str(folder))
    write_config(folder, config)
    write_readme(folder, config)
    return config
