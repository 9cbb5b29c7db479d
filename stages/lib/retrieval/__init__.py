"""Retrieval and its evaluation: rankers (dense, BM25) and metrics, fusion, bootstrap intervals, golden
and synthetic question sets, dense encoding with its vector cache, API embedding models, the llama-index
cross-check, and the side-by-side evaluation with its printed report.

May import: ``common``, ``documents``, ``questions``, ``models``; never ``training``.
"""
