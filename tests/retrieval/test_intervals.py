"""Paired-bootstrap intervals: checked against a plain loop over the same draws and against scipy's bootstrap."""

from __future__ import annotations

import numpy as np
import pytest

from stages.lib.retrieval.intervals import bootstrap_indices, intervals, per_query, percentile_interval


def test_per_query_scores_hit_at_5_and_reciprocal_rank_within_10():
    ranking = {"a": ["x", "y", "r"], "b": [f"d{i}" for i in range(10)] + ["r"], "c": ["d"] * 5 + ["r"]}
    relevant = {"a": ["r"], "b": ["r"], "c": ["r"]}
    scores = per_query(ranking, relevant, ["a", "b", "c"])
    assert scores["hit@5"].tolist() == [1.0, 0.0, 0.0]
    assert scores["mrr@10"].tolist() == pytest.approx([1 / 3, 0.0, 1 / 6])


def test_interval_matches_a_loop_over_the_same_draws():
    rng = np.random.default_rng(1)
    values = rng.random(50)
    indices = bootstrap_indices(50, resamples=300, seed=7)
    means = sorted(float(np.mean([values[i] for i in draw])) for draw in indices)
    low, high = percentile_interval(values, indices)
    assert low == pytest.approx(np.percentile(means, 2.5)) and high == pytest.approx(np.percentile(means, 97.5))


def test_difference_interval_agrees_with_scipy_paired_bootstrap():
    from scipy.stats import bootstrap

    rng = np.random.default_rng(3)
    bm25 = (rng.random(200) < 0.7).astype(float)
    hybrid = np.where(rng.random(200) < 0.15, 1.0, bm25)  # mostly the same answers, some extra hits
    ours = intervals({"bm25": {"hit@5": bm25}, "hybrid": {"hit@5": hybrid}}, "bm25", resamples=20000, seed=0)["hybrid"]
    reference = bootstrap((hybrid, bm25), lambda x, y, axis=-1: np.mean(x - y, axis=axis), paired=True,
                          vectorized=True, n_resamples=20000, method="percentile", random_state=0).confidence_interval
    assert ours["hit@5_diff_vs_bm25"] == pytest.approx(np.mean(hybrid - bm25), abs=1e-4)
    assert ours["hit@5_diff_vs_bm25_ci_low"] == pytest.approx(reference.low, abs=0.006)
    assert ours["hit@5_diff_vs_bm25_ci_high"] == pytest.approx(reference.high, abs=0.006)
    assert ours["hit@5_diff_vs_bm25_ci_low"] > 0  # every change here is a gain: the interval sits above 0


def test_intervals_are_seeded_and_the_baseline_has_no_difference():
    scores = {"bm25": {"hit@5": np.array([1.0, 0, 1, 1]), "mrr@10": np.array([1.0, 0, 0.5, 1])},
              "dense": {"hit@5": np.array([0.0, 1, 1, 1]), "mrr@10": np.array([0.0, 1, 1, 0.2])}}
    first, again = intervals(scores, "bm25", seed=5), intervals(scores, "bm25", seed=5)
    assert first == again
    assert not any("diff" in key for key in first["bm25"])
    assert first["dense"]["hit@5_ci_low"] <= 0.75 <= first["dense"]["hit@5_ci_high"]


def test_a_fine_tuned_model_is_also_compared_with_its_base_on_the_same_draws():
    from stages.lib.retrieval.intervals import format_gain, verdict

    rng = np.random.default_rng(3)
    base = (rng.random(200) < 0.5).astype(float)
    better = np.maximum(base, (rng.random(200) < 0.3).astype(float))  # never worse on a question, often better
    scores = {name: {"hit@5": v, "mrr@10": v / 2} for name, v in
              {"base": base, "finetuned": better, "bm25": base[::-1].copy()}.items()}
    bands = intervals(scores, "bm25", compared={"finetuned": "base"})
    row = bands["finetuned"]
    assert row["hit@5_diff_vs_base"] == pytest.approx(float((better - base).mean()), abs=1e-4)
    # The same draws as the interval vs BM25: recomputing one by hand on them gives the same bounds.
    indices = bootstrap_indices(200)
    low, high = percentile_interval(better - base, indices)
    assert (row["hit@5_diff_vs_base_ci_low"], row["hit@5_diff_vs_base_ci_high"]) == (round(low, 4), round(high, 4))
    assert "hit@5_diff_vs_base" not in bands["base"] and "hit@5_diff_vs_base" not in bands["bm25"]
    assert verdict(row, "hit@5", "base") == "better"
    assert format_gain(row, "finetuned", "base").endswith("-> fine-tuning helped")
    same = intervals({"base": scores["base"], "finetuned": scores["base"], "bm25": scores["bm25"]}, "bm25",
                     compared={"finetuned": "base"})["finetuned"]
    assert same["hit@5_diff_vs_base"] == 0 and verdict(same, "hit@5", "base") == "no difference shown"
    assert format_gain(same, "finetuned", "base").endswith("-> fine-tuning is not shown to help")
