"""Golden sets a person labels in the UI (``python -m stages.ui``, ``/label``): question lists imported from a
text, CSV or JSONL file (a query log), the pool of chunks shown for a question (the union of every retriever's top
k, shuffled so no retriever is favoured), each question's seeded val/test split, and the label store, which writes
``data/golden/<set>.jsonl`` in the golden-set format (``retrieval/golden.py``) by locked, atomic updates that never
lose an earlier label.

May import: ``common``, ``documents``, ``questions``, ``retrieval``.
"""
