"""The corpus stage's numbers and lines (``stages/lib/documents/corpus_summary.py``)."""

from __future__ import annotations

import pytest

from stages.lib.common.errors import UserError
from stages.lib.documents.chunking import Chunk
from stages.lib.documents.corpus_summary import corpus_metrics, corpus_report, require_enough_chunks
from stages.lib.documents.readers import SourceDocument


def _chunk(cid: str, split: str, tokens: int) -> Chunk:
    return Chunk(cid, f"text {cid}", "a.txt", split, "en", "", 0, tokens)


CHUNKS = [_chunk("a", "train", 10), _chunk("b", "train", 30), _chunk("c", "val", 20), _chunk("d", "test", 40)]
DOCUMENTS = [SourceDocument("a.txt", "text", "utf-8"), SourceDocument("b.txt", "文本", "gb18030"),
             SourceDocument("c.pdf", "text", "binary")]


def test_metrics_in_the_order_of_the_metrics_file():
    metrics = corpus_metrics(DOCUMENTS, CHUNKS, {"chunks_merged": 2}, [], [])
    assert metrics == {"documents": 3, "documents_binary": 1, "documents_gb18030": 1, "documents_utf_8": 1,
                       "chunks": 4, "chunks_train": 2, "chunks_val": 1, "chunks_test": 1,
                       "chunk_tokens_median": 30, "chunk_tokens_max": 40, "chunks_merged": 2,
                       "extra_documents": 0, "extra_chunks": 0}
    assert list(metrics) == ["documents", "documents_binary", "documents_gb18030", "documents_utf_8", "chunks",
                             "chunks_train", "chunks_val", "chunks_test", "chunk_tokens_median", "chunk_tokens_max",
                             "chunks_merged", "extra_documents", "extra_chunks"]


def test_report_names_files_not_read_as_utf8_and_the_extra_documents_only_when_there_are_some():
    metrics = corpus_metrics(DOCUMENTS, CHUNKS, {}, [], [])
    assert corpus_report(DOCUMENTS, metrics, "extra") == [
        "b.txt: read as gb18030",
        "3 document(s) -> 4 chunks (train 2, val 1, test 1); median 30 tokens, max 40",
    ]
    with_extra = corpus_metrics(DOCUMENTS, CHUNKS, {}, [DOCUMENTS[0]], [_chunk("x", "train", 5)])
    assert corpus_report(DOCUMENTS, with_extra, "data/sample_extra")[-1] == (
        "extra training documents: 1 from data/sample_extra -> 1 chunks (training questions only; never searched or "
        "evaluated)")


def test_no_test_chunk_stops_with_the_folder_and_the_fix():
    with pytest.raises(UserError, match=r"Only 3 chunk\(s\) came out of docs \(train 2, test 0\).*corpus.chunk_size"):
        require_enough_chunks(CHUNKS[:3], "docs")
    require_enough_chunks(CHUNKS, "docs")
