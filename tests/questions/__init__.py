"""Tests of the question generators: offline, LLM (against a local OpenAI-compatible server), llama-index."""
