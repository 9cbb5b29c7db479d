"""Two tabs asking for the next question never get the same one; a silent tab's question is freed in time."""

from __future__ import annotations

import threading

from stages.lib.labelling.tab_claims import TabClaims

OPEN = [f"lab-{i:012d}" for i in range(6)]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_two_tabs_get_different_questions_in_queue_order():
    claims = TabClaims()
    assert claims.pick("s", "tab-a", OPEN).question_id == OPEN[0]
    second = claims.pick("s", "tab-b", OPEN)
    assert second.question_id == OPEN[1] and second.held_elsewhere == 1
    assert claims.held("s") == {OPEN[0]: "tab-a", OPEN[1]: "tab-b"}
    # Asking again lets go of the tab's own question: it takes the first free one, which may be its own.
    assert claims.pick("s", "tab-a", OPEN).question_id == OPEN[0]
    assert claims.pick("s", "tab-a", OPEN[1:]).question_id == OPEN[2]
    assert claims.held("s") == {OPEN[1]: "tab-b", OPEN[2]: "tab-a"}
    assert claims.pick("other-set", "tab-c", OPEN).question_id == OPEN[0]  # sets are apart


def test_many_tabs_asking_at_once_never_share_a_question():
    claims = TabClaims()
    got: dict[str, str | None] = {}
    start = threading.Barrier(len(OPEN) + 2)

    def ask(tab: str) -> None:
        start.wait()
        got[tab] = claims.pick("s", tab, OPEN).question_id

    threads = [threading.Thread(target=ask, args=(f"tab-{i}",)) for i in range(len(OPEN) + 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    given = [qid for qid in got.values() if qid]
    assert sorted(given) == sorted(OPEN) and list(got.values()).count(None) == 2


def test_a_silent_tab_s_question_is_free_after_the_claim_expires():
    clock = Clock()
    claims = TabClaims(seconds=60, clock=clock)
    claims.pick("s", "tab-a", OPEN[:1])
    nothing = claims.pick("s", "tab-b", OPEN[:1])
    assert nothing.question_id is None and nothing.held_elsewhere == 1
    clock.now += 61
    assert claims.pick("s", "tab-b", OPEN[:1]).question_id == OPEN[0]


def test_a_skipped_question_comes_back_only_when_nothing_else_is_left():
    claims = TabClaims()
    first = claims.pick("s", "tab-a", OPEN[:2]).question_id
    claims.skip("s", "tab-a", first)
    assert claims.pick("s", "tab-a", OPEN[:2]).question_id == OPEN[1]
    assert claims.pick("s", "tab-b", OPEN[:2]).question_id == OPEN[0]  # another tab did not skip it
    claims.leave("tab-b")
    claims.release("s", OPEN[1])
    again = claims.pick("s", "tab-a", [OPEN[0]])
    assert again.question_id == OPEN[0] and again.again


def test_opening_a_question_another_tab_holds_is_allowed_but_said():
    claims = TabClaims()
    claims.pick("s", "tab-a", OPEN)
    assert claims.claim("s", "tab-b", OPEN[0]) is False  # shown, with a note; the save's revision check decides
    assert claims.held("s")[OPEN[0]] == "tab-a"
    assert claims.claim("s", "tab-b", OPEN[3]) is True and claims.held("s")[OPEN[3]] == "tab-b"
    claims.leave("tab-a")
    assert OPEN[0] not in claims.held("s")
