"""User-facing errors and the wrapper every stage's ``main()`` runs under."""

from __future__ import annotations

import functools
import os
import sys
import textwrap
import time
from collections.abc import Callable


class UserError(Exception):
    """A problem the user can fix: bad input, bad params, missing model.

    The message is shown as one paragraph, without a traceback, so it must name
    the file/key/value at fault and say what to do.
    """


EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def run_stage(name: str) -> Callable[[Callable[[], None]], Callable[[], None]]:
    """Decorate a stage ``main()``: time it, and turn ``UserError`` into a clean exit."""

    def decorate(main: Callable[[], None]) -> Callable[[], None]:
        @functools.wraps(main)
        def wrapper() -> None:
            started = time.perf_counter()
            try:
                main()
            except UserError as error:
                paragraph = textwrap.fill(" ".join(str(error).split()), width=100)
                print(f"\nERROR in stage '{name}':\n{paragraph}\n", file=sys.stderr)
                sys.exit(EXIT_USER_ERROR)
            except KeyboardInterrupt:
                print(f"\nstage '{name}' interrupted; completed work was kept.", file=sys.stderr)
                sys.exit(EXIT_INTERRUPTED)
            if "LOCAL_RANK" not in os.environ:  # a torchrun worker: its launcher reports for the stage
                print(f"[{name}] finished in {time.perf_counter() - started:.1f}s", flush=True)

        return wrapper

    return decorate
