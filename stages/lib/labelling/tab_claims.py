"""Which browser tab is labelling which question, so that two tabs (or two people) asking for the next question
never get the same one.

A tab holds the question it was given until it saves it, asks for another, or stays silent for ``CLAIM_SECONDS``
(a closed tab, a person gone for lunch): then the question is free again. Claims live in memory only: a restarted
server forgets them, and nothing is lost by that (a save checks the row's revision, not the claim). A question a
tab skipped comes back to that tab only once nothing else is left.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

CLAIM_SECONDS = 15 * 60


@dataclass(frozen=True)
class Pick:
    question_id: str | None  # None: nothing left for this tab
    again: bool = False  # a question this tab skipped before: nothing else was left
    held_elsewhere: int = 0  # open questions other tabs hold now


class TabClaims:
    def __init__(self, seconds: float = CLAIM_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds, self.clock = seconds, clock
        self._lock = threading.Lock()
        self._claims: dict[tuple[str, str], tuple[str, float]] = {}  # (set, question) -> (tab, expires)
        self._skipped: dict[tuple[str, str], list[str]] = {}  # (set, tab) -> questions it skipped, in order

    def pick(self, set_name: str, tab: str, open_questions: Iterable[str]) -> Pick:
        """Claim for ``tab`` the first of ``open_questions`` (queue order) that no other tab holds and it did not skip;
        the tab's earlier claims in the set are let go. Atomic: two tabs asking at once get two questions."""
        with self._lock:
            now = self.clock()
            self._drop(set_name, tab)
            skipped = self._skipped.get((set_name, tab), [])
            free, held = [], 0
            for qid in open_questions:
                if self._holder(set_name, qid, now) not in (None, tab):
                    held += 1
                else:
                    free.append(qid)
            chosen = next((qid for qid in free if qid not in skipped), None)
            again = False
            if chosen is None:
                chosen = next((qid for qid in skipped if qid in free), None)
                again = chosen is not None
                if again:
                    skipped.remove(chosen)
            if chosen is not None:
                self._claims[(set_name, chosen)] = (tab, now + self.seconds)
            return Pick(chosen, again, held)

    def claim(self, set_name: str, tab: str, question_id: str) -> bool:
        """Hold ``question_id`` for ``tab`` (opened by link, typed, or reloaded); False when another tab holds it: the
        tab may still label it, and the save's revision check keeps the two from overwriting each other."""
        with self._lock:
            now = self.clock()
            holder = self._holder(set_name, question_id, now)
            if holder not in (None, tab):
                return False
            self._drop(set_name, tab)
            self._claims[(set_name, question_id)] = (tab, now + self.seconds)
            return True

    def skip(self, set_name: str, tab: str, question_id: str) -> None:
        with self._lock:
            skipped = self._skipped.setdefault((set_name, tab), [])
            if question_id not in skipped:
                skipped.append(question_id)
            if self._claims.get((set_name, question_id), ("",))[0] == tab:
                del self._claims[(set_name, question_id)]

    def release(self, set_name: str, question_id: str) -> None:
        with self._lock:
            self._claims.pop((set_name, question_id), None)
            for (name, _), skipped in self._skipped.items():
                if name == set_name and question_id in skipped:
                    skipped.remove(question_id)

    def leave(self, tab: str) -> None:
        """A tab closed or reloaded: its questions are free at once."""
        with self._lock:
            for key in [key for key, (holder, _) in self._claims.items() if holder == tab]:
                del self._claims[key]
            for key in [key for key in self._skipped if key[1] == tab]:
                del self._skipped[key]

    def held(self, set_name: str) -> dict[str, str]:
        """Question -> the tab holding it, for the set's live claims."""
        with self._lock:
            now = self.clock()
            return {qid: tab for (name, qid), (tab, expires) in self._claims.items() if name == set_name and expires > now}

    def _holder(self, set_name: str, question_id: str, now: float) -> str | None:
        tab, expires = self._claims.get((set_name, question_id), (None, 0.0))
        return tab if expires > now else None

    def _drop(self, set_name: str, tab: str) -> None:
        for key in [key for key, (holder, _) in self._claims.items() if holder == tab and key[0] == set_name]:
            del self._claims[key]
