"""The pipeline's messages to the user: one ``logging`` setup for every stage and command.

A stage logs with ``log = logging.getLogger(__name__)`` in its modules; ``run_stage`` calls
``setup_logging(name)`` once, which prints each message as ``[<stage>] <message>`` on standard output
(where the stages have always spoken, so ``dvc repro`` shows them in order with the libraries' bars).
A stage module run as ``python -m stages.<stage>`` is named ``__main__``, not ``stages.<stage>``: its
logger is routed the same way, so ``getLogger(__name__)`` serves there too.
Under ``torchrun`` only rank 0 speaks: the other processes do the same work, and N copies of every line
would bury the one that matters.
"""

from __future__ import annotations

import logging
import os
import sys

ROOT = "stages"  # every module of the pipeline logs under this name (its package)
# ... and the module ``python -m`` runs (a stage's main, a command), whose ``__name__`` is this one.
ENTRY_POINT = "__main__"


class RankZeroOnly(logging.Filter):
    """Drop records in every data-parallel process but the first (``RANK`` is set by torchrun)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return os.environ.get("RANK", "0") == "0"


def setup_logging(stage: str, level: int = logging.INFO) -> logging.Logger:
    """Route the pipeline's loggers to stdout as ``[stage] message``; idempotent (a second call re-labels)."""
    handler = logging.StreamHandler(_Stdout())
    handler.setFormatter(logging.Formatter(f"[{stage}] %(message)s"))
    handler.addFilter(RankZeroOnly())
    for name in (ENTRY_POINT, ROOT):
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.propagate = False  # a library's root configuration must not print our lines twice
        for old in list(logger.handlers):
            logger.removeHandler(old)
        logger.addHandler(handler)
    return logging.getLogger(ROOT)


class _Stdout:
    """``sys.stdout`` looked up at each write, so pytest's capture and redirected streams see the lines."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()
