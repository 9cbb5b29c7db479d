"""Tests of base-model sources (packages, the packed e5 reader, a local Hub stand-in) and prompts."""
