"""The export's measurements, each against a reference computed another way: cosine gaps (scipy), hit@5 and MRR@10
and their differences (by hand on a corpus where every rank is known), CPU throughput (encoders of known cost),
and which questions are measured (golden test of every language, else the synthetic test split)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from scipy.spatial.distance import cosine

from stages.lib.documents.chunking import Chunk
from stages.lib.models.prompts import Prompts
from stages.lib.questions.qa_dataset import QADataset
from stages.lib.serving.export_check import (
    BACKENDS,
    ONNX,
    ONNX_INT8,
    PYTORCH,
    MeasuredQuestions,
    Vectors,
    cosine_gaps,
    cpu_throughput,
    export_metrics,
    format_report,
    int8_warning,
    measured_questions,
    throughput_texts,
)


def test_cosine_gaps_match_scipy_on_vectors_of_any_length():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(20, 16)).astype(np.float32) * rng.uniform(0.1, 10, size=(20, 1)).astype(np.float32)
    other = reference + rng.normal(scale=0.05, size=reference.shape).astype(np.float32)
    expected = [cosine(a, b) for a, b in zip(reference.astype(np.float64), other.astype(np.float64), strict=True)]
    gaps = cosine_gaps(reference, other)
    assert gaps["cosine_gap_max"] == pytest.approx(max(expected), rel=1e-9)
    assert gaps["cosine_gap_mean"] == pytest.approx(float(np.mean(expected)), rel=1e-9)
    assert cosine_gaps(reference, reference * 3)["cosine_gap_max"] == pytest.approx(0.0, abs=1e-12)


def known_ranks() -> tuple[MeasuredQuestions, dict[str, Vectors]]:
    """Six chunks on the axes; q1 is about chunk 0, q2 about chunk 1. int8's q1 points away from chunk 0 (rank 6)."""
    corpus = {f"d{i}": f"chunk {i}" for i in range(6)}
    dataset = QADataset(queries={"q1": "one", "q2": "two"}, corpus=corpus, relevant_docs={"q1": ["d0"], "q2": ["d1"]})
    documents = np.eye(6, dtype=np.float32) * 2.0  # not unit length: the ranking must not care
    queries = np.eye(6, dtype=np.float32)[:2]
    moved = queries.copy()
    moved[0] = -np.eye(6, dtype=np.float32)[0] + 0.01 * np.eye(6, dtype=np.float32)[5]  # d0 last, d5 first
    vectors = {PYTORCH: Vectors(queries, documents), ONNX: Vectors(queries.copy(), documents.copy()),
               ONNX_INT8: Vectors(moved, documents.copy())}
    return MeasuredQuestions(dataset, golden=True, total=2), vectors


def test_metrics_and_their_differences_to_pytorch_are_the_hand_computed_ones():
    questions, vectors = known_ranks()
    speed = {PYTORCH: 10.0, ONNX: 12.0, ONNX_INT8: 25.0}
    metrics = export_metrics(questions, vectors, speed, n_speed_texts=8, pytorch_device="cpu")
    assert (metrics["enabled"], metrics["golden"], metrics["queries"], metrics["corpus_chunks"]) == (1, 1, 2, 6)
    assert (metrics["pytorch_quality_on_gpu"], metrics["cpu_throughput_texts"]) == (0, 8)
    assert metrics[PYTORCH] == {"hit@5": 1.0, "mrr@10": 1.0, "cpu_texts_per_s": 10.0}
    assert metrics[ONNX]["hit@5_diff_vs_pytorch"] == metrics[ONNX]["mrr@10_diff_vs_pytorch"] == 0
    assert metrics[ONNX]["hit@5_queries_changed_vs_pytorch"] == 0 and metrics[ONNX]["cosine_gap_max"] == 0
    int8 = metrics[ONNX_INT8]
    # q1 finds its chunk at rank 6 (hit@5 0, reciprocal rank 1/6), q2 at rank 1.
    assert int8["hit@5"] == 0.5 and int8["mrr@10"] == round((1 / 6 + 1) / 2, 4)
    assert int8["hit@5_diff_vs_pytorch"] == -0.5 and int8["mrr@10_diff_vs_pytorch"] == round((1 / 6 + 1) / 2 - 1, 4)
    assert int8["hit@5_queries_changed_vs_pytorch"] == 1
    # Gaps over queries and chunks together: q1's gap is 1 - cos(e0, -e0 + 0.01 e5); the other seven rows are 0.
    q1_gap = cosine(np.eye(6)[0], vectors[ONNX_INT8].queries[0].astype(np.float64))
    assert int8["cosine_gap_max"] == pytest.approx(q1_gap) and int8["cosine_gap_mean"] == pytest.approx(q1_gap / 8)
    assert int8["cpu_speedup_vs_pytorch_cpu"] == 2.5 and metrics[ONNX]["cpu_speedup_vs_pytorch_cpu"] == 1.2
    # dvc metrics: numbers only, nested one level.
    flat = [v for name in BACKENDS for v in metrics[name].values()] + [v for v in metrics.values() if not isinstance(v, dict)]
    assert all(isinstance(v, int | float) and not isinstance(v, bool) for v in flat)
    json.dumps(metrics)
    table = format_report(metrics)
    assert all(name in table for name in BACKENDS) and "-0.500" in table


