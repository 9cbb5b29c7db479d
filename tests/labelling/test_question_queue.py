"""The queue of imported questions: kept in data/labelling/, each question once, lines already there untouched."""

from __future__ import annotations

import pytest

from stages.lib.labelling.question_identity import question_id
from stages.lib.labelling.question_queue import BadQueueFile, add_to_queue, read_queue
from stages.lib.labelling.set_files import set_files


def test_questions_are_queued_once_in_order_outside_data_golden(tmp_path):
    files = set_files("mine", tmp_path)
    first = add_to_queue(files, [("契税的税率是多少", "q.txt, line 1"), ("国歌能用在广告里吗", "q.txt, line 2")])
    assert [q.query for q in first.added] == ["契税的税率是多少", "国歌能用在广告里吗"] and not first.already
    assert files.queue == tmp_path / "data/labelling/mine.queue.jsonl" and not (tmp_path / "data/golden").exists()
    before = files.queue.read_bytes()
    again = add_to_queue(files, [("契税的税率是多少。", "other.csv, line 9"), ("买车要交哪个税", "typed")])
    assert [q.query for q in again.added] == ["买车要交哪个税"] and [q.origin for q in again.already] == ["q.txt, line 1"]
    assert files.queue.read_bytes().startswith(before)  # earlier lines byte for byte
    queued = read_queue(files.queue)
    assert [q.id for q in queued] == [question_id(t) for t in ("契税的税率是多少", "国歌能用在广告里吗", "买车要交哪个税")]
    assert queued[2].origin == "typed" and queued[0].added.endswith("Z")


def test_a_queue_edited_into_garbage_names_its_line(tmp_path):
    files = set_files("mine", tmp_path)
    add_to_queue(files, [("契税的税率是多少", "typed")])
    with files.queue.open("a", encoding="utf-8") as handle:
        handle.write('{"id": "lab-000000000000", "query": "not its id"}\n')
    with pytest.raises(BadQueueFile, match=r"mine.queue.jsonl, line 2: not a queued question.*its id is not its question's"):
        read_queue(files.queue)
    files.queue.write_text("{broken\n", encoding="utf-8")
    with pytest.raises(BadQueueFile, match="line 1"):
        add_to_queue(files, [("x", "typed")])
    assert files.queue.read_text(encoding="utf-8") == "{broken\n"  # not rewritten
