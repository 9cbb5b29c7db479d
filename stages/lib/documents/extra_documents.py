"""Extra training documents: a second folder whose text only ever becomes training questions.

Users have more text than the documents they search: related laws, older versions, a neighbouring
department's manuals. Fine-tuning mostly learns the domain and the task (question -> passage), so
such text can add training pairs; it must never become part of what is evaluated. This module reads
``corpus.extra_documents_dir`` into chunks that are all in the ``train`` split, with sources under
``extra/`` so their ids can never collide with the target corpus's, and refuses a folder that is
missing, holds no documents, or is (or holds) the target corpus itself.

The sample stage writes the extra laws of ``sample.extra_laws`` into ``data/sample_extra/`` with a
manifest (``extra_manifest.py``); a manifest listing no laws is the one way the folder may be empty.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from stages.lib.common.errors import UserError
from stages.lib.documents.chunking import Chunk
from stages.lib.documents.extra_manifest import intentionally_empty
from stages.lib.documents.readers import SourceDocument, list_document_files, load_documents

EXTRA_SOURCE_PREFIX = "extra/"
KEY = "corpus.extra_documents_dir"


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_extra_folder(extra_dir: Path, documents_dir: Path) -> None:
    """One clear message for each way the folder cannot be training material."""
    if not extra_dir.is_dir():
        raise UserError(
            f"params.yaml key '{KEY}' is '{extra_dir}', which is not a folder. Point it at a folder of documents "
            "related to yours (training material only: never searched, never evaluated), or keep the default "
            "data/sample_extra, which the sample stage fills from 'sample.extra_laws' (empty when that list is): "
            "`dvc repro` runs that stage first."
        )
    extra, target = extra_dir.resolve(), documents_dir.resolve()
    if _inside(extra, target) or _inside(target, extra):
        raise UserError(
            f"params.yaml key '{KEY}' is '{extra_dir}', which is (or holds, or lies inside) the target corpus "
            f"'corpus.documents_dir' ({documents_dir}). Extra documents are training material only: their questions "
            "must not be about the passages that are evaluated. Use a separate folder."
        )


def load_extra_chunks(extra_dir: Path, documents_dir: Path, target_documents: list[SourceDocument],
                      chunk_size: int, chunk_overlap: int, min_tokens: int) -> tuple[list[Chunk], list[SourceDocument]]:
    """The extra folder's chunks, all in the ``train`` split; ``([], [])`` for an intentionally empty folder."""
    from stages.lib.documents.chunking import make_chunks

    check_extra_folder(extra_dir, documents_dir)
    files, _ = list_document_files(extra_dir, KEY, require_documents=False)
    if not files:
        if intentionally_empty(extra_dir):
            return [], []
        raise UserError(
            f"params.yaml key '{KEY}' is '{extra_dir}', which holds no supported documents (PDF, Markdown, text, "
            "DOCX). Put related documents there, or set it to data/sample_extra (filled from 'sample.extra_laws')."
        )
    documents, _ = load_documents(extra_dir)
    by_text = {document.text: document.source for document in target_documents}
    for document in documents:
        if document.text in by_text:
            raise UserError(
                f"{extra_dir / document.source} (from '{KEY}') has the same text as the target document "
                f"{documents_dir / by_text[document.text]}: extra documents must not be the corpus that is evaluated. "
                "Remove it from the extra folder."
            )
    documents = [replace(document, source=EXTRA_SOURCE_PREFIX + document.source) for document in documents]
    # The split seed and fractions do not matter: every extra chunk is training material.
    chunks, _ = make_chunks(documents, chunk_size, chunk_overlap, min_tokens, 0, 0.0, 0.0)
    return [replace(chunk, split="train") for chunk in chunks], documents


def check_no_collision(target: list[Chunk], extra: list[Chunk]) -> None:
    """Ids are hashes of source and text and extra sources carry a prefix: a collision is a bug, never silent."""
    clash = {chunk.id for chunk in target} & {chunk.id for chunk in extra}
    if clash:
        raise RuntimeError(f"extra chunk ids collide with the target corpus: {sorted(clash)[:3]}")