def test_the_int8_line_names_a_hit_rate_change_above_one_point():
    questions, vectors = known_ranks()
    metrics = export_metrics(questions, vectors, dict.fromkeys(BACKENDS, 1.0), 8, "cpu")
    warning = int8_warning(metrics)
    assert warning is not None and "-0.500" in warning and "0.500 against 1.000" in warning and "1 of 2" in warning
    same = export_metrics(questions, {**vectors, ONNX_INT8: vectors[ONNX]}, dict.fromkeys(BACKENDS, 1.0), 8, "cpu")
    assert int8_warning(same) is None


class Costly:
    """An encoder that takes ``seconds_per_text`` per text and records what it was given."""

    def __init__(self, seconds_per_text: float) -> None:
        self.seconds_per_text, self.seen = seconds_per_text, []

    def encode(self, texts: list[str], prompt: str = "") -> np.ndarray:
        time.sleep(self.seconds_per_text * len(texts))
        self.seen.extend(prompt + text for text in texts)
        return np.zeros((len(texts), 4), dtype=np.float32)


def test_throughput_times_each_encoder_on_the_same_texts():
    dataset = QADataset(queries={f"q{i}": f"query {i}" for i in range(30)}, corpus={f"d{i}": f"chunk {i}" for i in range(30)},
                        relevant_docs={f"q{i}": [f"d{i}"] for i in range(30)})
    prompts = Prompts("query: ", "passage: ")
    texts = throughput_texts(dataset, prompts, 40)
    assert len(texts) == 40 and texts == throughput_texts(dataset, prompts, 40)  # seeded: the same sample every run
    assert {prompt for prompt, _ in texts} == {"query: ", "passage: "}
    assert len(throughput_texts(dataset, prompts, 1000)) == 60
    fast, slow = Costly(0.002), Costly(0.006)
    speed = cpu_throughput({"fast": fast, "slow": slow}, texts, batch_size=16)
    # Sleeps overshoot on a loaded machine, by a similar time per call for both: loose bounds.
    assert 1.5 < speed["fast"] / speed["slow"] < 4
    assert speed["slow"] == pytest.approx(1 / 0.006, rel=0.5)
    warm_up = 8
    assert sorted(fast.seen[warm_up:]) == sorted(slow.seen[warm_up:]) == sorted(p + t for p, t in texts)


def chunk(cid: str, text: str, split: str, source: str = "law.md") -> Chunk:
    return Chunk(id=cid, text=text, source=source, split=split, language="zh", section="", position=int(cid[1:]),
                 n_tokens=len(text))


def test_measured_questions_are_golden_test_of_every_language_else_the_synthetic_split(tmp_path):
    chunks = [chunk("c0", "第一条 证券的发行和交易适用本法。", "train"), chunk("c1", "第二条 禁止内幕交易。", "test")]
    golden = tmp_path / "golden.jsonl"
    rows = [{"id": "z1", "query": "哪些交易适用这部法律", "split": "test", "language": "zh", "articles": ["第一条"]},
            {"id": "e1", "query": "Is insider trading banned?", "split": "test", "language": "en", "articles": ["第二条"]},
            {"id": "v1", "query": "内幕交易", "split": "val", "language": "zh", "articles": ["第二条"]}]
    golden.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    synthetic = QADataset(queries={"s1": "发行"}, corpus={c.id: c.text for c in chunks}, relevant_docs={"s1": ["c0"]})

    measured = measured_questions(chunks, [str(golden)], lambda: synthetic, max_queries=0)
    assert measured.golden and set(measured.dataset.queries) == {"z1", "e1"}  # test only, both languages
    assert measured.dataset.relevant_docs == {"z1": ["c0"], "e1": ["c1"]} and set(measured.dataset.corpus) == {"c0", "c1"}
    assert measured_questions(chunks, [str(golden)], lambda: synthetic, max_queries=1).dataset.queries.keys() < {"z1", "e1"}

    # A golden set about another document than the corpus holds is skipped: the synthetic test split is measured.
    elsewhere = [chunk(c.id, c.text, c.split, source="other.md") for c in chunks]
    for row in rows:
        row["source"] = "law.md"
    golden.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    fallback = measured_questions(elsewhere, [str(golden)], lambda: synthetic, max_queries=0)
    assert not fallback.golden and fallback.dataset is synthetic and "synthetic" in fallback.describe()
    assert not measured_questions(chunks, [], lambda: synthetic, max_queries=0).golden
