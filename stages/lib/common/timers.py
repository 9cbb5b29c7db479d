"""Wall time per phase of a stage, and the process's peak memory: logged, so a slow run says where it went."""

from __future__ import annotations

import logging
import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)


def peak_rss_gib() -> float:
    """Peak resident memory of this process so far (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 30) if sys.platform == "darwin" else peak / (1 << 20)


class PhaseTimer:
    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            self.seconds[phase] = self.seconds.get(phase, 0.0) + elapsed
            log.info(f"{phase}: {elapsed:.1f}s")

    def summary(self) -> str:
        """The phases and the peak memory as one ``[stage] ...`` line (``log_summary`` logs it without the label)."""
        return f"[{self.stage}] {self._summary()}"

    def log_summary(self) -> None:
        log.info(self._summary())

    def _summary(self) -> str:
        phases = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in self.seconds.items())
        return f"phases: {phases}; peak memory {peak_rss_gib():.2f} GiB"
