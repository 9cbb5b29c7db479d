"""Tests of retrieval and evaluation: rankers and metrics against references, fusion, intervals, golden sets, the vector cache, search and the evaluate stage."""
