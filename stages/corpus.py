"""Stage ``corpus``: documents folder -> ``data/corpus/chunks.jsonl`` (and ``documents.jsonl``: one line per
document, with the encoding its text was read in); the extra documents folder (training material only) ->
``data/corpus/extra_chunks.jsonl``, all in the train split and never part of the evaluated corpus."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from stages.lib.common.errors import UserError, run_stage
from stages.lib.common.files import write_json, write_jsonl
from stages.lib.common.params import load_params
from stages.lib.documents.chunk_file import CHUNKS_FILE, DOCUMENTS_FILE, EXTRA_CHUNKS_FILE
from stages.lib.documents.chunking import SPLITS, make_chunks
from stages.lib.documents.extra_documents import check_no_collision, load_extra_chunks
from stages.lib.documents.readers import load_documents

METRICS_FILE = Path("metrics/corpus.json")


@run_stage("corpus")
def main() -> None:
    # 1. The target corpus: read, chunk, split.
    params = load_params().corpus
    folder = Path(params.documents_dir)
    documents, ignored = load_documents(folder)
    for path in ignored:
        print(f"[corpus] skipping unsupported file {path}")
    chunks, stats = make_chunks(
        documents, params.chunk_size, params.chunk_overlap, params.min_chunk_tokens,
        params.split.seed, params.split.val_fraction, params.split.test_fraction,
    )
    per_split = Counter(chunk.split for chunk in chunks)
    if per_split["train"] == 0 or per_split["test"] == 0:
        raise UserError(
            f"Only {len(chunks)} chunk(s) came out of {folder} (train {per_split['train']}, test {per_split['test']}): "
            "too few to train and evaluate. Add documents or lower 'corpus.chunk_size'."
        )
    # 2. Extra training documents: chunked the same way, all train, checked apart from the target.
    extra_chunks, extra_documents = load_extra_chunks(Path(params.extra_documents_dir), folder, documents,
                                                      params.chunk_size, params.chunk_overlap, params.min_chunk_tokens)
    check_no_collision(chunks, extra_chunks)

    # 3. Write, and report.
    write_jsonl(CHUNKS_FILE, (chunk.to_json() for chunk in chunks))
    write_jsonl(EXTRA_CHUNKS_FILE, (chunk.to_json() for chunk in extra_chunks))
    write_jsonl(DOCUMENTS_FILE, ({"source": d.source, "encoding": d.encoding, "characters": len(d.text)}
                                 for d in documents))
    encodings = Counter(d.encoding for d in documents)
    for document in documents:
        if document.encoding not in ("utf-8", "binary"):
            print(f"[corpus] {document.source}: read as {document.encoding}")
    tokens = sorted(chunk.n_tokens for chunk in chunks)
    write_json(METRICS_FILE, {
        "documents": len(documents),
        **{f"documents_{encoding.replace('-', '_')}": count for encoding, count in sorted(encodings.items())},
        "chunks": len(chunks),
        **{f"chunks_{split}": per_split[split] for split in SPLITS},
        "chunk_tokens_median": tokens[len(tokens) // 2],
        "chunk_tokens_max": tokens[-1],
        **stats,
        "extra_documents": len(extra_documents),
        "extra_chunks": len(extra_chunks),
    })
    print(f"[corpus] {len(documents)} document(s) -> {len(chunks)} chunks "
          f"(train {per_split['train']}, val {per_split['val']}, test {per_split['test']}); "
          f"median {tokens[len(tokens) // 2]} tokens, max {tokens[-1]}")
    if extra_documents:
        print(f"[corpus] extra training documents: {len(extra_documents)} from {params.extra_documents_dir} -> "
              f"{len(extra_chunks)} chunks (training questions only; never searched or evaluated)")


if __name__ == "__main__":
    main()
