"""A labelled question's id and split come from its normalised text alone: stable whatever the order, the tab or
the machine, and seeded."""

from __future__ import annotations

import random
import subprocess
import sys

from stages.lib.labelling.question_identity import question_id, question_split
from tests.helpers import REPO_ROOT

QUESTIONS = [f"问题{i}：公司第{i}条规定是什么" for i in range(400)] + [f"What does clause {i} say?" for i in range(400)]


def test_the_same_question_written_differently_is_one_id_and_one_split():
    variants = ["契税的税率是多少", "  契税的税率是多少。", "契税的税率是多少；", "契税的税率\t是多少"]
    assert len({question_id(v) for v in variants[:3]}) == 1
    assert question_id(variants[3]) != question_id(variants[0])  # inner spacing is normalised to one space, not removed
    assert question_id("Can I?") == question_id("can i?") and question_id("Can I?").startswith("lab-")
    assert len(question_id("x")) == len("lab-") + 12
    assert len({question_split(v, 42, 0.5) for v in variants[:3]}) == 1


def test_the_split_does_not_depend_on_order_and_follows_the_fraction_and_the_seed():
    shuffled = QUESTIONS[:]
    random.Random(7).shuffle(shuffled)
    first = {q: question_split(q, 42, 0.5) for q in QUESTIONS}
    assert {q: question_split(q, 42, 0.5) for q in shuffled} == first
    share = sum(s == "val" for s in first.values()) / len(first)
    assert 0.43 < share < 0.57  # 800 draws of a fair coin
    assert 0.2 < sum(question_split(q, 42, 0.3) == "val" for q in QUESTIONS) / len(QUESTIONS) < 0.4
    other_seed = {q: question_split(q, 43, 0.5) for q in QUESTIONS}
    assert 0.3 < sum(first[q] != other_seed[q] for q in QUESTIONS) / len(QUESTIONS) < 0.7
    # A larger val fraction only moves test questions to val, never the other way.
    assert all(question_split(q, 42, 0.7) == "val" for q in QUESTIONS if first[q] == "val")


def test_the_split_is_the_same_in_another_process():
    # Python's own hash() is salted per process; the split must not be.
    code = ("import json,sys; from stages.lib.labelling.question_identity import question_split;"
            "print(json.dumps([question_split(q, 42, 0.5) for q in json.loads(sys.stdin.read())]))")
    import json

    other = subprocess.run([sys.executable, "-c", code], input=json.dumps(QUESTIONS[:50]), capture_output=True, text=True,
                           cwd=REPO_ROOT, check=True, env={"PYTHONHASHSEED": "123", "PATH": ""})
    assert json.loads(other.stdout) == [question_split(q, 42, 0.5) for q in QUESTIONS[:50]]
