"""Base models and the hardware they run on: model sources (packages, local folders, the Hub at a
pinned commit), the packed multilingual-e5 reader, query/document prompts, device and precision.

May import: ``common``, ``documents``, ``questions``.
"""
