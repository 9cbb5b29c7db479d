"""A labelled row's chunks as they are now: what the page pre-marks when a question is opened again.

Passages are stored with the chunk id and text they had when labelled. Against the chunks here, each is found
again by ``retrieval.passage_labels.PassageLocator``: by its id when the chunk still holds that text, else by its
text (a re-chunked document gives new ids). A passage that cannot be placed (its document changed there) is
listed as needing relabelling, never dropped: the next save keeps it in the row under ``unplaced_passages``
(extra keys are ignored by the golden-set loader), so what a person once marked stays in the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stages.lib.retrieval.passage_labels import PassageLabel, PassageLocator


@dataclass
class PlacedLabels:
    chunk_ids: list[str] = field(default_factory=list)  # marked now, in the order first found
    moved: int = 0  # passages found under another id (re-chunked)
    unplaced: list[dict] = field(default_factory=list)  # stored passages no chunk here holds: relabel
    kept: list[dict] = field(default_factory=list)  # passages an earlier save already moved aside (unplaced_passages)


def stored_passages(row: dict | None, key: str = "passages") -> list[dict]:
    value = (row or {}).get(key)
    return [p for p in value if isinstance(p, dict) and isinstance(p.get("text"), str) and p["text"].strip()] \
        if isinstance(value, list) else []


def place_labels(row: dict | None, locator: PassageLocator) -> PlacedLabels:
    placed = PlacedLabels(kept=stored_passages(row, "unplaced_passages"))
    for passage in stored_passages(row):
        label = PassageLabel(passage["text"], passage.get("source") or None, passage.get("chunk") or None)
        found = locator.locate(label)
        if found is None:
            placed.unplaced.append(passage)
            continue
        if found != [label.chunk]:
            placed.moved += 1
        placed.chunk_ids.extend(chunk_id for chunk_id in found if chunk_id not in placed.chunk_ids)
    return placed
