"""Read a folder of documents: PDF and DOCX with llama-index's file readers, text and Markdown decoded here.

Chinese ``.txt`` and Markdown files are often GBK/GB18030 rather than UTF-8 (what Windows Notepad and many
Chinese editors save). Text is decoded strictly, UTF-8 first, then GB18030 (a superset of GBK and GB2312);
the encoding that worked is recorded per document. Bytes neither explains stop the stage with the file
and the offending byte named, never a silent replacement.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from pathlib import Path

from stages.lib.common.errors import UserError
from stages.lib.documents.text import clean_extracted_text

SUPPORTED_SUFFIXES = (".pdf", ".md", ".markdown", ".txt", ".docx")
TEXT_SUFFIXES = (".md", ".markdown", ".txt")
# Tried in this order, strictly. Valid UTF-8 is almost never valid-looking GB18030 by accident, and the
# reverse (GBK bytes that happen to form UTF-8) is rare beyond a few characters.
TEXT_ENCODINGS = ("utf-8", "gb18030")
# Below this many characters of text per page, a PDF is taken to be a scan.
MIN_CHARS_PER_PDF_PAGE = 20


@dataclass(frozen=True)
class SourceDocument:
    source: str  # path relative to the documents folder, with forward slashes
    text: str  # cleaned text, paragraphs separated by "\n"
    encoding: str = "utf-8"  # how a text file's bytes were decoded (utf-8, utf-8-sig, gb18030); "binary": PDF/DOCX


def list_document_files(folder: Path, key: str = "corpus.documents_dir",
                        require_documents: bool = True) -> tuple[list[Path], list[Path]]:
    """Return (supported files, ignored files), sorted, hidden files skipped; ``key`` is the param named in errors."""
    if not folder.is_dir():
        raise UserError(
            f"params.yaml key '{key}' is {str(folder)!r}, which is not a folder. "
            "Point it at the folder that holds your PDF/Markdown/TXT/DOCX files."
        )
    files = sorted(
        p for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    supported = [p for p in files if p.suffix.lower() in SUPPORTED_SUFFIXES]
    ignored = [p for p in files if p.suffix.lower() not in SUPPORTED_SUFFIXES]
    if not supported and require_documents:
        raise UserError(
            f"The documents folder {str(folder)!r} (params.yaml key '{key}') holds no "
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


def decode_text(path: Path) -> tuple[str, str]:
    """The file's text and the encoding that decoded it: strict UTF-8 (BOM or not), else strict GB18030."""
    data = path.read_bytes()
    if data.startswith(codecs.BOM_UTF8):
        try:
            return data[len(codecs.BOM_UTF8):].decode("utf-8"), "utf-8-sig"
        except UnicodeDecodeError as error:
            raise _undecodable(path, data, error, "it starts with a UTF-8 byte-order mark") from None
    first_error = None
    for encoding in TEXT_ENCODINGS:
        try:
            return data.decode(encoding), encoding
        except UnicodeDecodeError as error:
            first_error = first_error or error
    raise _undecodable(path, data, first_error, "it is neither UTF-8 nor GB18030/GBK") from None


def _undecodable(path: Path, data: bytes, error: UnicodeDecodeError, why: str) -> UserError:
    around = data[max(0, error.start - 8):error.start + 8].hex(" ")
    return UserError(
        f"{path} cannot be read as text: {why} (byte {error.start}, 0x{data[error.start]:02x}, is invalid; bytes "
        f"around it: {around}). Convert it to UTF-8 from the encoding it was saved in, e.g. "
        f"`iconv -f BIG5 -t UTF-8 '{path}' -o fixed.txt` (or -f SHIFT-JIS, -f CP1252, ...), or remove it."
    )


def _reader_for(path: Path):
    from llama_index.readers.file import DocxReader, PDFReader

    return PDFReader(return_full_document=True) if path.suffix.lower() == ".pdf" else DocxReader()


def load_document(path: Path, folder: Path) -> SourceDocument:
    from llama_index.core import SimpleDirectoryReader

    pages = _check_pdf(path) if path.suffix.lower() == ".pdf" else 0
    if path.suffix.lower() in TEXT_SUFFIXES:
        # Decoded here, not by the text readers: they assume UTF-8 and silently drop what does not decode.
        raw, encoding = decode_text(path)
    else:
        raw, encoding = _read_binary(path, SimpleDirectoryReader), "binary"
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
    return SourceDocument(source=relative, text=text, encoding=encoding)


def _read_binary(path: Path, reader_class) -> str:
    reader = _reader_for(path)
    try:
        parts = reader_class(
            input_files=[str(path)], file_extractor={path.suffix.lower(): reader}, raise_on_error=True,
        ).load_data(show_progress=False)
    except Exception as error:  # the readers raise many types; name the file either way
        cause = error.__cause__ or error
        raise UserError(
            f"{path} could not be read ({type(cause).__name__}: {cause}). Check that the file opens in its "
            "usual program, re-export it, or remove it from the folder."
        ) from None
    return "\n".join(part.text for part in parts)


def load_documents(folder: Path) -> tuple[list[SourceDocument], list[Path]]:
    from stages.lib.common.progress import progress

    files, ignored = list_document_files(folder)
    documents = []
    with progress(len(files), "[corpus] reading documents", unit="file") as bar:
        for path in files:
            documents.append(load_document(path, folder))
            bar.update(1)
    return documents, ignored
