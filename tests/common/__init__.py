"""Tests of the plumbing: params schema and defaults, atomic files, the layering of stages/lib."""
