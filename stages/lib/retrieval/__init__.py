"""Retrieval and its evaluation: rankers (dense, BM25) and metrics, fusion, bootstrap intervals, golden
and synthetic question sets, dense encoding with its vector cache, API embedding models, the llama-index
cross-check, the side-by-side evaluation with its printed report, and one query's search.

May import: ``common``, ``documents``, ``questions``, ``models``. Never training: an evaluation must not
depend on how the model it judges was trained.
"""
