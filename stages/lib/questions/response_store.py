"""A content-addressed store of paid API responses: one JSON file per request key.

Each response is written (atomically) the moment it arrives, so a crash,
Ctrl-C or ``kill -9`` loses at most the requests in flight. The key is a hash
of everything that determines the answer, never of secrets.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from stages.lib.common.files import write_text_atomic


def request_key(**determinants: Any) -> str:
    canonical = json.dumps(determinants, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class ResponseStore:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        path = self._path(key)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except json.JSONDecodeError:
            return None  # cannot happen with atomic writes, but never trust a cache over a rerun

    def put(self, key: str, record: dict) -> None:
        write_text_atomic(self._path(key), json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")

    def __len__(self) -> int:
        return sum(1 for _ in self.folder.glob("*/*.json")) if self.folder.is_dir() else 0
