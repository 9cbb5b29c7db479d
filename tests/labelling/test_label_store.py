"""The label store: one row upserted per save, under a lock, atomically; nothing else in the file touched, nothing
labelled ever lost (stale revisions, concurrent writers in threads and processes, a crash mid-write, a file edited
into invalid JSON)."""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
from pathlib import Path

import pytest

from stages.lib.common.errors import UserError
from stages.lib.documents.chunking import Chunk
from stages.lib.labelling.label_store import HandLabelled, InvalidSetFile, Judgement, SaveConflict, read_rows, save
from stages.lib.labelling.question_identity import question_id, question_split
from stages.lib.labelling.set_files import BadSetName, set_files
from stages.lib.retrieval.golden import load_golden, resolve
from stages.lib.retrieval.passage_labels import PassageLocator

CHUNKS = [
    Chunk("c0", "第一条 为了规范契税的征收管理，制定本法。", "契税法.pdf", "train", "zh", "第一章", 0, 20),
    Chunk("c1", "第三条 契税税率为百分之三至百分之五。", "契税法.pdf", "test", "zh", "第一章", 1, 18),
    Chunk("c2", "第八条 国歌不得用于商业广告。", "国歌法.pdf", "val", "zh", "", 0, 14),
]
BY_ID = {c.id: c for c in CHUNKS}
LOCATOR = PassageLocator(CHUNKS)
SEED, VAL_FRACTION = 42, 0.5
# Rows written by hand, as people write JSONL: odd spacing, a CRLF line ending, a blank line, non-ASCII unescaped.
HAND = (b'{"id": "h-1",  "query": "\xe5\xa5\x91\xe7\xa8\x8e\xe6\x98\xaf\xe4\xbb\x80\xe4\xb9\x88", "split": "val", '
        b'"articles": ["\xe7\xac\xac\xe4\xb8\x80\xe6\x9d\xa1"]}\r\n'
        b'\n'
        b'{"id":"h-2","query":"Is an anthem an ad?","split":"test","evidence":["\\u56fd\\u6b4c"]}\n')


def judgement(query: str, relevant=("c1",), seconds: float = 12.0, none: bool = False, note: str = "") -> Judgement:
    return Judgement(query, tuple(BY_ID[c] for c in relevant) if not none else (), none, note, seconds, 7, 5, 5)


def store(tmp_path: Path, name: str = "mine"):
    return set_files(name, tmp_path)


def test_a_save_appends_one_row_in_the_golden_format_and_keeps_every_other_line_byte_for_byte(tmp_path):
    files = store(tmp_path)
    files.golden.parent.mkdir(parents=True)
    files.golden.write_bytes(HAND)
    written = save(files, judgement("契税的税率是多少", note="第三条"), 0, SEED, VAL_FRACTION, LOCATOR)
    data = files.golden.read_bytes()
    assert data.startswith(HAND) and data.count(b"\n") == HAND.count(b"\n") + 1 and written.line == 4
    row = json.loads(data[len(HAND):])
    qid = question_id("契税的税率是多少")
    assert row["id"] == qid and row["query"] == "契税的税率是多少" and row["language"] == "zh" and row["style"] == "labelled"
    assert row["split"] == question_split("契税的税率是多少", SEED, VAL_FRACTION)
    assert row["passages"] == [{"chunk": "c1", "source": "契税法.pdf", "text": CHUNKS[1].text}] and row["note"] == "第三条"
    labelling = row["labelling"]
    assert labelling["seconds"] == 12.0 and labelling["pool"] == 7 and labelling["seen"] == 5 and labelling["pool_depth"] == 5
    assert labelling["revision"] == 1 and labelling["at"].endswith("Z") and "no_relevant_chunk" not in row
    # The pipeline's golden loader reads the file, hand rows and labelled row alike, and resolves the passage.
    golden = load_golden(files.golden)
    assert [q.id for q in golden.questions] == ["h-1", "h-2", qid]
    assert resolve(golden, CHUNKS)[qid] == ["c1"]


