"""The labelling view's logic (``/label``): what each ``/api/label/*`` route answers, over ``stages.lib.labelling``.

A person picks or names a set, imports a question list (or types a question), and labels one question after
another: the page asks for the next question (``next``: one no other tab holds), gets its pool of chunks
(``pool``: every retriever's top ``labelling.pool_depth``, shuffled, the retriever hidden; earlier labels marked
again), marks the relevant chunks and saves (``save``: one row upserted into ``data/golden/<set>.jsonl`` under a
lock, refused on a stale revision). Every failure is a ``LabelError`` with an HTTP status and a message naming the
file, line or value and the fix; a conflict carries the row as it is now, so the page can show theirs while
keeping its own labels on screen.

The pool needs the search (both models and the corpus): without it every route that pools or saves answers 503
with the reason the search is down and the ``dvc repro`` stage that fixes it.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

from stages.lib.common.errors import UserError
from stages.lib.common.params import LabellingParams
from stages.lib.documents.chunking import Chunk
from stages.lib.documents.text import detect_language
from stages.lib.labelling.existing_labels import place_labels
from stages.lib.labelling.label_store import (
    MAX_NOTE,
    HandLabelled,
    InvalidSetFile,
    Judgement,
    SaveConflict,
    StoredRow,
    find_row,
    read_rows,
    save,
)
from stages.lib.labelling.pace import pace
from stages.lib.labelling.pool import pool_ids
from stages.lib.labelling.question_identity import question_id, question_split
from stages.lib.labelling.question_list import MAX_FILE_BYTES, BadQuestionList, QuestionListTooLarge, read_question_list
from stages.lib.labelling.question_queue import BadQueueFile, QueuedQuestion, add_to_queue, read_queue
from stages.lib.labelling.set_files import DEFAULT_SET, BadSetName, SetFiles, known_set_names, set_files
from stages.lib.labelling.tab_claims import TabClaims
from stages.lib.questions.qa_dataset import normalize_query
from stages.lib.retrieval.one_query import QUERY_ID, Retrievers
from stages.lib.retrieval.passage_labels import PassageLocator
from stages.lib.ui.highlight import question_terms, shared_segments
from stages.lib.ui.search_view import DEPTH

TAB = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_SECONDS = 24 * 3600  # a measured time above a day is a clock gone wrong, not a person's reading
MAX_LISTED = 5000  # questions listed in the page's queue (the counts cover all)


class LabelError(Exception):
    def __init__(self, status: int, message: str, stage: str | None = None, kind: str | None = None,
                 theirs: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.stage, self.kind, self.theirs = status, message, stage, kind, theirs


@dataclass
class LabelDesk:
    """Everything the labelling routes share: the params, the corpus and retrievers (None: no search), the claims."""

    params: LabellingParams
    chunks: dict[str, Chunk]
    retrievers: Retrievers | None
    search_lock: threading.Lock
    unavailable: tuple[str, str | None] | None = None  # why there is no search, and the stage that fixes it
    language: str = ""
    root: Path = Path()
    claims: TabClaims = field(default_factory=TabClaims)
    _locator: PassageLocator | None = None

    @property
    def locator(self) -> PassageLocator:
        if self._locator is None:
            self._locator = PassageLocator(list(self.chunks.values()))
        return self._locator

    # -- reading ------------------------------------------------------------------------------------------------

    def sets(self) -> dict:
        names = [name for name in known_set_names(self.root) if self._is_labelling_set(name)]
        if DEFAULT_SET not in names:
            names.insert(0, DEFAULT_SET)
        return {"default": DEFAULT_SET, "search_ready": self.retrievers is not None,
                "unavailable": self.unavailable[0] if self.unavailable else None,
                "pool_depth": self.params.pool_depth, "max_file_bytes": MAX_FILE_BYTES,
                "sets": [self._progress(self._files(name)) for name in names]}

    def queue(self, set_name: object) -> dict:
        files = self._files(set_name)
        queued = self._queued(files)
        rows, problem = self._rows_or_problem(files)
        held = self.claims.held(files.name)
        questions = [{**q.to_json(), "done": bool(self._row_of(rows, q)), "held": q.id in held} for q in queued[:MAX_LISTED]]
        for entry, q in zip(questions, queued, strict=False):
            row = self._row_of(rows, q)
            if row:
                entry["split"] = row.row.get("split")
                entry["no_relevant_chunk"] = row.row.get("no_relevant_chunk") is True
        return {**self._progress(files, queued, rows, problem), "questions": questions, "listed": len(questions)}

    # -- importing ----------------------------------------------------------------------------------------------

    def import_file(self, set_name: object, file_name: object, data: bytes) -> dict:
        files = self._files(set_name)
        retrievers = self._search()
        if not isinstance(file_name, str) or not file_name.strip():
            raise LabelError(400, "Name the file: /api/label/import?set=<set>&name=<file name> (its suffix says its format).")
        try:
            with self.search_lock:  # the tokenizers count each question's tokens
                found = read_question_list(data, Path(file_name).name, retrievers.window)
        except BadQuestionList as error:
            raise LabelError(413 if isinstance(error, QuestionListTooLarge) else 400, str(error)) from None
        rows, _ = self._rows_or_problem(files)
        labelled = [q for q in found.questions if find_row(rows, question_id(q.text), q.text)]
        added = self._add(files, [(q.text, f"{found.file}, line {q.line}") for q in found.questions])
        return {"file": found.file, "encoding": found.encoding, "column": found.column, "found": len(found.questions),
                "added": len(added.added), "already_queued": len(added.already), "already_labelled": len(labelled),
                "duplicates": [{"line": line, "repeats": first} for line, first in found.duplicates],
                "warnings": found.warnings(), "progress": self._progress(files)}

    # -- one question -------------------------------------------------------------------------------------------

    def next(self, set_name: object, tab: object, skip: object = None) -> dict:
        files, tab = self._files(set_name), self._tab(tab)
        self._search()
        if skip is not None:
            self.claims.skip(files.name, tab, str(skip))
        queued = self._queued(files)
        rows, problem = self._rows_or_problem(files)
        if problem:
            raise LabelError(409, problem, kind="invalid_file")
        open_ids = [q.id for q in queued if not self._row_of(rows, q)]
        picked = self.claims.pick(files.name, tab, open_ids)
        if picked.question_id is None:
            if not queued:
                message = "Nothing is queued in this set yet: import a question file, or type a question."
            elif picked.held_elsewhere:
                message = (f"Every other open question ({picked.held_elsewhere}) is being labelled in another tab. They come "
                           "back here if that tab leaves them for 15 minutes.")
            else:
                message = f"Every imported question of this set is labelled ({len(queued)}). Run `dvc repro` to evaluate on it."
            return {"done": True, "message": message, "progress": self._progress(files, queued, rows)}
        chosen = next(q for q in queued if q.id == picked.question_id)
        return {**self._pool(files, tab, chosen, rows, claimed=True), "again": picked.again}

    def pool(self, set_name: object, tab: object, qid: object = None, query: object = None) -> dict:
        files, tab = self._files(set_name), self._tab(tab)
        self._search()
        if query is not None:
            if not isinstance(query, str) or not query.strip():
                raise LabelError(400, "The question is empty: type a question to label.")
            if len(query) > 100_000:
                raise LabelError(413, f"The question is {len(query):,} characters; at most 100,000 are accepted.")
            self._add(files, [(query.strip(), "typed")])
            qid = question_id(query)
        if not isinstance(qid, str) or not qid:
            raise LabelError(400, 'Name the question: {"set": ..., "tab": ..., "id": "lab-..."} or {"query": "<text>"}.')
        rows, problem = self._rows_or_problem(files)
        if problem:
            raise LabelError(409, problem, kind="invalid_file")
        chosen = next((q for q in self._queued(files) if q.id == qid), None)
        if chosen is None:
            stored = next((r for r in rows if r.row.get("id") == qid and isinstance(r.row.get("query"), str)), None)
            if stored is None:
                raise LabelError(404, f"There is no question {qid!r} in set {files.name!r} ({files.golden} and its queue "
                                      f"{files.queue}): pick one from the list, or type it.")
            chosen = QueuedQuestion(qid, stored.row["query"], f"{files.golden}, line {stored.line}", "")
        return self._pool(files, tab, chosen, rows, claimed=self.claims.claim(files.name, tab, chosen.id))

    def save(self, body: dict) -> dict:
        files = self._files(body.get("set"))
        self._tab(body.get("tab"))  # checked: a save comes from a tab, whose claim on the question it ends
        self._search()
        query = body.get("query")
        if not isinstance(query, str) or not query.strip():
            raise LabelError(400, "The question is empty: there is nothing to save.")
        if body.get("id") != question_id(query):
            raise LabelError(400, f"id {body.get('id')!r} is not the id of this question ({question_id(query)}): reload it.")
        relevant = self._chunk_list(body.get("relevant", []), "relevant")
        pool = set(self._chunk_list(body.get("pool", []), "pool"))
        seen = body.get("seen", [])
        if not isinstance(seen, list) or not all(isinstance(s, str) for s in seen):
            raise LabelError(400, "seen must be the list of chunk ids looked at.")
        seconds, revision, note = body.get("seconds"), body.get("revision"), body.get("note") or ""
        if not isinstance(seconds, int | float) or isinstance(seconds, bool) or not 0 <= seconds <= MAX_SECONDS:
            raise LabelError(400, f"seconds is {seconds!r}: the time spent on the question, 0 to {MAX_SECONDS}.")
        if not isinstance(revision, int) or isinstance(revision, bool) or revision < 0:
            raise LabelError(400, f"revision is {revision!r}: send the revision the question was loaded with (0 if new).")
        if not isinstance(note, str) or len(note) > MAX_NOTE:
            raise LabelError(400, f"The note must be text of at most {MAX_NOTE} characters.")
        judgement = Judgement(query.strip(), tuple(self.chunks[c] for c in relevant), body.get("no_relevant_chunk") is True,
                              note, float(seconds), len(pool), len(set(seen) & pool), self.params.pool_depth)
        try:
            stored = save(files, judgement, revision, self.params.split_seed, self.params.val_fraction, self.locator)
        except SaveConflict as error:
            theirs = None
            if error.theirs is not None:
                placed = place_labels(error.theirs, self.locator)
                theirs = {"revision": error.theirs.get("labelling", {}).get("revision"), "marked": placed.chunk_ids,
                          "no_relevant_chunk": error.theirs.get("no_relevant_chunk") is True,
                          "note": error.theirs.get("note", ""), "at": error.theirs.get("labelling", {}).get("at")}
            raise LabelError(409, str(error), kind="conflict", theirs=theirs) from None
        except InvalidSetFile as error:
            raise LabelError(409, str(error), kind="invalid_file") from None
        except (HandLabelled, UserError) as error:
            raise LabelError(400, str(error)) from None
        self.claims.release(files.name, stored.row["id"])
        split = stored.row["split"]
        what = "no relevant chunk" if judgement.no_relevant_chunk else f"{len(relevant)} relevant chunk(s)"
        return {"saved": {"id": stored.row["id"], "split": split, "revision": stored.row["labelling"]["revision"],
                          "line": stored.line},
                "file": str(files.golden),
                "message": f"Saved to {files.golden} (line {stored.line}): {what}, split {split} "
                           f"({'may choose knobs' if split == 'val' else 'only reported'}).",
                "progress": self._progress(files)}

    def leave(self, tab: object) -> dict:
        self.claims.leave(self._tab(tab))
        return {"left": True}

    # -- helpers ------------------------------------------------------------------------------------------------

    def _pool(self, files: SetFiles, tab: str, chosen: QueuedQuestion, rows: list[StoredRow], claimed: bool) -> dict:
        retrievers = self._search()
        stored = find_row(rows, chosen.id, chosen.query)
        if stored is not None and stored.by_hand:
            raise LabelError(400, f"{files.golden}, line {stored.line}: this question is there already, labelled by hand "
                                  f"(id {stored.row.get('id')!r}); the labelling view leaves such rows alone.")
        placed = place_labels(stored.row if stored else None, self.locator)
        with self.search_lock:
            read = retrievers.window(chosen.query)
            # Ranked as deep as the evaluation and the search view rank, then cut: the hybrid fused from only the top
            # pool_depth of its inputs would never reach past them, and its top k here would not be the one evaluated.
            rankings = retrievers.rank(read.text, max(DEPTH, self.params.pool_depth))
        ids = pool_ids(rankings, QUERY_ID, self.params.pool_depth, chosen.query, also=placed.chunk_ids)
        terms = question_terms(read.text, self.language)
        cut = None
        if read.cut:
            cut = (f"The question is {len(chosen.query):,} characters ({read.tokens:,} tokens with the query prompt); the "
                   f"models read at most {read.max_seq_length} tokens (model.max_seq_length), so the pool was searched with "
                   f"its first {len(read.text):,} characters. The whole question is saved.")
        split = stored.row.get("split") if stored else question_split(chosen.query, self.params.split_seed,
                                                                       self.params.val_fraction)
        return {
            "set": files.name, "file": str(files.golden),
            "question": {"id": chosen.id, "query": chosen.query, "origin": chosen.origin, "split": split,
                         "language": detect_language(chosen.query)},
            "cut": cut, "pool_depth": self.params.pool_depth,
            "pool": [self._card(self.chunks[cid], terms) for cid in ids],
            "marked": placed.chunk_ids, "moved": placed.moved,
            "unplaced": [{"source": p.get("source"), "text": p["text"]} for p in placed.unplaced],
            "kept_aside": len(placed.kept),
            "no_relevant_chunk": bool(stored and stored.row.get("no_relevant_chunk") is True),
            "note": (stored.row.get("note") or "") if stored else "",
            "revision": stored.revision if stored else 0,
            "labelled_at": stored.row["labelling"].get("at") if stored else None,
            "held_elsewhere": not claimed,
            "progress": self._progress(files, rows=rows),
        }

    def _card(self, chunk: Chunk, terms: frozenset[str]) -> dict:
        return {"id": chunk.id, "section": chunk.section, "source": chunk.source,
                "segments": [[piece, shared] for piece, shared in shared_segments(chunk.text, terms, self.language)]}

    def _search(self) -> Retrievers:
        if self.retrievers is None:
            message, stage = self.unavailable or ("The search is not available in this run.", None)
            raise LabelError(503, f"The labelling view needs the search (both models and the corpus) to pool each question's "
                                  f"chunks, and it is not available: {message}", stage)
        return self.retrievers

    def _files(self, set_name: object) -> SetFiles:
        try:
            return set_files(set_name, self.root)
        except BadSetName as error:
            raise LabelError(400, str(error)) from None

    @staticmethod
    def _tab(tab: object) -> str:
        if not isinstance(tab, str) or not TAB.fullmatch(tab):
            raise LabelError(400, "tab must be the page's tab id (1 to 64 letters, digits, _ or -).")
        return tab

    def _chunk_list(self, value: object, name: str) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise LabelError(400, f"{name} must be a list of chunk ids.")
        unknown = [v for v in value if v not in self.chunks]
        if unknown:
            raise LabelError(400, f"{name}: chunk {unknown[0]!r} is not in this corpus (data/corpus/chunks.jsonl changed "
                                  "since the page loaded?): reload the question.")
        return list(dict.fromkeys(value))

    def _add(self, files: SetFiles, questions: list[tuple[str, str]]):
        try:
            return add_to_queue(files, questions)
        except BadQueueFile as error:
            raise LabelError(409, str(error), kind="invalid_file") from None

    def _queued(self, files: SetFiles) -> list[QueuedQuestion]:
        try:
            return read_queue(files.queue)
        except BadQueueFile as error:
            raise LabelError(409, str(error), kind="invalid_file") from None

    @staticmethod
    def _rows_or_problem(files: SetFiles) -> tuple[list[StoredRow], str | None]:
        try:
            return read_rows(files.golden), None
        except InvalidSetFile as error:
            return [], str(error)

    @staticmethod
    def _row_of(rows: list[StoredRow], queued: QueuedQuestion) -> StoredRow | None:
        return find_row(rows, queued.id, queued.query)

    def _progress(self, files: SetFiles, queued: list[QueuedQuestion] | None = None, rows: list[StoredRow] | None = None,
                  problem: str | None = None) -> dict:
        if queued is None:
            try:
                queued = read_queue(files.queue)
            except BadQueueFile as error:
                queued, problem = [], str(error)
        if rows is None:
            rows, problem = self._rows_or_problem(files)
        texts = {normalize_query(r.row["query"]) for r in rows if isinstance(r.row.get("query"), str)}
        ids = {r.row.get("id") for r in rows}
        done = sum(q.id in ids or normalize_query(q.query) in texts for q in queued)
        return {"set": files.name, "file": str(files.golden), "queue_file": str(files.queue), "imported": len(queued),
                "done": done, **pace([r.row for r in rows]), "by_hand": sum(r.by_hand for r in rows), "problem": problem}

    def _is_labelling_set(self, name: str) -> bool:
        files = set_files(name, self.root)
        if files.queue.is_file():
            return True
        rows, problem = self._rows_or_problem(files)
        return problem is None and any(not r.by_hand for r in rows)
