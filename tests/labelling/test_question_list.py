"""Question lists as people have them: text, CSV/TSV and JSONL files in UTF-8, UTF-16 and GBK; and every bad file,
refused or warned about with the file and the line (or byte) named."""

from __future__ import annotations

import codecs
import csv
import io
import json

import pytest

from stages.lib.labelling.question_list import (
    MAX_FILE_BYTES,
    BadQuestionList,
    QuestionListTooLarge,
    read_question_list,
)
from stages.lib.retrieval.one_query import Window

QUESTIONS = ["公司不给交社保，我能辞职要补偿吗？", "Can my broker lend my shares?", "上市公司高管什么时候可以卖股票"]


def texts(found) -> list[str]:
    return [q.text for q in found.questions]


@pytest.mark.parametrize(("encoding", "prefix", "expected"), [
    ("utf-8", b"", "utf-8"),
    ("utf-8", codecs.BOM_UTF8, "utf-8-sig"),
    ("utf-16-le", codecs.BOM_UTF16_LE, "utf-16"),
    ("utf-16-be", codecs.BOM_UTF16_BE, "utf-16"),
])
def test_a_text_file_in_each_encoding_reads_the_same_questions(encoding, prefix, expected):
    data = prefix + "\r\n".join(QUESTIONS).encode(encoding)
    found = read_question_list(data, "questions.txt")
    assert texts(found) == QUESTIONS and found.encoding == expected
    assert [q.line for q in found.questions] == [1, 2, 3]


def test_a_gbk_file_from_a_chinese_editor_is_read_as_gb18030():
    chinese = [q for q in QUESTIONS if q.isascii() is False]
    data = "\n".join(chinese).encode("gbk")
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")  # the case that matters: not valid UTF-8
    found = read_question_list(data, "问题.txt")
    assert texts(found) == chinese and found.encoding == "gb18030"


def test_blank_lines_are_ignored_and_lines_are_counted_as_an_editor_counts_them():
    found = read_question_list("\n\n  第一个问题  \n\n\t\n第二个问题\n".encode(), "q.txt")
    assert [(q.text, q.line) for q in found.questions] == [("第一个问题", 3), ("第二个问题", 6)]


@pytest.mark.parametrize("header", ["question", "Query", "TEXT", "问题"])
def test_a_csv_column_is_found_by_its_header(header):
    rows = [["id", header, "note"], ["1", QUESTIONS[0], "a"], ["2", '"quoted", with a comma', "b"]]
    written = io.StringIO()
    csv.writer(written).writerows(rows)  # as a spreadsheet saves it: quotes doubled, cells with a comma quoted
    found = read_question_list(written.getvalue().encode(), "log.csv")
    assert texts(found) == [QUESTIONS[0], '"quoted", with a comma'] and found.column == header
    assert [q.line for q in found.questions] == [2, 3]


def test_without_a_known_header_the_first_column_is_read_and_every_row_is_a_question():
    found = read_question_list("\t".join(["买车要交哪个税", "x"]).encode() + b"\n" + "\t".join(["契税税率", "y"]).encode(), "q.tsv")
    assert texts(found) == ["买车要交哪个税", "契税税率"] and found.column is None


def test_a_quoted_cell_over_two_lines_is_one_question_counted_from_its_first_line():
    found = read_question_list(b'question\n"first part\nsecond part"\nnext one\n', "q.csv")
    assert [(q.text, q.line) for q in found.questions] == [("first part\nsecond part", 2), ("next one", 4)]


def test_an_unquoted_comma_that_would_cut_a_question_stops_the_import_naming_the_line():
    with pytest.raises(BadQuestionList) as error:
        read_question_list(b"If I quit do I get paid\nMy boss, can he fire me\nWhat is a contract\n", "q.csv")
    message = str(error.value)
    assert "q.csv, line 2" in message and "double quotes" in message
    with pytest.raises(BadQuestionList, match=r"q.csv, line 3: 3 field\(s\) where the header \(line 1\) has 2"):
        read_question_list(b"question,source\nfine,log\nnot, fine,log\n", "q.csv")


