"""The sample stage's note in ``data/sample_extra/``: which extra laws it rendered there (possibly none).

A folder of extra training documents that holds nothing is a mistake, except when the sample stage
made it for an empty ``sample.extra_laws``: the manifest says which case it is. Hidden, so the
document readers skip it.
"""

from __future__ import annotations

import json
from pathlib import Path

EXTRA_MANIFEST = ".extra_laws.json"


def write_manifest(folder: Path, law_names: list[str]) -> None:
    (folder / EXTRA_MANIFEST).write_text(json.dumps({"laws": law_names}, ensure_ascii=False, indent=1) + "\n",
                                         encoding="utf-8")


def intentionally_empty(folder: Path) -> bool:
    """True for the sample stage's folder when ``sample.extra_laws`` is empty."""
    manifest = folder / EXTRA_MANIFEST
    if not manifest.is_file():
        return False
    return not json.loads(manifest.read_text(encoding="utf-8")).get("laws")
