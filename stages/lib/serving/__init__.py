"""From the trained model to the RAG application: the model card with the run's evidence, the export stage's
measurements of the ONNX graphs (written by ``models``), encoders over either backend, and the OpenAI-compatible
embeddings server.

May import: ``common``, ``documents``, ``questions``, ``models``, ``retrieval``. Never training: what
ships is judged by its files and the run's metrics, not by the code that trained it.
"""
