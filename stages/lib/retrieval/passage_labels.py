"""Labels that name a chunk by its text, so they survive re-chunking.

The labelling view (``python -m stages.ui``, ``/label``) stores each chunk a person marked relevant with its id,
its document and its text. Chunk ids are hashes of the text, so any change of ``corpus.chunk_size`` or
``chunk_overlap`` gives new ids. A label is then found again by its text:

* the chunk with the stored id, when it still holds the same text (whitespace ignored): that chunk;
* otherwise the labelled text is looked up in its document as the chunks now cut it (their texts in order,
  whitespace ignored, the part each repeats of the one before removed), and every chunk that holds a good part
  of it is relevant: at least a quarter of the labelled text, or half of the chunk itself. A label split by a
  smaller chunk size becomes its two halves, one merged by a larger size the chunk that now holds it, and a
  neighbour holding a few of its characters across a moved boundary is not relevant;
* a labelled text that is not in its document any more (the document was edited there) cannot be placed: the
  caller reports it with the file, line and question, never drops it silently.

When the labelled document is not in the corpus (renamed), every document is looked in. Each document's text is
put together once, for the documents whose labels need it.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass

from stages.lib.documents.chunking import Chunk

LABEL_SHARE = 0.25  # a chunk holding at least this share of the labelled text is relevant
CHUNK_SHARE = 0.5  # and so is one whose own text is at least this much the labelled text
# Characters a chunk must repeat of the one before to count as overlap (corpus.chunk_overlap) rather than chance.
MIN_REPEAT = 8


@dataclass(frozen=True)
class PassageLabel:
    text: str
    source: str | None
    chunk: str | None  # the chunk id when it was labelled

    def preview(self, chars: int = 30) -> str:
        squashed = squash(self.text)
        return squashed[:chars] + ("…" if len(squashed) > chars else "")


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


@dataclass(frozen=True)
class _Document:
    text: str  # the chunks' squashed texts in order, each without what it repeats of the one before
    spans: list[tuple[int, int, str]]  # per chunk: where its whole text lies in ``text``, and its id


def _join(chunks: list[Chunk]) -> _Document:
    text, spans = "", []
    for chunk in sorted(chunks, key=lambda c: c.position):
        piece = squash(chunk.text)
        longest = min(len(text), len(piece))
        repeated = next((n for n in range(longest, MIN_REPEAT - 1, -1) if text.endswith(piece[:n])), 0)
        start = len(text) - repeated
        text += piece[repeated:]
        spans.append((start, len(text), chunk.id))
    return _Document(text, spans)


class PassageLocator:
    """Finds labelled passages among one corpus's chunks."""

    def __init__(self, chunks: list[Chunk]) -> None:
        self.by_id = {c.id: c for c in chunks}
        self.by_source: dict[str, list[Chunk]] = defaultdict(list)
        for chunk in chunks:
            self.by_source[chunk.source].append(chunk)
        self._documents: dict[str, _Document] = {}

    def locate(self, label: PassageLabel) -> list[str] | None:
        """Ids of the chunks that hold the labelled text (in document order), or None when it is not there."""
        same = self.by_id.get(label.chunk or "")
        wanted = squash(label.text)
        if same is not None and squash(same.text) == wanted:
            return [same.id]
        if not wanted:
            return None
        sources = [label.source] if label.source in self.by_source else sorted(self.by_source)
        for source in sources:
            document = self._document(source)
            start = document.text.find(wanted)
            if start < 0:
                continue
            end = start + len(wanted)
            held = [(min(end, e) - max(start, s), e - s, cid) for s, e, cid in document.spans if s < end and e > start]
            return [cid for shared, own, cid in held if shared >= LABEL_SHARE * len(wanted) or shared >= CHUNK_SHARE * own]
        return None

    def _document(self, source: str) -> _Document:
        if source not in self._documents:
            self._documents[source] = _join(self.by_source[source])
        return self._documents[source]
