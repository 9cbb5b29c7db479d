"""A labelled set's name and the files it lives in.

* ``data/golden/<set>.jsonl``: the golden set itself, in the golden-set format, which ``evaluate.golden_sets``
  (default ``data/golden/*.jsonl``) reads with no params change. ``data/golden`` is a dependency of ``train``
  and ``evaluate``, so nothing else is kept there.
* ``data/labelling/<set>.queue.jsonl``: the questions imported for it, in order (the work still to do).
* ``data/labelling/<set>.lock``: the lock every writer of the set's files holds while it reads and rewrites them.

A set name is a file stem: letters (any script, Chinese included), digits, ``_`` and ``-``, at most 64 characters,
so it never names another folder, a hidden file or a glob pattern.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from stages.lib.common.errors import UserError

GOLDEN_DIR = Path("data/golden")
LABELLING_DIR = Path("data/labelling")
DEFAULT_SET = "labelled"
MAX_NAME = 64
# \w is Unicode-aware: letters and digits of any script and "_"; "-" added. No ".", "/", "\", spaces or "*?[".
_SAFE = re.compile(r"[\w-]+")


class BadSetName(UserError):
    """A set name that is not a safe file stem; the message says why and what is allowed."""


@dataclass(frozen=True)
class SetFiles:
    name: str
    golden: Path
    queue: Path
    lock: Path


def check_set_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise BadSetName(f"The set name is empty: name the golden set (letters, digits, _ or -, e.g. {DEFAULT_SET!r}); it is "
                         f"written to {GOLDEN_DIR}/<name>.jsonl.")
    name = name.strip()
    if len(name) > MAX_NAME:
        raise BadSetName(f"The set name is {len(name)} characters; use at most {MAX_NAME}.")
    if not _SAFE.fullmatch(name) or name.startswith("-"):
        bad = sorted({ch for ch in name if not _SAFE.fullmatch(ch)}) or ["a leading '-'"]
        raise BadSetName(f"The set name {name!r} cannot be a file name here ({', '.join(map(repr, bad))} not allowed): use "
                         f"letters (Chinese too), digits, _ and -, e.g. {DEFAULT_SET!r}. It becomes {GOLDEN_DIR}/<name>.jsonl.")
    return name


def set_files(name: object, root: Path = Path()) -> SetFiles:
    """The files of set ``name`` under the project ``root``; the name is checked first."""
    name = check_set_name(name)
    return SetFiles(name, root / GOLDEN_DIR / f"{name}.jsonl", root / LABELLING_DIR / f"{name}.queue.jsonl",
                    root / LABELLING_DIR / f"{name}.lock")


def known_set_names(root: Path = Path()) -> list[str]:
    """Sets with a golden file or a queue here, by name."""
    names = {p.stem for p in (root / GOLDEN_DIR).glob("*.jsonl")}
    names |= {p.name.removesuffix(".queue.jsonl") for p in (root / LABELLING_DIR).glob("*.queue.jsonl")}
    return sorted(n for n in names if _SAFE.fullmatch(n) and not n.startswith("-"))
