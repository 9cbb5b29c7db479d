"""Readers on real files: a rendered law PDF, Markdown, text, DOCX; and bad input."""

from pathlib import Path

import pytest

from stages.lib.documents import load_documents
from stages.lib.errors import UserError
from stages.lib.law_pdf import law_database, read_laws, render_law_pdf
from stages.lib.params import SampleParams

FONTS = SampleParams()


@pytest.fixture(scope="module")
def law_pdf(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("law")
    (law,) = read_laws(law_database(), ["中华人民共和国国歌法"])
    render_law_pdf(law, folder / "国歌法.pdf", FONTS.cjk_font, FONTS.latin_font)
    return folder


def test_rendered_law_pdf_extracts_articles_and_headings(law_pdf):
    (document,), ignored = load_documents(law_pdf)
    assert not ignored
    lines = document.text.split("\n")
    assert lines[0] == "中华人民共和国国歌法（2017年9月1日修订）"
    assert "第一条 为了维护国歌的尊严" in document.text
    assert sum(1 for line in lines if line.startswith("第") and "条 " in line[:8]) == 16
    # No page numbers or broken lines survive the cleaning.
    assert not any(line.strip("- ").isdigit() for line in lines)
    assert all(not line.startswith(("，", "。")) for line in lines)


def test_pdf_is_byte_identical_across_renders(tmp_path):
    (law,) = read_laws(law_database(), ["中华人民共和国国歌法"])
    render_law_pdf(law, tmp_path / "a.pdf", FONTS.cjk_font, FONTS.latin_font)
    render_law_pdf(law, tmp_path / "b.pdf", FONTS.cjk_font, FONTS.latin_font)
    assert (tmp_path / "a.pdf").read_bytes() == (tmp_path / "b.pdf").read_bytes()


def test_markdown_text_and_docx(tmp_path):
    import docx

    (tmp_path / "guide.md").write_text("# Margin Lending\n\nA broker **shall** keep a record of every loan.\n")
    (tmp_path / "notes.txt").write_text("Clients may close the account at any time.\n")
    document = docx.Document()
    document.add_paragraph("The custodian shall segregate client assets.")
    document.save(tmp_path / "policy.docx")
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    documents, ignored = load_documents(tmp_path)
    by_source = {d.source: d.text for d in documents}
    assert set(by_source) == {"guide.md", "notes.txt", "policy.docx"}
    assert "keep a record of every loan" in by_source["guide.md"]
    assert by_source["policy.docx"] == "The custodian shall segregate client assets."
    assert [p.name for p in ignored] == ["image.png"]


def test_empty_folder(tmp_path):
    with pytest.raises(UserError, match="holds no supported documents.*empty"):
        load_documents(tmp_path)


def test_missing_folder(tmp_path):
    with pytest.raises(UserError, match="corpus.documents_dir"):
        load_documents(tmp_path / "nope")


def test_corrupt_pdf_names_the_file(tmp_path):
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.7\n1 0 obj <<\ngarbage")
    with pytest.raises(UserError, match=r"broken\.pdf could not be read") as caught:
        load_documents(tmp_path)
    assert "remove it" in str(caught.value)


def test_encrypted_pdf_names_the_file(tmp_path, law_pdf):
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(next(law_pdf.glob("*.pdf"))))
    writer.encrypt(user_password="secret", owner_password="owner")
    with (tmp_path / "locked.pdf").open("wb") as handle:
        writer.write(handle)
    with pytest.raises(UserError, match=r"locked\.pdf is an encrypted PDF"):
        load_documents(tmp_path)


def test_scanned_pdf_without_text_layer(tmp_path):
    from fpdf import FPDF

    pdf = FPDF()
    for _ in range(2):
        pdf.add_page()
        pdf.set_fill_color(40, 40, 40)
        pdf.rect(20, 20, 150, 200, style="F")  # a "scanned" page: graphics, no text
    pdf.output(str(tmp_path / "scan.pdf"))
    with pytest.raises(UserError, match=r"scan\.pdf has almost no extractable text.*OCR"):
        load_documents(tmp_path)


def test_non_utf8_text(tmp_path):
    (tmp_path / "gbk.txt").write_bytes("证券公司应当依法经营。".encode("gbk"))
    with pytest.raises(UserError, match=r"gbk\.txt"):
        load_documents(tmp_path)


def test_unknown_law_suggests_names():
    with pytest.raises(UserError, match="did you mean"):
        read_laws(law_database(), ["中华人民共和国证券"])
