"""Loading a sentence-transformers model the way every stage runs it, and its tokenizer's one quirk.

``load_sentence_transformer`` is the one place a model folder becomes a ``SentenceTransformer`` for
encoding (evaluate, search, export's PyTorch reference, the server): torch on the cores this process
may use, the model on its device, reading at most ``model.max_seq_length`` tokens as the evaluation did.
``count_without_length_warning`` is for tokenizers that also count texts' tokens: counting a long text
is not encoding it.
"""

from __future__ import annotations

from pathlib import Path

# transformers' key for its one-time "Token indices sequence length is longer than the specified maximum" warning.
LENGTH_WARNING = "sequence-length-is-longer-than-the-specified-maximum"


def load_sentence_transformer(folder: Path | str, device: str, max_seq_length: int | None = None):
    """The model in ``folder`` on ``device``, torch on this process's share of the cores; ``max_seq_length``
    (``model.max_seq_length``) replaces the folder's own when given."""
    import torch
    from sentence_transformers import SentenceTransformer

    from stages.lib.common.cores import cpu_threads

    # The cores this process may use (a container's share, not the host's count).
    torch.set_num_threads(cpu_threads())
    model = SentenceTransformer(str(folder), device=device)
    if max_seq_length is not None:
        model.max_seq_length = max_seq_length
    return model


def count_without_length_warning(tokenizer) -> None:
    """Silence ``tokenizer``'s one-time "longer than the maximum" warning: the caller counts tokens of texts that
    may be long, and the warning on the first one would read as if the model were about to overflow (encoding
    truncates)."""
    warned = getattr(tokenizer, "deprecation_warnings", None)
    if isinstance(warned, dict):
        warned[LENGTH_WARNING] = True
