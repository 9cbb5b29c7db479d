"""Base models and the hardware they run on: model sources (packages, local folders, the Hub at a
pinned commit), the packed multilingual-e5 reader, query/document prompts, device and precision, and the
runtimes that encode: PyTorch, or ONNX Runtime over an export of the model (fp32 and int8 graphs, their folder
and config) where it measures faster.

May import: ``common``, ``documents``, ``questions``.
"""
