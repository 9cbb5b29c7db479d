"""Tests of examples/: each example file run as a user runs it, against a real model folder and a real server."""
