"""Tests of documents to chunks: readers, encodings, text utilities, chunking."""
