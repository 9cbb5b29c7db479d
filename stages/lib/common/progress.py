"""Progress for steps that can run for minutes: a live bar in a terminal, plain lines in a log.

tqdm's carriage returns turn a CI log into one endless line, so when stderr
is not a terminal the same interface prints a short line at most every
``LOG_INTERVAL_S`` seconds (and at the end), with the rate and the ETA.
"""

from __future__ import annotations

import os
import sys
import time

LOG_INTERVAL_S = 30.0


def _format_seconds(seconds: float) -> str:
    seconds = int(max(0, seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


class LineProgress:
    """The subset of tqdm's interface the stages use, writing whole lines."""

    def __init__(self, total: int, desc: str, unit: str = "it", interval_s: float = LOG_INTERVAL_S,
                 initial: int = 0, stream=None) -> None:
        self.total, self.desc, self.unit, self.interval_s = total, desc, unit, interval_s
        self.n = initial
        self._start_n = initial
        self.stream = stream or sys.stderr
        self.postfix = ""
        self.started = self.last_print = time.monotonic()
        self._printed_n: int | None = None

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last_print >= self.interval_s:
            self.last_print = now
            self._print(now)

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        self.postfix = text

    def _print(self, now: float) -> None:
        self._printed_n = self.n
        elapsed = now - self.started
        done = self.n - self._start_n
        rate = done / elapsed if elapsed > 0 else 0.0
        share = f" ({self.n / self.total:.0%})" if self.total else ""
        eta = f", ETA {_format_seconds((self.total - self.n) / rate)}" if rate > 0 and self.total else ""
        extra = f", {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {self.n}/{self.total} {self.unit}{share}, {rate:.2f} {self.unit}/s, "
              f"elapsed {_format_seconds(elapsed)}{eta}{extra}", file=self.stream, flush=True)

    def close(self) -> None:
        if self._printed_n != self.n:
            self._print(time.monotonic())

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress(total: int, desc: str, unit: str = "it", initial: int = 0):
    """A progress bar for ``total`` units of work (a tqdm bar in a terminal, log lines otherwise)."""
    if sys.stderr.isatty() and os.environ.get("TERM") != "dumb":
        from tqdm import tqdm

        # disable=False explicitly: stages/__init__.py turns off tqdm's default for library bars.
        return tqdm(total=total, desc=desc, unit=unit, initial=initial, dynamic_ncols=True, disable=False)
    return LineProgress(total, desc, unit, initial=initial)


def quiet_library_bars() -> None:
    """Silence the bars of transformers and huggingface_hub, which bypass tqdm's default (see
    ``stages/__init__.py``): a stage shows one bar per long step, its own, and logs stay readable."""
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # transformers' own tqdm wrapper ignores TQDM_DISABLE
