"""The label store: ``data/golden/<set>.jsonl``, one row per labelled question, in the golden-set format.

A save upserts one question's row and nothing else:

1. take an exclusive ``flock`` on the set's lock file (``data/labelling/<set>.lock``): every writer, in any
   thread or process, waits for the one before it;
2. read the file again (another tab, person or process may have saved since the page loaded);
3. check the row's ``labelling.revision`` against the revision the page loaded (0 for a question not labelled
   yet): a mismatch is a ``SaveConflict`` (someone else saved it; nothing is overwritten, the page keeps the labels
   on screen and can show theirs);
4. replace that row's line, or append it, keeping every other line byte for byte;
5. write the whole file to a temporary file beside it, fsync, and rename it over the old one
   (``common.files.write_bytes_atomic``): a crash leaves the old file or the new one, never a mix.

A file that no longer parses (edited by hand into invalid JSON, a duplicate id) is never written: the save fails
with the file and line named, and nothing is lost on either side. Rows written by hand (no ``labelling`` key) are
left alone: a question that is already one of them is refused, not relabelled over its ``articles``/``evidence``.

A row, as written::

    {"id": "lab-…", "query": "…", "language": "zh", "style": "labelled", "split": "val",
     "passages": [{"chunk": "<id>", "source": "<document>", "text": "<the chunk's text>"}],  # or "no_relevant_chunk": true
     "note": "…", "unplaced_passages": [...],  # both only when there are some
     "labelling": {"at": "<UTC>", "seconds": 12.5, "pool": 14, "seen": 11, "pool_depth": 5, "revision": 2}}

A question keeps the split it was first saved in, even if ``labelling.split_seed`` or ``val_fraction`` change later:
a test question must never become a val question that chooses knobs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from stages.lib.common.errors import UserError
from stages.lib.common.files import exclusive_lock, write_bytes_atomic
from stages.lib.documents.chunking import Chunk
from stages.lib.documents.text import detect_language
from stages.lib.labelling.existing_labels import place_labels
from stages.lib.labelling.jsonl_lines import json_line
from stages.lib.labelling.question_identity import question_id, question_split
from stages.lib.labelling.question_queue import utc_now
from stages.lib.labelling.set_files import SetFiles
from stages.lib.questions.qa_dataset import normalize_query
from stages.lib.retrieval.passage_labels import PassageLocator

STYLE = "labelled"
MAX_NOTE = 2000


class InvalidSetFile(UserError):
    """The golden file does not parse; the message names the file and line. Nothing was written."""


class SaveConflict(UserError):
    """The row changed since the page loaded it; ``theirs`` is the row as it is now (None: it was removed)."""

    def __init__(self, message: str, theirs: dict | None) -> None:
        super().__init__(message)
        self.theirs = theirs


class HandLabelled(UserError):
    """The question is already in the file as a row written by hand: the labelling view does not overwrite it."""


@dataclass(frozen=True)
class StoredRow:
    row: dict
    line: int  # counted from 1
    start: int  # byte offset of the line
    end: int  # byte offset just after its line break

    @property
    def by_hand(self) -> bool:
        return not isinstance(self.row.get("labelling"), dict)

    @property
    def revision(self) -> int:
        revision = self.row.get("labelling", {}).get("revision") if not self.by_hand else None
        return revision if isinstance(revision, int) and not isinstance(revision, bool) else 0


@dataclass(frozen=True)
class Judgement:
    """What a person decided for one question, with what the page measured."""

    query: str
    relevant: tuple[Chunk, ...]  # the chunks marked relevant (empty with no_relevant_chunk)
    no_relevant_chunk: bool
    note: str
    seconds: float  # visible time from the question being shown to the save
    pool: int  # chunks shown
    seen: int  # of those, looked at (half in view for half a second, or focused)
    pool_depth: int


def read_rows(path: Path) -> list[StoredRow]:
    """The file's rows with their byte spans; ``InvalidSetFile`` names the first line that is not a row."""
    return _parse(path.read_bytes(), path) if path.is_file() else []


def find_row(rows: list[StoredRow], qid: str, query: str) -> StoredRow | None:
    """The row of question ``qid``, else a row with the same normalised text (e.g. written by hand under its own id)."""
    wanted = normalize_query(query)
    return next((r for r in rows if r.row.get("id") == qid), None) or next(
        (r for r in rows if isinstance(r.row.get("query"), str) and normalize_query(r.row["query"]) == wanted), None)


