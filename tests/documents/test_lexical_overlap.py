"""Word overlap: the share of a question's words (BM25's words) that its passages hold, and its bands."""

from __future__ import annotations

import pytest

from stages.lib.documents.lexical_overlap import BANDS, band_of, mean_word_overlap, word_overlap
from stages.lib.questions.qa_dataset import QADataset

PASSAGE = "用人单位应当依法建立和完善劳动规章制度，保障劳动者享有劳动权利、履行劳动义务。"


def test_a_question_in_the_passages_own_words_overlaps_fully_and_one_in_other_words_does_not():
    assert word_overlap("用人单位建立劳动规章制度", [PASSAGE], "zh") == 1.0
    assert word_overlap("老板能随便定公司的规矩吗", [PASSAGE], "zh") == 0.0


def test_overlap_counts_distinct_words_and_any_of_several_passages():
    # BM25's words of the question: 劳动, 劳动者 (both in the passage) and 工资 (only in the second passage).
    question = "劳动者工资"
    assert word_overlap(question, [PASSAGE], "zh") == pytest.approx(2 / 3)
    assert word_overlap(question, [PASSAGE, "工资应当以货币形式按月支付。"], "zh") == 1.0
    assert word_overlap(question + "，" + question, [PASSAGE], "zh") == pytest.approx(2 / 3)  # repeated words count once


def test_english_words_and_a_question_without_words():
    passage = "The employer shall pay wages in full and on time."
    assert word_overlap("When must the employer pay wages?", [passage], "en") == 1.0  # stopwords are not words here
    assert word_overlap("Can the boss pay salary late?", [passage], "en") == pytest.approx(1 / 4)  # boss, pay, salary, late
    assert word_overlap("？！", [passage], "en") == 0.0


def test_bands_cover_every_overlap_once():
    assert [band_of(x) for x in (0.0, 0.49, 0.5, 0.74, 0.75, 1.0)] == ["low", "low", "medium", "medium", "high", "high"]
    assert [name for name, _, _ in BANDS] == ["low", "medium", "high"]


def test_mean_over_a_dataset_uses_each_questions_relevant_passages():
    dataset = QADataset(queries={"a": "用人单位建立劳动规章制度", "b": "老板能随便定公司的规矩吗"},
                        corpus={"c1": PASSAGE, "c2": "无关的内容"}, relevant_docs={"a": ["c1"], "b": ["c1"]})
    assert mean_word_overlap(dataset, "zh") == 0.5
    assert mean_word_overlap(QADataset(), "zh") == 0.0
