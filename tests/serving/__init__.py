"""Tests of what ships: the model card, the ONNX export and its int8 variant, the OpenAI-compatible server over real HTTP."""
