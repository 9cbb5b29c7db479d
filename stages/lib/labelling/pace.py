"""How labelling a set went, from what the page measured and each row keeps under ``labelling``: how many
questions, in which split, how long a question took (seconds the tab was visible, from showing the question to
saving it) and how much of its pool was looked at (chunks at least half in view for half a second, or focused).
Medians, because one question left open over lunch must not move the figure.
"""

from __future__ import annotations

from statistics import median


def _number(value) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0 else None


def pace(rows: list[dict]) -> dict:
    """Counts and medians over the rows the labelling view wrote (rows written by hand carry no measurements)."""
    labelled = [row for row in rows if isinstance(row.get("labelling"), dict)]
    seconds = [s for s in (_number(row["labelling"].get("seconds")) for row in labelled) if s is not None]
    shares = []
    for row in labelled:
        seen, pool = _number(row["labelling"].get("seen")), _number(row["labelling"].get("pool"))
        if seen is not None and pool:
            shares.append(min(1.0, seen / pool))
    return {
        "labelled": len(labelled),
        "val": sum(row.get("split") == "val" for row in labelled),
        "test": sum(row.get("split") == "test" for row in labelled),
        "no_relevant_chunk": sum(row.get("no_relevant_chunk") is True for row in labelled),
        "median_seconds": round(median(seconds), 1) if seconds else None,
        "median_seen_share": round(median(shares), 3) if shares else None,
    }
