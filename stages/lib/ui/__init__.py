"""The browser UI over a run's outputs (``python -m stages.ui``): what the pipeline wrote, checked against ``dvc.lock``
(missing and stale outputs named with the ``dvc repro`` stage that fixes them), the known question sets with
their labelled chunks, one question's four rankings side by side with the words each chunk shares with it, the
evaluation report with its error analysis, the labelling view (``/label``: a person labels a golden set, which
the UI writes to ``data/golden/<set>.jsonl`` through the ``labelling`` concern, and nothing else), and the FastAPI
app with the page's own scripts and styles (``static/``, served by the app itself: no CDN). Apart from the
labelling view's golden sets and question queues (``data/labelling/``), it reads and never writes.

May import: ``common``, ``documents``, ``questions``, ``models``, ``retrieval``, ``labelling``, ``serving``.
"""
