"""Stage ``corpus``: documents folder -> ``data/corpus/chunks.jsonl`` (and ``documents.jsonl``: one line per
document, with the encoding its text was read in); the extra documents folder (training material only) ->
``data/corpus/extra_chunks.jsonl``, all in the train split and never part of the evaluated corpus."""

from __future__ import annotations

import logging
from pathlib import Path

from stages.lib.common.errors import run_stage
from stages.lib.common.files import write_json, write_jsonl
from stages.lib.common.params import load_params
from stages.lib.documents.chunk_file import CHUNKS_FILE, DOCUMENTS_FILE, EXTRA_CHUNKS_FILE
from stages.lib.documents.chunking import make_chunks
from stages.lib.documents.corpus_summary import corpus_metrics, corpus_report, require_enough_chunks
from stages.lib.documents.extra_documents import check_no_collision, load_extra_chunks
from stages.lib.documents.readers import load_documents

log = logging.getLogger(__name__)

METRICS_FILE = Path("metrics/corpus.json")


@run_stage("corpus")
def main() -> None:
    # 1. The target corpus: read, chunk, split.
    params = load_params().corpus
    folder = Path(params.documents_dir)
    documents, ignored = load_documents(folder)
    for path in ignored:
        log.info(f"skipping unsupported file {path}")
    chunks, stats = make_chunks(
        documents, params.chunk_size, params.chunk_overlap, params.min_chunk_tokens,
        params.split.seed, params.split.val_fraction, params.split.test_fraction,
    )
    require_enough_chunks(chunks, folder)

    # 2. Extra training documents: chunked the same way, all train, checked apart from the target.
    extra_chunks, extra_documents = load_extra_chunks(Path(params.extra_documents_dir), folder, documents,
                                                      params.chunk_size, params.chunk_overlap, params.min_chunk_tokens)
    check_no_collision(chunks, extra_chunks)

    # 3. Write, and report.
    write_jsonl(CHUNKS_FILE, (chunk.to_json() for chunk in chunks))
    write_jsonl(EXTRA_CHUNKS_FILE, (chunk.to_json() for chunk in extra_chunks))
    write_jsonl(DOCUMENTS_FILE, ({"source": d.source, "encoding": d.encoding, "characters": len(d.text)}
                                 for d in documents))
    metrics = corpus_metrics(documents, chunks, stats, extra_documents, extra_chunks)
    write_json(METRICS_FILE, metrics)
    for line in corpus_report(documents, metrics, params.extra_documents_dir):
        log.info(line)


if __name__ == "__main__":
    main()
