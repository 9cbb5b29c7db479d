"""The summary figures of a set: counts per split, median seconds per question, median share of the pool looked at."""

from __future__ import annotations

from stages.lib.labelling.pace import pace


def labelled(split: str, seconds, seen, pool, none: bool = False) -> dict:
    row = {"id": f"lab-{split}{seconds}", "split": split, "labelling": {"seconds": seconds, "seen": seen, "pool": pool}}
    if none:
        row["no_relevant_chunk"] = True
    return row


def test_medians_over_the_rows_the_view_wrote():
    rows = [labelled("val", 10, 5, 10), labelled("test", 20, 10, 10), labelled("test", 3600, 0, 8, none=True),
            {"id": "h-1", "split": "val", "articles": ["第一条"]}]  # by hand: no measurements
    figures = pace(rows)
    assert figures == {"labelled": 3, "val": 1, "test": 2, "no_relevant_chunk": 1, "median_seconds": 20.0,
                       "median_seen_share": 0.5}  # the hour left open does not move the median


def test_missing_or_odd_measurements_are_left_out_not_guessed():
    rows = [labelled("val", None, 3, 0), labelled("test", -1, 12, 10), labelled("test", 8, True, 10)]
    figures = pace(rows)
    assert figures["median_seconds"] == 8.0 and figures["median_seen_share"] == 1.0  # 12 of 10 is capped at all
    assert pace([]) == {"labelled": 0, "val": 0, "test": 0, "no_relevant_chunk": 0, "median_seconds": None,
                        "median_seen_share": None}
