"""What the corpus stage reports about its output: ``metrics/corpus.json`` and its lines to the user.

The stage reads, chunks and writes (``stages/corpus.py``); the numbers about what it wrote are assembled here, in
the order the metrics file has always had them.
"""

from __future__ import annotations

from collections import Counter

from stages.lib.common.errors import UserError
from stages.lib.documents.chunking import SPLITS, Chunk
from stages.lib.documents.readers import SourceDocument


def require_enough_chunks(chunks: list[Chunk], folder) -> None:
    """Stop when the target corpus gives no train or no test chunk: nothing could be trained or evaluated."""
    per_split = Counter(chunk.split for chunk in chunks)
    if per_split["train"] == 0 or per_split["test"] == 0:
        raise UserError(
            f"Only {len(chunks)} chunk(s) came out of {folder} (train {per_split['train']}, test {per_split['test']}): "
            "too few to train and evaluate. Add documents or lower 'corpus.chunk_size'."
        )


def corpus_metrics(documents: list[SourceDocument], chunks: list[Chunk], chunking_stats: dict,
                   extra_documents: list, extra_chunks: list[Chunk]) -> dict:
    """``metrics/corpus.json``: documents per encoding, chunks per split, chunk lengths, the chunker's own counts,
    and the extra training documents."""
    per_split = Counter(chunk.split for chunk in chunks)
    encodings = Counter(d.encoding for d in documents)
    tokens = sorted(chunk.n_tokens for chunk in chunks)
    return {
        "documents": len(documents),
        **{f"documents_{encoding.replace('-', '_')}": count for encoding, count in sorted(encodings.items())},
        "chunks": len(chunks),
        **{f"chunks_{split}": per_split[split] for split in SPLITS},
        "chunk_tokens_median": tokens[len(tokens) // 2],
        "chunk_tokens_max": tokens[-1],
        **chunking_stats,
        "extra_documents": len(extra_documents),
        "extra_chunks": len(extra_chunks),
    }


def corpus_report(documents: list[SourceDocument], metrics: dict, extra_dir: str) -> list[str]:
    """The stage's lines to the user: documents not read as UTF-8, the chunks per split, the extra documents."""
    lines = [f"{d.source}: read as {d.encoding}" for d in documents if d.encoding not in ("utf-8", "binary")]
    lines.append(f"{metrics['documents']} document(s) -> {metrics['chunks']} chunks "
                 f"(train {metrics['chunks_train']}, val {metrics['chunks_val']}, test {metrics['chunks_test']}); "
                 f"median {metrics['chunk_tokens_median']} tokens, max {metrics['chunk_tokens_max']}")
    if metrics["extra_documents"]:
        lines.append(f"extra training documents: {metrics['extra_documents']} from {extra_dir} -> "
                     f"{metrics['extra_chunks']} chunks (training questions only; never searched or evaluated)")
    return lines
