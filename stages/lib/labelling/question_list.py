"""A list of questions to label, read from an uploaded file (a query log, a spreadsheet saved as CSV, a JSONL dump).

* ``.txt``: one question per line.
* ``.csv`` / ``.tsv``: the column headed ``question``, ``query``, ``text`` or ``问题`` (any case), else the first
  column (then every row is a question, the first one too). A question holding the delimiter must be quoted:
  a row with more fields than the others stops the import, naming its line, rather than cut a question in two.
* ``.jsonl``: one object per line, the question under ``query``, ``question`` or ``text``.

Bytes are decoded strictly: UTF-8 (with or without a byte-order mark), UTF-16 with its byte-order mark (what
Excel's "Unicode text" writes), else GB18030 (a superset of GBK and GB2312, what many Chinese editors save). Blank
lines are ignored. What cannot be a question list stops the import with one message naming the file and the
line or byte offset: a binary file, bytes no encoding explains, invalid JSON, a missing column or key, a file with
no question, a file above ``MAX_FILE_BYTES``. What can be kept is kept, with a warning naming the line: a question
asked twice (the same after ``normalize_query``) is kept once; a question longer than the models read is kept
whole, and the models read only its start.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePath

from stages.lib.common.errors import UserError
from stages.lib.questions.qa_dataset import normalize_query

MAX_FILE_BYTES = 2 * 1024 * 1024  # some 50,000 questions: more than anyone labels; a bigger upload is a wrong file
SUFFIXES = (".txt", ".csv", ".tsv", ".jsonl")
COLUMN_NAMES = ("question", "query", "text", "问题")
JSON_KEYS = ("query", "question", "text")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
# C0 controls other than tab, line breaks and form feed: text files do not hold them, binary ones do.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


class BadQuestionList(UserError):
    """A file that cannot be read as a list of questions; the message names the file, the line and the fix."""


class QuestionListTooLarge(BadQuestionList):
    """A file above ``MAX_FILE_BYTES``: refused before it is read."""


@dataclass(frozen=True)
class ImportedQuestion:
    text: str
    line: int  # where it starts in its file, counted from 1


@dataclass(frozen=True)
class LongQuestion:
    line: int
    chars: int
    tokens: int  # with the query prompt and special tokens
    chars_read: int
    max_seq_length: int


@dataclass
class QuestionList:
    file: str
    encoding: str
    questions: list[ImportedQuestion] = field(default_factory=list)
    duplicates: list[tuple[int, int]] = field(default_factory=list)  # (line, the line it repeats)
    long: list[LongQuestion] = field(default_factory=list)
    column: str | None = None  # the CSV/TSV column read, as its header names it

    def warnings(self) -> list[str]:
        out = []
        if self.duplicates:
            shown = "; ".join(f"line {line} repeats line {first}" for line, first in self.duplicates[:20])
            more = f"; and {len(self.duplicates) - 20} more" if len(self.duplicates) > 20 else ""
            out.append(f"{self.file}: {len(self.duplicates)} duplicate question(s), kept once (the same text once spaces, "
                       f"case and a final full stop are ignored): {shown}{more}.")
        for long in self.long:
            out.append(f"{self.file}, line {long.line}: the question is {long.chars:,} characters ({long.tokens:,} tokens with "
                       f"the query prompt); the models read at most {long.max_seq_length} tokens (model.max_seq_length), so "
                       f"they read only its first {long.chars_read:,} characters. It is kept whole; shorten it if its end "
                       "matters.")
        return out


def check_size(size: int, file: str) -> None:
    if size > MAX_FILE_BYTES:
        raise QuestionListTooLarge(f"{file} is {size:,} bytes; a question list may be at most {MAX_FILE_BYTES:,} bytes "
                              f"({MAX_FILE_BYTES // 1024 // 1024} MiB). Split it, or import only the questions to label.")


def read_question_list(data: bytes, file: str, window: Callable[[str], object] | None = None) -> QuestionList:
    """The questions of ``data`` (the bytes of the file named ``file``), in file order, duplicates dropped.

    ``window`` (``Retrievers.window``) tells how much of a question the models read; without it, length is not checked.
    """
    suffix = PurePath(file).suffix.lower()
    if suffix not in SUFFIXES:
        raise BadQuestionList(f"{file}: a question list must be {', '.join(SUFFIXES)} (one question per line, a CSV/TSV "
                              f"column named {'/'.join(COLUMN_NAMES)}, or JSONL with a key {'/'.join(JSON_KEYS)}); save it as "
                              "one of these.")
    check_size(len(data), file)
    text, encoding = decode(data, file)
    found = QuestionList(file, encoding)
    if suffix == ".jsonl":
        rows = _jsonl(text, file)
    elif suffix == ".txt":
        rows = [(number, line) for number, line in enumerate(_LINE_BREAK.split(text), start=1)]
    else:
        rows, found.column = _table(text, file, "\t" if suffix == ".tsv" else ",")
    seen: dict[str, int] = {}
    for line, question in rows:
        question = question.strip()
        if not question:
            continue  # blank lines and empty cells
        key = normalize_query(question)
        if key in seen:
            found.duplicates.append((line, seen[key]))
            continue
        seen[key] = line
        found.questions.append(ImportedQuestion(question, line))
        if window is not None:
            read = window(question)
            if read.cut:
                found.long.append(LongQuestion(line, len(question), read.tokens, len(read.text), read.max_seq_length))
    if not found.questions:
        where = f"in its column {found.column!r}" if found.column else ""
        raise BadQuestionList(f"{file} holds no questions{' ' + where if where else ''} (every line is blank). Put one "
                              "question per line, or check that you picked the right file.")
    return found


def decode(data: bytes, file: str) -> tuple[str, str]:
    """The text and the encoding that read it; a binary or undecodable file stops with the byte offset named."""
    if data.startswith(codecs.BOM_UTF8):
        text, encoding = _strict(data[len(codecs.BOM_UTF8):], "utf-8", file, len(codecs.BOM_UTF8), "UTF-8 (it starts with "
                                 "a UTF-8 byte-order mark)"), "utf-8-sig"
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        text, encoding = _strict(data, "utf-16", file, 0, "UTF-16 (it starts with a UTF-16 byte-order mark)"), "utf-16"
    else:
        nul = data.find(b"\x00")
        if nul >= 0:
            raise BadQuestionList(f"{file} is a binary file, not text: byte {nul:,} is a NUL byte (0x00). A spreadsheet "
                                  "(.xlsx) must be saved as CSV (UTF-8) first; a text file in UTF-16 needs its byte-order "
                                  "mark (or save it as UTF-8).")
        try:
            text, encoding = data.decode("utf-8"), "utf-8"
        except UnicodeDecodeError as utf8_error:
            try:
                text, encoding = data.decode("gb18030"), "gb18030"
            except UnicodeDecodeError as gb_error:
                raise BadQuestionList(
                    f"{file} cannot be read as text: it is neither UTF-8 (byte {utf8_error.start:,}, 0x{data[utf8_error.start]:02x}, "
                    f"is invalid there) nor GB18030/GBK (byte {gb_error.start:,}, 0x{data[gb_error.start]:02x}). Save it as "
                    "UTF-8 (e.g. `iconv -f BIG5 -t UTF-8 questions.txt -o fixed.txt`), or pick the right file.") from None
    control = _CONTROL.search(text)
    if control:
        offset = len(text[:control.start()].encode(encoding.replace("-sig", ""))) + (3 if encoding == "utf-8-sig" else 0)
        line = len(_LINE_BREAK.findall(text[:control.start()])) + 1
        raise BadQuestionList(f"{file} looks like a binary file, not text: line {line} holds the control character "
                              f"U+{ord(control.group()):04X} (byte {offset:,}). Export the questions as plain text, CSV or "
                              "JSONL.")
    return text, encoding


def _strict(data: bytes, encoding: str, file: str, skipped: int, what: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as error:
        raise BadQuestionList(f"{file} cannot be read as {what}: byte {error.start + skipped:,} is invalid "
                              f"({error.reason}). Save it again as UTF-8.") from None


def _jsonl(text: str, file: str) -> list[tuple[int, str]]:
    rows = []
    for number, line in enumerate(_LINE_BREAK.split(text), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise BadQuestionList(f"{file}, line {number}: not valid JSON ({error.msg}, column {error.colno}). Each line "
                                  f"must be one object such as {{\"query\": \"...\"}}.") from None
        if not isinstance(row, dict):
            raise BadQuestionList(f"{file}, line {number}: a {type(row).__name__}, not an object. Each line must be one "
                                  f"object such as {{\"query\": \"...\"}}.")
        key = next((k for k in JSON_KEYS if isinstance(row.get(k), str) and row[k].strip()), None)
        if key is None:
            raise BadQuestionList(f"{file}, line {number}: no question: the object has none of the keys "
                                  f"{', '.join(JSON_KEYS)} with a text value (its keys: {', '.join(map(str, row)) or 'none'}).")
        rows.append((number, row[key]))
    return rows


def _table(text: str, file: str, delimiter: str) -> tuple[list[tuple[int, str]], str | None]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    name = "tab" if delimiter == "\t" else repr(delimiter)
    records: list[tuple[int, list[str]]] = []
    start = 1
    try:
        for record in reader:
            if any(cell.strip() for cell in record):
                records.append((start, record))
            start = reader.line_num + 1
    except csv.Error as error:
        raise BadQuestionList(f"{file}, line {reader.line_num}: cannot be read as {name}-separated values ({error}). Check "
                              "the quotes on that line.") from None
    if not records:
        return [], None
    header_line, header = records[0]
    names = [cell.strip().lower() for cell in header]
    column = next((names.index(wanted) for wanted in COLUMN_NAMES if wanted in names), None)
    if column is not None:
        # Under a header, a row may end early (exporters drop empty trailing cells), never run over.
        body, heading = records[1:], header[column].strip()
        odd = next(((line, record) for line, record in body if len(record) > len(header)), None)
        against = f"the header (line {header_line}) has {len(header)}"
    else:
        # No header: every row alike, or a question cut at a delimiter would go unnoticed (in the first row too).
        body, heading = records, None
        widths = [len(record) for _, record in body]
        usual = max(set(widths), key=widths.count)
        odd = next(((line, record) for line, record in body if len(record) != usual), None)
        against = f"most rows have {usual}"
    if odd is not None:
        raise BadQuestionList(f"{file}, line {odd[0]}: {len(odd[1])} field(s) where {against}. A question holding a "
                              f"{name} must be in double quotes (\"...\"), or save the questions as .txt, one per line.")
    return [(line, record[column or 0] if len(record) > (column or 0) else "") for line, record in body], heading
