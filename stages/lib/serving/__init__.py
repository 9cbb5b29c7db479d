"""From the trained model to the RAG application: the model card with the run's evidence, the ONNX
export with its int8 variant, encoders over either backend, and the OpenAI-compatible embeddings server.

May import: ``common``, ``documents``, ``questions``, ``models``, ``retrieval``. Never training: what
ships is judged by its files and the run's metrics, not by the code that trained it.
"""
