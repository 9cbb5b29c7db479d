"""Language-aware text utilities: cleaning, sentences, tokens."""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Iterable
from functools import cache
from itertools import islice

CJK = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK_CHAR = re.compile(f"[{CJK}]")
_CJK_PUNCT = "。！？；：，、（）《》“”‘’「」"
# One "token" per CJK character, per Latin word or number, per other symbol:
# close to what a word-piece tokenizer (with a CJK-aware vocabulary) produces.
_APPROX_TOKEN = re.compile(f"[{CJK}]|[A-Za-z0-9]+|[^\\s{CJK}A-Za-z0-9]")
_PAGE_NUMBER_LINE = re.compile(
    r"^\s*(?:[-–—]\s*\d{1,4}\s*[-–—]|第\s*\d{1,4}\s*页(?:\s*/?\s*共\s*\d{1,4}\s*页)?|"
    r"(?:page\s+)?\d{1,4}(?:\s*(?:/|of)\s*\d{1,4})?)\s*$",
    re.IGNORECASE,
)
_SENTENCE_END_ZH = re.compile(r"(?<=[。！？；!?;])")
_SENTENCE_END_EN = re.compile(r"(?<=[.!?;])\s+(?=[A-Z0-9(\"'])")
_ARTICLE_HEAD = re.compile(r"^第[一二三四五六七八九十百千零〇两\d]+条")
_HEADING = re.compile(
    r"^(?:第[一二三四五六七八九十百千零〇\d]+[编章节]|#{1,6}\s|(?:Chapter|Section|Part)\s+[\dIVXLC]+\b)"
)


def cjk_ratio(text: str) -> float:
    letters = [ch for ch in text if ch.isalpha()]
    if not letters:
        return 0.0
    return sum(1 for ch in letters if _CJK_CHAR.match(ch)) / len(letters)


def detect_language(text: str) -> str:
    """'zh' when most letters are CJK ideographs, else 'en'."""
    return "zh" if cjk_ratio(text) >= 0.3 else "en"


def corpus_language(texts: Iterable[str]) -> str:
    """The language a corpus's words are cut in (by BM25 and the word-overlap measure): that of its first 50 texts."""
    return detect_language("".join(islice(texts, 50)))


def approx_token_count(text: str) -> int:
    return len(_APPROX_TOKEN.findall(text))


def approx_tokens(text: str) -> list[str]:
    return _APPROX_TOKEN.findall(text)


def _is_title_case(line: str) -> bool:
    words = line.split()
    long_words = [w for w in words if len(w) > 3]
    return 1 <= len(words) <= 10 and bool(long_words) and all(w[0].isupper() for w in long_words) and line[0].isupper()


def is_heading(line: str) -> bool:
    line = line.strip()
    if not line or len(line) > 80 or line.endswith(("。", ".", "，", ",", ";", "；", ":", "：")):
        return False
    return bool(_HEADING.match(line)) or (line.isascii() and _is_title_case(line))


def _joins_without_space(left: str, right: str) -> bool:
    return bool(_CJK_CHAR.match(left[-1:]) or left[-1:] in _CJK_PUNCT) and bool(
        _CJK_CHAR.match(right[:1]) or right[:1] in _CJK_PUNCT or right[:1].isdigit()
    )


def clean_extracted_text(text: str) -> str:
    """Undo PDF extraction noise: page numbers, hyphenation, hard line breaks.

    Paragraph structure is kept: headings and article starts (``第N条``) begin a
    new line; a line broken inside a sentence is joined to the previous one
    (without a space between CJK characters, with one between Latin words).
    """
    text = unicodedata.normalize("NFC", text).replace("\x00", "")
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u3000", " ")
    paragraphs: list[str] = []
    for raw_line in text.split("\n"):
        line = re.sub(r"[ \t]+", " ", raw_line).strip()
        if not line:
            if paragraphs and paragraphs[-1] != "":
                paragraphs.append("")
            continue
        if _PAGE_NUMBER_LINE.match(line):
            continue
        previous = paragraphs[-1] if paragraphs else ""
        starts_block = is_heading(line) or bool(_ARTICLE_HEAD.match(line)) or line.startswith(("- ", "* ", "• "))
        if previous and _ARTICLE_HEAD.fullmatch(previous) and not starts_block:
            # "第五条" alone on a line: the article's text follows on the next line.
            paragraphs[-1] = previous + " " + line
        elif previous and not starts_block and not is_heading(previous) and not previous.endswith(("。", "：", ":")):
            if previous.endswith("-") and line[:1].islower():
                paragraphs[-1] = previous[:-1] + line
            elif _joins_without_space(previous, line):
                paragraphs[-1] = previous + line
            else:
                paragraphs[-1] = previous + " " + line
        else:
            paragraphs.append(line)
    return "\n".join(paragraphs).strip()


def split_sentences(text: str, language: str) -> list[str]:
    pieces: list[str] = []
    for paragraph in text.split("\n"):
        splitter = _SENTENCE_END_ZH if language == "zh" else _SENTENCE_END_EN
        pieces.extend(part.strip() for part in splitter.split(paragraph))
    return [piece for piece in pieces if piece]


@cache
def jieba_segmenter():
    """jieba, loaded once per process with its dictionary initialised and its start-up chatter silenced:
    the one segmenter of every Chinese word the pipeline counts, searches or marks."""
    import jieba

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    return jieba


_ZH_ORDINAL = re.compile(r"^第?[一二三四五六七八九十百千零〇两\d]+[条款项章节]?$|^第")
_EN_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
EN_STOPWORDS = frozenset(
    """a an and are as at be by for from has have in is it its of on or that the this to was were will
    with shall may any such which who whom what when where how not no than then there these those their
    they be been being into under upon other under must can""".split()
)
ZH_STOPWORDS = frozenset(
    "的 了 和 与 及 或 是 在 对 由 为 以 其 之 等 并 而 于 被 将 应当 可以 不得 规定 本法 有关 按照 依照 "
    "根据 进行 以上 以下 下列 之一 一 不 也 中 上 所 有 者 该".split()
)


def bm25_tokens(text: str, language: str) -> list[str]:
    """Tokens for lexical retrieval: jieba words for Chinese, lower-cased words for English."""
    if language == "zh":
        words = jieba_segmenter().lcut_for_search(text)
        tokens = [w.lower() for w in words if w.strip() and not unicodedata.category(w[0]).startswith("P")]
        return [t for t in tokens if t not in ZH_STOPWORDS]
    return [w for w in _EN_WORD.findall(text.lower()) if w not in EN_STOPWORDS]


def content_words(text: str, language: str) -> list[str]:
    """Words that can stand in a keyword query (no stopwords, no punctuation, no single CJK chars)."""
    if language == "zh":
        words = jieba_segmenter().lcut(text)
        return [
            w for w in words
            if len(w) >= 2 and _CJK_CHAR.match(w[0]) and w not in ZH_STOPWORDS and not _ZH_ORDINAL.match(w)
        ]
    return [w for w in _EN_WORD.findall(text.lower()) if len(w) >= 3 and w not in EN_STOPWORDS]
