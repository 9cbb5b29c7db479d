"""One JSON object per line, as the labelling files write it and as ``golden.load_golden`` reads it back.

``load_golden`` cuts its file with ``str.splitlines``, which also breaks at U+2028, U+2029 and U+0085; ``json.dumps``
with ``ensure_ascii=False`` writes those characters as they are (and a question pasted from a web page can hold
them). So they are written escaped, and every row stays one line for every reader.
"""

from __future__ import annotations

import json

_LINE_BREAKING = {"\u2028": "\\u2028", "\u2029": "\\u2029", "\u0085": "\\u0085"}


def json_line(row: dict) -> bytes:
    text = json.dumps(row, ensure_ascii=False)
    for character, escaped in _LINE_BREAKING.items():
        text = text.replace(character, escaped)
    return (text + "\n").encode("utf-8")
