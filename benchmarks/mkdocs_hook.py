"""MkDocs hook (mkdocs.yml ``hooks:``): the docs build fails when a rendered block is out of date.

MkDocs loads this file by its path, so the repository it sits in is put on ``sys.path`` for the renderer's
imports. The blocks checked are those of the project whose mkdocs.yml is being built (README.md and docs/*.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

from mkdocs.exceptions import PluginError

_REPOSITORY = Path(__file__).resolve().parents[1]
if str(_REPOSITORY) not in sys.path:
    sys.path.insert(0, str(_REPOSITORY))

from benchmarks.render_docs import stale_blocks  # noqa: E402


def on_pre_build(config) -> None:
    project = Path(config.config_file_path).resolve().parent
    stale = stale_blocks(project)
    if stale:
        raise PluginError(f"{len(stale)} rendered block(s) out of date, run `python -m benchmarks.render_docs`: "
                          + "; ".join(stale))