def test_jsonl_reads_query_question_or_text():
    rows = [{"query": QUESTIONS[0]}, {"question": QUESTIONS[1], "id": 7}, {"text": QUESTIONS[2]}]
    found = read_question_list("\n".join(json.dumps(r, ensure_ascii=False) for r in rows).encode(), "dump.jsonl")
    assert texts(found) == QUESTIONS


@pytest.mark.parametrize(("content", "words"), [
    (b'{"query": "ok"}\n{"query": "broken"\n', "dump.jsonl, line 2: not valid JSON"),
    (b'{"query": "ok"}\n["a list"]\n', "dump.jsonl, line 2: a list, not an object"),
    (b'{"query": "ok"}\n\n{"title": "no question"}\n', "dump.jsonl, line 3: no question: the object has none of the keys"),
    (b'{"query": ""}\n', "dump.jsonl, line 1: no question"),
])
def test_bad_jsonl_names_the_line(content, words):
    with pytest.raises(BadQuestionList) as error:
        read_question_list(content, "dump.jsonl")
    assert words in str(error.value)


def test_duplicates_are_kept_once_and_their_lines_listed():
    data = "契税的税率是多少\n契税的税率是多少。\n别的问题\n  契税的税率  是多少 \nCan I?\ncan i?\n".encode()
    found = read_question_list(data, "q.txt")
    assert texts(found) == ["契税的税率是多少", "别的问题", "契税的税率  是多少", "Can I?"]
    assert found.duplicates == [(2, 1), (6, 5)]
    (warning,) = found.warnings()
    assert "q.txt: 2 duplicate question(s), kept once" in warning and "line 2 repeats line 1" in warning
    assert "line 6 repeats line 5" in warning


def test_a_question_longer_than_the_models_read_is_kept_whole_with_a_warning_naming_its_line():
    def window(text: str) -> Window:  # Retrievers.window's contract: one token per character here, 20 at most
        return Window(text[:18], len(text) + 2, 20)  # 2: the prompt and special tokens

    long = "证" * 50
    found = read_question_list(f"短问题\n{long}\n".encode(), "q.txt", window)
    assert texts(found) == ["短问题", long]
    (warning,) = found.warnings()
    assert warning.startswith("q.txt, line 2: the question is 50 characters (52 tokens with the query prompt)")
    assert "at most 20 tokens (model.max_seq_length)" in warning and "only its first 18 characters" in warning


@pytest.mark.parametrize(("content", "name", "words"), [
    (b"", "q.txt", "q.txt holds no questions"),
    (b"\n \n\t\n", "q.txt", "q.txt holds no questions"),
    (b"question\n\n", "q.csv", "in its column 'question'"),
    (b"PK\x03\x04\x14\x00\x06\x00" + b"\x00" * 20, "q.csv", "q.csv is a binary file, not text: byte 5 is a NUL byte"),
    ("Question\n".encode("utf-16-le"), "q.txt", "byte 1 is a NUL byte"),  # UTF-16 without its byte-order mark
    (b"ok\n\xff\xfe\xfd", "q.txt", "neither UTF-8 (byte 3, 0xff"),
    (codecs.BOM_UTF8 + b"ok\n\xff", "q.txt", "byte 6 is invalid"),
    (b"question one\nabc\x01def\n", "q.txt", "line 2 holds the control character U+0001 (byte 16)"),
    (b"questions", "q.xlsx", "a question list must be .txt, .csv, .tsv, .jsonl"),
])
def test_files_that_are_no_question_list_are_refused_with_the_place_named(content, name, words):
    with pytest.raises(BadQuestionList) as error:
        read_question_list(content, name)
    assert words in str(error.value), str(error.value)
    assert "Traceback" not in str(error.value)


def test_a_file_above_the_size_limit_is_refused_with_the_limit_named():
    with pytest.raises(QuestionListTooLarge) as error:
        read_question_list(b"q\n" * (MAX_FILE_BYTES // 2 + 1), "huge.txt")
    assert f"at most {MAX_FILE_BYTES:,} bytes" in str(error.value) and "huge.txt" in str(error.value)
