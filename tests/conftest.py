"""Fixtures shared across test modules.

The tiny Chinese pipeline is reproduced once per test session; modules that
change the project work on a copy (``copy_project``), so the expensive
``dvc repro`` is not repeated for every module that only needs its outputs.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import TINY_ZH_PARAMS, make_project, run
from tests.openai_stub import StubOpenAI


@pytest.fixture(scope="session", autouse=True)
def precision_probe_cache(tmp_path_factory):
    """One fresh cache of the precision probe's decision for the session, shared by the stages the tests run:
    tests neither read nor change the developer's (~/.cache/embedding-ft)."""
    from stages.lib.models.precision_probe import CACHE_DIR_VARIABLE

    before = os.environ.get(CACHE_DIR_VARIABLE)
    os.environ[CACHE_DIR_VARIABLE] = str(tmp_path_factory.mktemp("embedding-ft-cache"))
    yield
    if before is None:
        del os.environ[CACHE_DIR_VARIABLE]
    else:
        os.environ[CACHE_DIR_VARIABLE] = before


@dataclass(frozen=True)
class PipelineRun:
    path: Path  # a git + DVC project, reproduced and committed
    output: str  # stdout of its first `dvc repro`


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory) -> PipelineRun:
    path = make_project(tmp_path_factory.mktemp("tiny") / "project", TINY_ZH_PARAMS)
    first = run(["dvc", "repro"], path)
    run(["git", "add", "-A"], path)
    run(["git", "commit", "-q", "-m", "first run"], path)
    return PipelineRun(path, first.stdout)


@pytest.fixture
def stub(monkeypatch):
    """The local OpenAI-compatible server, with the client's environment pointing at it."""
    with StubOpenAI() as server:
        monkeypatch.setenv("OPENAI_API_KEY", server.api_key)
        monkeypatch.setenv("OPENAI_API_BASE", server.base_url)
        yield server


@pytest.fixture
def logged(caplog, monkeypatch):
    """A function returning the pipeline's log messages so far (``logging`` under ``stages``), whatever an earlier
    ``setup_logging`` in this process did to that logger (it stops propagation to the root, where caplog listens)."""
    monkeypatch.setattr(logging.getLogger("stages"), "propagate", True)
    caplog.set_level(logging.INFO, logger="stages")
    return lambda: [record.getMessage() for record in caplog.records if record.name.startswith("stages")]
