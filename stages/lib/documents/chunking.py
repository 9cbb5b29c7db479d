"""Documents -> chunks with stable ids, section paths and a deterministic split."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

from stages.lib.documents.text import approx_tokens, detect_language, is_heading, split_sentences

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Chunk:
    id: str
    text: str
    source: str
    split: str
    language: str
    section: str  # heading path, " > "-joined; "" when the document has none
    position: int  # order within its source document
    n_tokens: int

    def to_json(self) -> dict:
        return asdict(self)


def chunk_id(source: str, text: str) -> str:
    """Stable across runs and machines: a hash of where the text is from and what it says."""
    return hashlib.sha256(f"{source}\n{text}".encode()).hexdigest()[:16]


def assign_split(identifier: str, seed: int, val_fraction: float, test_fraction: float) -> str:
    """Seeded, per-chunk rule: adding or removing other chunks never moves this one."""
    digest = hashlib.sha256(f"{seed}:{identifier}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < test_fraction:
        return "test"
    if u < test_fraction + val_fraction:
        return "val"
    return "train"


def _heading_level(line: str) -> int:
    stripped = line.lstrip()
    if stripped.startswith("#"):
        return len(stripped) - len(stripped.lstrip("#"))
    for level, marker in enumerate(("编", "章", "节"), start=1):
        head = stripped.split(" ")[0]
        if head.startswith("第") and head.endswith(marker):
            return level
    return 1


def sections(text: str) -> list[tuple[str, str]]:
    """Split a cleaned document into (heading path, body) blocks at its headings."""
    blocks: list[tuple[str, str]] = []
    path: list[tuple[int, str]] = []
    body: list[str] = []

    def flush() -> None:
        if body:
            blocks.append((" > ".join(title for _, title in path), "\n".join(body)))
            body.clear()

    for line in text.split("\n"):
        if is_heading(line):
            flush()
            level = _heading_level(line)
            path = [(lvl, title) for lvl, title in path if lvl < level]
            path.append((level, line.strip().lstrip("#").strip()))
        elif line.strip():
            body.append(line)
    flush()
    return blocks


def split_text(text: str, language: str, chunk_size: int, chunk_overlap: int) -> list[str]:
    from llama_index.core.node_parser import SentenceSplitter

    splitter = SentenceSplitter(
        chunk_size=chunk_size,
        chunk_overlap=chunk_overlap,
        tokenizer=approx_tokens,
        paragraph_separator="\n",
        separator=" ",
        # Overlong sentences are cut at clause punctuation before falling back to characters.
        secondary_chunking_regex=r"[^,.;:，；：、。？！]+[,.;:，；：、。？！]?",
        chunking_tokenizer_fn=lambda t: _keep_whitespace_sentences(t, language),
    )
    return [piece.strip() for piece in splitter.split_text(text) if piece.strip()]


def _keep_whitespace_sentences(text: str, language: str) -> list[str]:
    # SentenceSplitter re-joins its pieces verbatim, so each sentence keeps its
    # trailing separator.
    sentences = split_sentences(text, language)
    joiner = " " if language == "en" else ""
    return [s + joiner for s in sentences]


def make_chunks(
    documents: list, chunk_size: int, chunk_overlap: int, min_tokens: int, seed: int,
    val_fraction: float, test_fraction: float,
) -> tuple[list[Chunk], dict[str, int]]:
    chunks: list[Chunk] = []
    seen: set[str] = set()
    stats = {"duplicates_dropped": 0, "too_short_dropped": 0}
    for document in documents:
        language = detect_language(document.text)
        position = 0
        for section, body in sections(document.text):
            for piece in split_text(body, language, chunk_size, chunk_overlap):
                n_tokens = len(approx_tokens(piece))
                if n_tokens < min_tokens:
                    stats["too_short_dropped"] += 1
                    continue
                identifier = chunk_id(document.source, piece)
                if identifier in seen:
                    stats["duplicates_dropped"] += 1
                    continue
                seen.add(identifier)
                split = assign_split(identifier, seed, val_fraction, test_fraction)
                chunks.append(Chunk(identifier, piece, document.source, split, language, section, position, n_tokens))
                position += 1
    return chunks, stats