def save(files: SetFiles, judgement: Judgement, expected_revision: int, split_seed: int, val_fraction: float,
         locator: PassageLocator) -> StoredRow:
    """Upsert the question's row (see the module's steps); returns it as written, with its new revision. Passages of
    the row it replaces that no chunk of ``locator``'s corpus holds are kept aside in ``unplaced_passages``."""
    if not judgement.query.strip():
        raise UserError("The question is empty: there is nothing to save.")
    if judgement.no_relevant_chunk == bool(judgement.relevant):
        raise UserError("Mark at least one chunk relevant, or save the question as having no relevant chunk (key 0).")
    qid = question_id(judgement.query)
    with exclusive_lock(files.lock):
        data = files.golden.read_bytes() if files.golden.is_file() else b""
        current = find_row(_parse(data, files.golden), qid, judgement.query)
        if current is not None and current.by_hand:
            raise HandLabelled(f"{files.golden}, line {current.line}: this question is already there, labelled by hand "
                               f"(id {current.row.get('id')!r}). The labelling view does not overwrite hand-written rows: "
                               "edit that line, or label the question in another set.")
        revision = current.revision if current else 0
        if revision != expected_revision:
            by = current.row["labelling"].get("at", "?") if current else "?"
            raise SaveConflict(f"Another tab or person saved this question in {files.golden} since this page loaded it "
                               f"(it is at revision {revision}, saved {by}; this page had revision {expected_revision}). "
                               "Nothing was overwritten and your labels are still on the page: load theirs to compare, then "
                               "mark again and save.", current.row if current else None)
        split = current.row.get("split") if current and current.row.get("split") in ("val", "test") else \
            question_split(judgement.query, split_seed, val_fraction)
        earlier = place_labels(current.row if current else None, locator)
        kept = earlier.kept + earlier.unplaced
        row = _row(qid, judgement, split, revision + 1, kept)
        line = json_line(row)
        if current is not None:
            tail = data[current.end:]
            ending = data[current.start:current.end][len(data[current.start:current.end].rstrip(b"\r\n")):]
            updated = data[:current.start] + line.rstrip(b"\n") + (ending or b"\n") + tail
            start, number = current.start, current.line
        else:
            if data and not data.endswith(b"\n"):
                data += b"\n"
            updated, start, number = data + line, len(data), data.count(b"\n") + 1
        write_bytes_atomic(files.golden, updated)
    return StoredRow(row, number, start, start + len(line))


def _row(qid: str, judgement: Judgement, split: str, revision: int, unplaced: list[dict]) -> dict:
    row: dict = {"id": qid, "query": judgement.query.strip(), "language": detect_language(judgement.query), "style": STYLE,
                 "split": split}
    if judgement.no_relevant_chunk:
        row["no_relevant_chunk"] = True
    else:
        ordered = sorted(judgement.relevant, key=lambda c: (c.source, c.position))
        row["passages"] = [{"chunk": c.id, "source": c.source, "text": c.text} for c in ordered]
    if judgement.note.strip():
        row["note"] = judgement.note.strip()[:MAX_NOTE]
    if unplaced:
        row["unplaced_passages"] = unplaced
    row["labelling"] = {"at": utc_now(), "seconds": round(judgement.seconds, 1), "pool": judgement.pool,
                        "seen": judgement.seen, "pool_depth": judgement.pool_depth, "revision": revision}
    return row


def _parse(data: bytes, path: Path) -> list[StoredRow]:
    rows: list[StoredRow] = []
    ids: dict[str, int] = {}
    start, number = 0, 0
    while start < len(data):
        newline = data.find(b"\n", start)
        end = len(data) if newline < 0 else newline + 1
        number += 1
        raw = data[start:end]
        if raw.strip():
            row = _row_of(raw, path, number)
            if row["id"] in ids:
                raise _invalid(path, number, f"id {row['id']!r} is used twice (line {ids[row['id']]} too)")
            ids[row["id"]] = number
            rows.append(StoredRow(row, number, start, end))
        start = end
    return rows


def _row_of(raw: bytes, path: Path, number: int) -> dict:
    try:
        row = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise _invalid(path, number, f"not UTF-8 text (byte {error.start} of the line)") from None
    except json.JSONDecodeError as error:
        raise _invalid(path, number, f"not valid JSON ({error.msg}, column {error.colno})") from None
    if not isinstance(row, dict) or not isinstance(row.get("id"), str) or not row["id"].strip():
        raise _invalid(path, number, "not a question row (a JSON object with an \"id\")")
    return row


def _invalid(path: Path, line: int, what: str) -> InvalidSetFile:
    return InvalidSetFile(f"{path}, line {line}: {what}. The file was edited and no longer parses, so nothing was saved "
                          "and the file is left as it is. Fix that line (or undo the edit), then save again: your labels "
                          "are still on the page.")
