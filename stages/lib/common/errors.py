"""User-facing errors and the wrapper every stage's ``main()`` runs under."""

from __future__ import annotations

import functools
import os
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

from dotenv import load_dotenv

from stages.lib.common.logs import setup_logging

ENV_FILE = Path(".env")


class UserError(Exception):
    """A problem the user can fix: bad input, bad params, missing model.

    The message is shown as one paragraph, without a traceback, so it must name
    the file/key/value at fault and say what to do.
    """


EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def run_stage(name: str) -> Callable[[Callable[[], None]], Callable[[], None]]:
    """Decorate a stage ``main()``: read ``.env``, time it, and turn ``UserError`` into a clean exit."""

    def decorate(main: Callable[[], None]) -> Callable[[], None]:
        @functools.wraps(main)
        def wrapper() -> None:
            started = time.perf_counter()
            # Settings and secrets (HF_ENDPOINT, HF_TOKEN, OPENAI_API_KEY, ...) may live in a git-ignored .env;
            # the environment wins. Loaded before main() runs, so before the stages' lazy imports of clients
            # such as huggingface_hub, which read their settings once, at import.
            load_dotenv(ENV_FILE, override=False)
            setup_logging(name)
            try:
                main()
            except UserError as error:
                # Never break inside a word: model ids, paths and URLs stay whole for copy and paste.
                paragraph = textwrap.fill(" ".join(str(error).split()), width=100, break_on_hyphens=False,
                                          break_long_words=False)
                print(f"\nERROR in stage '{name}':\n{paragraph}\n", file=sys.stderr)
                sys.exit(EXIT_USER_ERROR)
            except KeyboardInterrupt:
                print(f"\nstage '{name}' interrupted; completed work was kept.", file=sys.stderr)
                sys.exit(EXIT_INTERRUPTED)
            if "LOCAL_RANK" not in os.environ:  # a torchrun worker: its launcher reports for the stage
                print(f"[{name}] finished in {time.perf_counter() - started:.1f}s", flush=True)

        return wrapper

    return decorate