def test_a_relabel_replaces_its_own_line_in_place_and_keeps_its_split(tmp_path):
    files = store(tmp_path)
    save(files, judgement("国歌能用在广告里吗", ("c2",)), 0, SEED, VAL_FRACTION, LOCATOR)
    save(files, judgement("契税的税率是多少"), 0, SEED, VAL_FRACTION, LOCATOR)
    before = files.golden.read_bytes().split(b"\n")
    first_split = json.loads(before[0])["split"]
    # The split rule changes in params.yaml: a question labelled before keeps its split.
    relabelled = save(files, judgement("国歌能用在广告里吗", (), none=True), 1, SEED + 1, 0.999 if first_split == "test" else 0.001,
                      LOCATOR)
    after = files.golden.read_bytes().split(b"\n")
    assert relabelled.line == 1 and after[1:] == before[1:]  # the other row untouched
    row = json.loads(after[0])
    assert row["no_relevant_chunk"] is True and "passages" not in row and row["labelling"]["revision"] == 2
    assert row["split"] == first_split
    golden = load_golden(files.golden)
    assert [q.id for q in golden.scored()] == [question_id("契税的税率是多少")]  # kept, not scored


def test_a_stale_revision_is_a_conflict_and_nothing_is_overwritten(tmp_path):
    files = store(tmp_path)
    save(files, judgement("契税的税率是多少", ("c1",)), 0, SEED, VAL_FRACTION, LOCATOR)
    theirs = files.golden.read_bytes()
    with pytest.raises(SaveConflict) as conflict:  # a second tab loaded the question before the first saved it
        save(files, judgement("契税的税率是多少", ("c0",)), 0, SEED, VAL_FRACTION, LOCATOR)
    assert "Another tab or person saved this question" in str(conflict.value) and "Nothing was overwritten" in str(conflict.value)
    assert conflict.value.theirs["passages"][0]["chunk"] == "c1" and conflict.value.theirs["labelling"]["revision"] == 1
    assert files.golden.read_bytes() == theirs
    save(files, judgement("契税的税率是多少", ("c0", "c1")), 1, SEED, VAL_FRACTION, LOCATOR)  # after loading theirs
    assert [p["chunk"] for p in read_rows(files.golden)[0].row["passages"]] == ["c0", "c1"]


def _save_many(root: str, prefix: str, count: int) -> None:
    files = set_files("shared", Path(root))
    for i in range(count):
        save(files, judgement(f"{prefix} 问题 {i}", ("c1",), seconds=i), 0, SEED, VAL_FRACTION, LOCATOR)


