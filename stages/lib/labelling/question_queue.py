"""The questions waiting to be labelled in a set: ``data/labelling/<set>.queue.jsonl``, in the order they came.

Each line is ``{"id", "query", "origin", "added"}``: the question's id (``question_identity``), its text, where it
came from (``questions.txt, line 12`` or ``typed``) and when (UTC). A question is queued once, whatever file or tab
brings it again. Whether it is done is not written here: a question is done when the set's golden file holds
its row, so the two files can never disagree. The queue lives outside ``data/golden`` (a dependency of ``train``
and ``evaluate``): importing questions reruns nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from stages.lib.common.errors import UserError
from stages.lib.common.files import exclusive_lock, write_bytes_atomic
from stages.lib.labelling.jsonl_lines import json_line
from stages.lib.labelling.question_identity import question_id
from stages.lib.labelling.set_files import SetFiles


class BadQueueFile(UserError):
    """A queue file that was edited into something unreadable; the message names the file and the line."""


@dataclass(frozen=True)
class QueuedQuestion:
    id: str
    query: str
    origin: str
    added: str

    def to_json(self) -> dict:
        return {"id": self.id, "query": self.query, "origin": self.origin, "added": self.added}


@dataclass
class Added:
    added: list[QueuedQuestion]
    already: list[QueuedQuestion]  # queued before (by this import or an earlier one): not queued twice


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def read_queue(path: Path) -> list[QueuedQuestion]:
    if not path.is_file():
        return []
    queued = []
    for number, line in enumerate(path.read_bytes().split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            queued.append(QueuedQuestion(row["id"], row["query"], row.get("origin", ""), row.get("added", "")))
            if not isinstance(row["query"], str) or queued[-1].id != question_id(row["query"]):
                raise ValueError("its id is not its question's")
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as error:
            raise BadQueueFile(f"{path}, line {number}: not a queued question ({type(error).__name__}: {error}). Delete "
                               "that line, or the whole file and import the questions again; labelled questions are in "
                               "data/golden/ and are not affected.") from None
    return queued


def add_to_queue(files: SetFiles, questions: list[tuple[str, str]]) -> Added:
    """Queue ``(text, origin)`` pairs not queued yet, at the end, under the set's lock; lines already there are kept
    byte for byte."""
    added = Added([], [])
    with exclusive_lock(files.lock):
        queued = {q.id: q for q in read_queue(files.queue)}
        lines = []
        now = utc_now()
        for text, origin in questions:
            qid = question_id(text)
            if qid in queued:
                added.already.append(queued[qid])
                continue
            queued[qid] = QueuedQuestion(qid, text, origin, now)
            added.added.append(queued[qid])
            lines.append(json_line(queued[qid].to_json()))
        if lines:
            before = files.queue.read_bytes() if files.queue.is_file() else b""
            if before and not before.endswith(b"\n"):
                before += b"\n"
            write_bytes_atomic(files.queue, before + b"".join(lines))
    return added
