"""Readers on real files: a rendered law PDF, Markdown, text, DOCX; and bad input."""

import re
from pathlib import Path

import pytest

from stages.lib.common.errors import UserError
from stages.lib.documents.law_pdf import NO_LINE_START, article_lead, law_database, read_laws, render_law_pdf, render_laws, wrap_text
from stages.lib.documents.readers import load_documents


@pytest.fixture(scope="module")
def law_pdf(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("law")
    (law,) = read_laws(law_database(), ["中华人民共和国国歌法"])
    render_law_pdf(law, folder / "国歌法.pdf")
    return folder


def test_rendered_law_pdf_extracts_articles_and_headings(law_pdf):
    (document,), ignored = load_documents(law_pdf)
    assert not ignored
    lines = document.text.split("\n")
    assert lines[0] == "中华人民共和国国歌法（2017年9月1日修订）"
    assert "第一条 为了维护国歌的尊严" in document.text
    assert sum(1 for line in lines if line.startswith("第") and "条 " in line[:8]) == 16
    # No page numbers, NUL bytes or broken lines survive the cleaning.
    assert not any(line.strip("- ").isdigit() for line in lines)
    assert "\x00" not in document.text
    assert all(not line.startswith(("，", "。")) for line in lines)


def _squeezed(text: str) -> str:
    return re.sub(r"\s+", "", text)


@pytest.mark.parametrize("name", [
    "中华人民共和国国歌法",  # articles only
    "中华人民共和国拍卖法",  # chapters and sections
    "全国人民代表大会常务委员会关于在沿海港口城市设立海事法院的决定",  # numbered items (条目N), not articles
])
def test_text_layer_holds_every_article_and_heading(tmp_path, name):
    # The PDF's text layer must be lossless: each article's database text, whitespace aside,
    # comes back through the project's reader, at the start of a line; each heading is a line of its own.
    (law,) = read_laws(law_database(), [name])
    render_law_pdf(law, tmp_path / "law.pdf")
    (document,), _ = load_documents(tmp_path)
    text = _squeezed(document.text)
    missing = [article.number for article in law.articles if _squeezed(article_lead(article.number) + article.text) not in text]
    assert not missing, f"articles lost in the PDF text layer: {missing}"
    lines = document.text.split("\n")
    headings = {heading for article in law.articles for heading in (article.chapter, article.section) if heading}
    assert all(heading in lines for heading in headings), sorted(headings - set(lines))
    # 第N条 starts a line (an item's "N、" may be joined to the line before by the cleaning, like any sentence).
    leads = [article_lead(article.number) for article in law.articles if article.number.startswith("第")]
    assert [line.split(" ")[0] + "\u3000" for line in lines if line.split(" ")[0] + "\u3000" in leads] == leads


def test_article_leads():
    assert article_lead("第十七条之一") == "第十七条之一\u3000"
    assert article_lead("条目三") == "三、"
    assert article_lead("全文") == ""


def test_wrap_text_keeps_every_character_and_never_starts_a_line_with_closing_punctuation():
    text = "依照本法规定，" * 40 + "（一）证券；" * 30 + "ABC-123 " * 30 + "-" * 300
    lines = wrap_text(text, 11)
    assert "".join(lines) == text
    assert len(lines) > 5
    assert not any(line[0] in NO_LINE_START for line in lines[1:])
    assert not any(line.endswith("（") for line in lines)
    # A Latin word or number is never cut in two.
    assert not any(a[-1].isascii() and a[-1].isalnum() and b[0].isascii() and b[0].isalnum() for a, b in zip(lines, lines[1:], strict=False))


def test_pdf_is_byte_identical_across_renders(tmp_path):
    (law,) = read_laws(law_database(), ["中华人民共和国国歌法"])
    render_law_pdf(law, tmp_path / "a.pdf")
    render_law_pdf(law, tmp_path / "b.pdf")
    assert (tmp_path / "a.pdf").read_bytes() == (tmp_path / "b.pdf").read_bytes()


def test_parallel_rendering_writes_the_same_files(tmp_path):
    laws = read_laws(law_database(), ["中华人民共和国国歌法", "中华人民共和国国旗法", "中华人民共和国国徽法"])
    render_laws(laws, tmp_path / "pool", workers=2)
    render_laws(laws, tmp_path / "inline", workers=1)
    pool = {p.name: p.read_bytes() for p in (tmp_path / "pool").iterdir()}
    assert sorted(pool) == sorted(f"{law.name}.pdf" for law in laws)
    assert pool == {p.name: p.read_bytes() for p in (tmp_path / "inline").iterdir()}


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
    from reportlab.pdfgen.canvas import Canvas

    pdf = Canvas(str(tmp_path / "scan.pdf"))
    for _ in range(2):
        pdf.setFillGray(0.15)
        pdf.rect(60, 200, 420, 560, stroke=0, fill=1)  # a "scanned" page: graphics, no text
        pdf.showPage()
    pdf.save()
    with pytest.raises(UserError, match=r"scan\.pdf has almost no extractable text.*OCR"):
        load_documents(tmp_path)


GBK_TEXT = "第一条 证券公司应当依法经营，不得损害客户的合法权益。\n第二条 劳动者享有平等就业的权利。"


def test_gbk_and_gb18030_text_is_read_and_its_encoding_recorded(tmp_path):
    # What Windows Notepad and many Chinese editors save: GBK text and GB18030 Markdown (with a character
    # outside GBK, which only GB18030's four-byte codes hold), next to UTF-8 with and without a BOM.
    rare = "𠀀"  # U+20000, CJK Extension B
    (tmp_path / "gbk.txt").write_bytes(GBK_TEXT.encode("gbk"))
    (tmp_path / "notes.md").write_bytes(f"# 笔记\n{GBK_TEXT}{rare}".encode("gb18030"))
    (tmp_path / "plain.txt").write_bytes(GBK_TEXT.encode("utf-8"))
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbf" + GBK_TEXT.encode("utf-8"))
    documents, _ = load_documents(tmp_path)
    by_source = {d.source: d for d in documents}
    assert {s: d.encoding for s, d in by_source.items()} == {
        "bom.txt": "utf-8-sig", "gbk.txt": "gb18030", "notes.md": "gb18030", "plain.txt": "utf-8"}
    for name in ("gbk.txt", "plain.txt", "bom.txt"):
        assert by_source[name].text == GBK_TEXT
    assert by_source["notes.md"].text.endswith(rare) and "劳动者享有平等就业的权利" in by_source["notes.md"].text


def test_bytes_no_encoding_explains_stop_with_the_file_and_byte_named(tmp_path):
    # Valid neither as UTF-8 nor as GB18030: 0xff never starts a GB18030 character.
    (tmp_path / "broken.txt").write_bytes("证券".encode("gbk") + b"\xff\xfe\x00" + "法".encode("gbk"))
    with pytest.raises(UserError, match=r"broken\.txt cannot be read as text: it is neither UTF-8 nor GB18030/GBK "
                                         r"\(byte 4, 0xff, is invalid.*iconv"):
        load_documents(tmp_path)
    (tmp_path / "broken.txt").unlink()
    (tmp_path / "bad_bom.txt").write_bytes(b"\xef\xbb\xbf" + "证券".encode("gbk") + b"\xff")
    with pytest.raises(UserError, match=r"bad_bom\.txt cannot be read as text: it starts with a UTF-8 byte-order mark"):
        load_documents(tmp_path)


def test_unknown_law_suggests_names():
    with pytest.raises(UserError, match="did you mean"):
        read_laws(law_database(), ["中华人民共和国证券"])


def test_a_law_name_means_its_current_version():
    # The database keeps a superseded version (历史版本) of a few laws under the same name.
    (constitution,) = read_laws(law_database(), ["中华人民共和国宪法"])
    assert constitution.version_date == "2018-03-11"
    assert len(read_laws(law_database(), ["ALL"])) == 367