def test_concurrent_writers_in_threads_all_get_saved(tmp_path):
    threads = [threading.Thread(target=_save_many, args=(str(tmp_path), f"thread{t}", 15)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rows = read_rows(set_files("shared", tmp_path).golden)
    assert sorted(r.row["query"] for r in rows) == sorted(f"thread{t} 问题 {i}" for t in range(4) for i in range(15))


def test_concurrent_writers_in_two_processes_all_get_saved(tmp_path):
    context = multiprocessing.get_context("spawn")  # two interpreters, as two UI servers on one project would be
    processes = [context.Process(target=_save_many, args=(str(tmp_path), f"process{p}", 20)) for p in range(2)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
        assert process.exitcode == 0
    rows = read_rows(set_files("shared", tmp_path).golden)
    assert sorted(r.row["query"] for r in rows) == sorted(f"process{p} 问题 {i}" for p in range(2) for i in range(20))
    assert len(load_golden(set_files("shared", tmp_path).golden).questions) == 40


def test_a_crash_while_writing_leaves_the_previous_file_as_it_was(tmp_path, monkeypatch):
    files = store(tmp_path)
    save(files, judgement("契税的税率是多少"), 0, SEED, VAL_FRACTION, LOCATOR)
    before = files.golden.read_bytes()

    def power_cut(_fd):
        raise OSError("disk gone mid-write")

    monkeypatch.setattr(os, "fsync", power_cut)
    with pytest.raises(OSError, match="disk gone"):
        save(files, judgement("国歌能用在广告里吗", ("c2",)), 0, SEED, VAL_FRACTION, LOCATOR)
    monkeypatch.undo()
    assert files.golden.read_bytes() == before
    assert sorted(p.name for p in files.golden.parent.iterdir()) == ["mine.jsonl"]  # no temporary file left
    save(files, judgement("国歌能用在广告里吗", ("c2",)), 0, SEED, VAL_FRACTION, LOCATOR)  # the lock was let go
    assert len(read_rows(files.golden)) == 2


@pytest.mark.parametrize(("line", "words"), [
    (b'{"id": "x", "query": "broken"\n', "line 2: not valid JSON"),
    (b'["not", "a", "row"]\n', "line 2: not a question row"),
    (b'{"id": "h-1", "query": "again"}\n', "line 2: id 'h-1' is used twice (line 1 too)"),
    (b'{"id": "x", "query": "\xff"}\n', "line 2: not UTF-8 text"),
])
def test_a_file_edited_into_something_unreadable_is_never_written(tmp_path, line, words):
    files = store(tmp_path)
    files.golden.parent.mkdir(parents=True)
    content = b'{"id": "h-1", "query": "q", "split": "val", "articles": ["x"]}\n' + line
    files.golden.write_bytes(content)
    with pytest.raises(InvalidSetFile) as error:
        save(files, judgement("契税的税率是多少"), 0, SEED, VAL_FRACTION, LOCATOR)
    assert f"{files.golden}, {words}" in str(error.value) and "nothing was saved" in str(error.value)
    assert files.golden.read_bytes() == content


def test_a_question_written_by_hand_is_not_relabelled_over(tmp_path):
    files = store(tmp_path)
    files.golden.parent.mkdir(parents=True)
    files.golden.write_bytes(HAND)
    with pytest.raises(HandLabelled, match=r"line 3: this question is already there, labelled by hand \(id 'h-2'\)"):
        save(files, judgement("is an anthem an AD?", ("c2",)), 0, SEED, VAL_FRACTION, LOCATOR)
    assert files.golden.read_bytes() == HAND


def test_a_label_whose_chunk_is_gone_is_kept_aside_never_dropped(tmp_path):
    files = store(tmp_path)
    save(files, judgement("契税的税率是多少", ("c0", "c1")), 0, SEED, VAL_FRACTION, LOCATOR)
    # The document changed: chunk c0's text is no longer in the corpus.
    changed = [c for c in CHUNKS if c.id != "c0"]
    saved = save(files, judgement("契税的税率是多少", ("c1",)), 1, SEED, VAL_FRACTION, PassageLocator(changed))
    assert [p["chunk"] for p in saved.row["passages"]] == ["c1"]
    assert saved.row["unplaced_passages"] == [{"chunk": "c0", "source": "契税法.pdf", "text": CHUNKS[0].text}]
    again = save(files, judgement("契税的税率是多少", ("c1",)), 2, SEED, VAL_FRACTION, PassageLocator(changed))
    assert again.row["unplaced_passages"] == saved.row["unplaced_passages"]  # carried, not doubled, not lost
    assert resolve(load_golden(files.golden), changed)[saved.row["id"]] == ["c1"]  # extra keys are ignored


def test_line_breaking_characters_stay_inside_their_row(tmp_path):
    files = store(tmp_path)
    query = "copied from a web page\u2028second line\u0085third"
    save(files, judgement(query), 0, SEED, VAL_FRACTION, LOCATOR)
    assert files.golden.read_bytes().count(b"\n") == 1
    assert load_golden(files.golden).questions[0].query == query  # golden.py splits lines with str.splitlines


def test_what_cannot_be_a_row_is_refused(tmp_path):
    files = store(tmp_path)
    with pytest.raises(UserError, match="Mark at least one chunk relevant"):
        save(files, judgement("契税的税率是多少", ()), 0, SEED, VAL_FRACTION, LOCATOR)
    with pytest.raises(UserError, match="question is empty"):
        save(files, judgement("  "), 0, SEED, VAL_FRACTION, LOCATOR)
    assert not files.golden.exists()


@pytest.mark.parametrize("name", ["", "  ", "..", "../evil", "a/b", "a\\b", ".hidden", "x.jsonl", "*", "a b", "-x", "s" * 65])
def test_unsafe_set_names_are_refused(tmp_path, name):
    with pytest.raises(BadSetName) as error:
        set_files(name, tmp_path)
    assert "letters" in str(error.value) or "at most" in str(error.value)


@pytest.mark.parametrize("name", ["labelled", "my_set-2", "证券法问题", "Ärzte"])
def test_safe_set_names_are_file_stems_under_data_golden(tmp_path, name):
    files = set_files(name, tmp_path)
    assert files.golden == tmp_path / "data/golden" / f"{name}.jsonl" and files.lock.parent == tmp_path / "data/labelling"
