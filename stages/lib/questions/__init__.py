"""Questions about chunks: the seed-compatible QA dataset format, the offline generator, the LLM
generators (our own concurrent client and the llama-index one), their prompts and the response store
that keeps every paid answer.

May import: ``common``, ``documents``.
"""
