"""The ONNX export (``models/finetuned-onnx/``) as an encoder: the server's ``Encoder`` protocol over onnxruntime.

Texts are encoded the way sentence-transformers encodes them: the prompt is put before each text,
the model's tokenizer pads to the longest text of a batch and cuts at ``max_seq_length``
(``truncation="longest_first"``), and a batch holds neighbours in length order (longest first), the
rows coming back in the callers' order. Pooling and normalisation are in the graph. onnxruntime runs
with one intra-op thread per usable core, on CUDA when its CUDA provider is installed (this project's
``onnxruntime`` wheel is the CPU one).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from stages.lib.common.cores import usable_cores
from stages.lib.common.errors import UserError
from stages.lib.models.loading import count_without_length_warning
from stages.lib.models.onnx_folder import CONFIG_FILE, HOW_TO_MAKE, OUTPUT_NAME, read_config
from stages.lib.models.prompts import Prompts

Variant = Literal["fp32", "int8"]
CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"


def default_providers() -> list[str]:
    import onnxruntime

    return [CUDA, CPU] if CUDA in onnxruntime.get_available_providers() else [CPU]


class OnnxEncoder:
    """``OnnxEncoder(folder, variant="int8" | "fp32")``: ``encode_query`` / ``encode_document`` -> float32 rows."""

    def __init__(self, folder: Path, variant: Variant = "int8", *, batch_size: int = 64,
                 providers: Sequence[str] | None = None) -> None:
        import onnxruntime
        from transformers import AutoTokenizer

        folder = Path(folder)
        self.config = read_config(folder, variant)  # a missing or incomplete folder stops here, clearly
        self.variant = variant
        self.name = folder.resolve().name
        self.dimension = self.config.dimension
        self.max_seq_length = self.config.max_seq_length
        self.query_prompt, self.document_prompt = self.config.query_prompt, self.config.document_prompt
        self.batch_size = batch_size
        self._tokenizer = AutoTokenizer.from_pretrained(str(folder))
        count_without_length_warning(self._tokenizer)  # count_tokens counts texts of any length
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = usable_cores()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: its warnings are about graph rewrites, not results
        self.providers = list(providers or default_providers())
        graph = folder / self.config.files[variant]
        try:
            self._session = onnxruntime.InferenceSession(str(graph), options, providers=self.providers)
        except Exception as error:  # onnxruntime raises its own classes (InvalidProtobuf, Fail, ...) for a bad file
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise UserError(f"{graph} cannot be loaded by onnxruntime ({first_line}): the file is damaged or not this "
                            f"project's export. Rewrite it: {HOW_TO_MAKE} (`dvc repro --force export` if it is "
                            "on already).") from None
        graph_inputs = [node.name for node in self._session.get_inputs()]
        if sorted(graph_inputs) != sorted(self.config.inputs):
            raise UserError(f"{graph} takes the inputs {graph_inputs}, but {folder / CONFIG_FILE} names "
                            f"{list(self.config.inputs)}: the folder mixes files of different exports. Rewrite it: "
                            f"{HOW_TO_MAKE}.")
        self.device = "cuda" if CUDA in self._session.get_providers() else "cpu"

    @property
    def prompts(self) -> Prompts:
        return Prompts(query=self.query_prompt, document=self.document_prompt)

    def encode_query(self, texts: Sequence[str]) -> np.ndarray:
        return self.encode(texts, self.query_prompt)

    def encode_document(self, texts: Sequence[str]) -> np.ndarray:
        return self.encode(texts, self.document_prompt)

    def encode(self, texts: Sequence[str], prompt: str = "") -> np.ndarray:
        """One row per text, encoded after ``prompt``, in the given order."""
        texts = [prompt + text for text in texts]
        rows = np.zeros((len(texts), self.dimension), dtype=np.float32)
        # sentence-transformers' order: longest text (in characters) first, so a batch pads little.
        order = np.argsort([-len(text) for text in texts], kind="stable")
        for start in range(0, len(texts), self.batch_size):
            chosen = order[start:start + self.batch_size]
            encoded = self._tokenizer([texts[i] for i in chosen], padding=True, truncation="longest_first",
                                      max_length=self.max_seq_length, return_tensors="np")
            feed = {name: np.asarray(encoded[name], dtype=np.int64) for name in self.config.inputs}
            rows[chosen] = self._session.run([OUTPUT_NAME], feed)[0]
        return rows

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens per text as given (callers put the prompt before it), special tokens included, before truncation."""
        encoded = self._tokenizer(list(texts), add_special_tokens=True, truncation=False, return_attention_mask=False,
                                  return_token_type_ids=False)
        return [len(ids) for ids in encoded["input_ids"]]
