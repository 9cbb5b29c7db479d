"""Golden sets a person labels in the UI (``python -m stages.ui``, ``/label``): question lists imported from a
text, CSV or JSONL file (a query log; ``question_list``), queued per set outside ``data/golden`` (``question_queue``)
and handed to one browser tab at a time (``tab_claims``), the pool of chunks shown for a question (the union of
every retriever's top k, shuffled so no retriever is favoured; ``pool``), each question's id and seeded val/test
split (``question_identity``), earlier labels found again after re-chunking (``existing_labels``), the label store,
which writes ``data/golden/<set>.jsonl`` in the golden-set format (``retrieval/golden.py``) by locked, atomic
updates that never lose an earlier label (``label_store``, ``set_files``, ``jsonl_lines``), and the pace of
labelling the page measured (``pace``).

May import: ``common``, ``documents``, ``questions``, ``retrieval``.
"""
