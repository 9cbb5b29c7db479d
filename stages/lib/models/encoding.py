"""Encoding with a sentence-transformers model in the run's precision: the one place vectors leave a model.

Every encoder of the pipeline (evaluate, search, export's PyTorch reference, the server) goes through
``encode_in_precision``, so a bf16 forward pass gives the same kind of rows as an fp32 one: float32,
normalised to unit length after the cast.
"""

from __future__ import annotations

import numpy as np

from stages.lib.models.hardware import autocast


def encode_in_precision(model, texts: list[str], batch_size: int, device: str, precision: str, **encode_kwargs) -> np.ndarray:
    """``model.encode`` (or ``encode_kwargs["method"]``, e.g. ``model.encode_query``) in ``precision``: unit-length
    fp32 rows, normalised after the cast so a bf16 forward pass does not also round the norm."""
    import torch

    method = encode_kwargs.pop("method", model.encode)
    if len(texts) == 0:
        return np.zeros((0, model.get_embedding_dimension()), dtype=np.float32)
    with torch.inference_mode(), autocast(device, precision):
        vectors = method(list(texts), batch_size=batch_size, convert_to_tensor=True, normalize_embeddings=False,
                         show_progress_bar=False, **encode_kwargs)
    return torch.nn.functional.normalize(vectors.float(), dim=-1).cpu().numpy()
