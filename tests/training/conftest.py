"""Fixtures of the training tests."""

from __future__ import annotations

import logging

import pytest


@pytest.fixture
def logged(caplog, monkeypatch):
    """A function returning the pipeline's log messages so far (``logging`` under ``stages``), whatever an earlier
    ``setup_logging`` in this process did to that logger (it stops propagation to the root, where caplog listens)."""
    monkeypatch.setattr(logging.getLogger("stages"), "propagate", True)
    caplog.set_level(logging.INFO, logger="stages")
    return lambda: [record.getMessage() for record in caplog.records if record.name.startswith("stages")]
