"""Read a folder of documents (PDF, Markdown, text, DOCX) with llama-index's file readers."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from stages.lib.errors import UserError
from stages.lib.text import clean_extracted_text

SUPPORTED_SUFFIXES = (".pdf", ".md", ".markdown", ".txt", ".docx")
# Below this many characters of text per page, a PDF is taken to be a scan.
MIN_CHARS_PER_PDF_PAGE = 20


@dataclass(frozen=True)
class SourceDocument:
    source: str  # path relative to the documents folder, with forward slashes
    text: str  # cleaned text, paragraphs separated by "\n"


def list_document_files(folder: Path) -> tuple[list[Path], list[Path]]:
    """Return (supported files, ignored files), sorted, hidden files skipped."""
    if not folder.is_dir():
        raise UserError(
            f"params.yaml key 'corpus.documents_dir' is {str(folder)!r}, which is not a folder. "
            "Point it at the folder that holds your PDF/Markdown/TXT/DOCX files."
        )
    files = sorted(
        p for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    supported = [p for p in files if p.suffix.lower() in SUPPORTED_SUFFIXES]
    ignored = [p for p in files if p.suffix.lower() not in SUPPORTED_SUFFIXES]
    if not supported:
        raise UserError(
            f"The documents folder {str(folder)!r} (params.yaml key 'corpus.documents_dir') holds no "
            f"supported documents ({', '.join(SUPPORTED_SUFFIXES)})"
            + (f"; it has only: {', '.join(p.name for p in ignored[:5])}" if ignored else "; it is empty")
            + ". Add your documents there or change the key."
        )
    return supported, ignored


def _check_pdf(path: Path) -> int:
    """Fail early, naming the file, on PDFs the reader would choke on; return the page count."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(str(path))
        if reader.is_encrypted and not reader.decrypt(""):
            raise UserError(
                f"{path} is an encrypted PDF that needs a password. Decrypt it first "
                f"(e.g. `qpdf --decrypt --password=... in.pdf out.pdf`) or remove it from the folder."
            )
        return len(reader.pages)
    except UserError:
        raise
    except (PdfReadError, ValueError, OSError, KeyError, TypeError) as error:
        raise UserError(
            f"{path} could not be read as a PDF ({type(error).__name__}: {error}). The file is corrupt or "
            "not really a PDF: re-export or re-download it, or remove it from the folder."
        ) from None


def strip_markdown_inline(text: str) -> str:
    """Drop images, keep link text, remove emphasis markers; headings stay for sectioning."""
    text = re.sub(r"!\[[^\]]*\]\([^)]*\)", "", text)
    text = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", text)
    return re.sub(r"(\*\*|__|`)", "", text)


def _check_utf8(path: Path) -> None:
    # The text readers silently drop undecodable bytes: refuse instead of indexing garbage.
    try:
        path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise UserError(
            f"{path} is not UTF-8 text (byte {error.start} is invalid). Convert it, e.g. "
            f"`iconv -f GBK -t UTF-8 '{path}' -o fixed.txt`, and run again."
        ) from None


def _reader_for(path: Path):
    from llama_index.readers.file import DocxReader, FlatReader, PDFReader

    suffix = path.suffix.lower()
    if suffix == ".pdf":
        return PDFReader(return_full_document=True)
    if suffix in (".md", ".markdown"):
        # Read as-is: the '#' headings drive our section paths (MarkdownReader drops them).
        return FlatReader()
    if suffix == ".docx":
        return DocxReader()
    return None  # plain text: SimpleDirectoryReader's default


def load_document(path: Path, folder: Path) -> SourceDocument:
    from llama_index.core import SimpleDirectoryReader

    pages = _check_pdf(path) if path.suffix.lower() == ".pdf" else 0
    if path.suffix.lower() in (".txt", ".md", ".markdown"):
        _check_utf8(path)
    reader = _reader_for(path)
    extractor = {path.suffix.lower(): reader} if reader else None
    try:
        parts = SimpleDirectoryReader(
            input_files=[str(path)], file_extractor=extractor, raise_on_error=True, encoding="utf-8"
        ).load_data(show_progress=False)
    except Exception as error:  # the readers raise many types; name the file either way
        cause = error.__cause__ or error
        raise UserError(
            f"{path} could not be read ({type(cause).__name__}: {cause}). Check that the file opens in its "
            "usual program, re-export it, or remove it from the folder."
        ) from None
    raw = "\n".join(part.text for part in parts)
    if path.suffix.lower() in (".md", ".markdown"):
        raw = strip_markdown_inline(raw)
    text = clean_extracted_text(raw)
    relative = path.relative_to(folder).as_posix()
    if pages and len(text) < MIN_CHARS_PER_PDF_PAGE * pages:
        raise UserError(
            f"{path} has almost no extractable text ({len(text)} characters on {pages} page(s)): it is probably "
            "a scan without a text layer. Run OCR on it first (e.g. `ocrmypdf in.pdf out.pdf`) or remove it."
        )
    if not text.strip():
        raise UserError(f"{path} contains no text. Remove it from the documents folder or fill it.")
    return SourceDocument(source=relative, text=text)


def load_documents(folder: Path) -> tuple[list[SourceDocument], list[Path]]:
    from stages.lib.progress import progress

    files, ignored = list_document_files(folder)
    documents = []
    with progress(len(files), "[corpus] reading documents", unit="file") as bar:
        for path in files:
            documents.append(load_document(path, folder))
            bar.update(1)
    return documents, ignored
