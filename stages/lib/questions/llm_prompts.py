"""Prompts for LLM question generation, and tolerant parsing and filtering of the answers."""

from __future__ import annotations

import json
import re
from collections import Counter
from difflib import SequenceMatcher

from stages.lib.documents.chunking import Chunk
from stages.lib.questions.qa_dataset import normalize_query

# Bump when a template changes: it is part of every cached response's key. The training and the evaluation
# templates have a version each, so that changing one never makes a user pay again for the other's answers.
PROMPT_VERSION = "2"
EVAL_PROMPT_VERSION = "eval-1"
LLM_STYLES = ("question", "keywords", "scenario")

_ZH_TEMPLATE = """你是一名帮助构建检索系统评测集的专家。下面是一段文档内容。
请站在真实用户的角度，写出 {n} 个用户可能会输入搜索框、而这段内容恰好能回答的查询。要求：
- 混合三种风格：自然的问题（question）、两到四个关键词组成的短查询（keywords）、描述具体情境的问题（scenario）；
- 用用户自己的话来说，不要照抄原文中的整句话；
- 每个查询都必须能仅凭这段内容回答，不要提及"这段内容""本条"或条文编号；
- 只输出 JSON：{{"questions": [{{"style": "question", "text": "..."}}]}}

<passage>
{passage}
</passage>"""

_EN_TEMPLATE = """You help build a retrieval benchmark. Below is a passage from a document.
Write {n} queries that real users would type into a search box and that this passage answers. Rules:
- Mix three styles: natural questions ("question"), short 2-4 keyword queries ("keywords"),
  and questions describing a concrete situation ("scenario").
- Use the words a user would use; do not copy sentences from the passage.
- Each query must be answerable from this passage alone; do not mention "the passage", "this section" or clause numbers.
- Output only JSON: {{"questions": [{{"style": "question", "text": "..."}}]}}

<passage>
{passage}
</passage>"""


# For the val and test splits, which judge: questions as people ask them, by someone who has not read the passage
# and does not know its terms. Questions that reuse the passage's words flatter BM25 (people's questions share
# 34-50% of their words with their passage, the offline generator's about 80%; metrics/questions.json measures each
# split's share, so what an LLM does with this prompt is measured on every run).
_ZH_EVAL_TEMPLATE = """你是一名帮助构建检索系统评测集的专家。下面是一段文档内容。
请设想 {n} 位没有读过这段内容的真实用户：每人遇到了一个具体的问题，用自己的话在搜索框里提问，而这段内容恰好能回答。要求：
- 用日常口语描述自己的处境或疑问，就像在咨询网站上提问一样；
- 不要使用这段内容里的专业术语和原话（普通人也会说的词除外），不要照抄其中任何短语，换成普通人的说法；
- 每个问题都必须能仅凭这段内容回答，不要提及"这段内容""本条"或条文编号；
- 只输出 JSON：{{"questions": [{{"style": "scenario", "text": "..."}}]}}

<passage>
{passage}
</passage>"""

_EN_EVAL_TEMPLATE = """You help build a retrieval benchmark. Below is a passage from a document.
Imagine {n} real users who have NOT read this passage: each has a concrete problem and types a question in their own
words into a search box, and this passage answers it. Rules:
- Describe the situation or the doubt in everyday language, as people ask on a help forum.
- Do not use the passage's technical terms or its wording (words anyone would say are fine), and do not copy any
  phrase from it: say it the way a layperson would.
- Each question must be answerable from this passage alone; do not mention "the passage", "this section" or clause numbers.
- Output only JSON: {{"questions": [{{"style": "scenario", "text": "..."}}]}}

<passage>
{passage}
</passage>"""


def build_prompt(chunk: Chunk, n_questions: int) -> str:
    """The prompt for a chunk's questions: a mix of styles for training, users' own words for val and test."""
    if chunk.split == "train":
        template = _ZH_TEMPLATE if chunk.language == "zh" else _EN_TEMPLATE
    else:
        template = _ZH_EVAL_TEMPLATE if chunk.language == "zh" else _EN_EVAL_TEMPLATE
    return template.format(n=n_questions, passage=chunk.text)


def prompt_version(chunk: Chunk) -> str:
    return PROMPT_VERSION if chunk.split == "train" else EVAL_PROMPT_VERSION


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)
_NUMBERING = re.compile(r"^\s*(?:[-*•]\s*|\(?\d{1,2}[.)、:：]\s*|[（(]?[一二三四五六七八九十]+[)）、.]\s*)")
_PREAMBLE = re.compile(
    r"^(?:here (?:are|is)\b.*|sure\b.*|以下是.*|下面是.*|好的.*|questions?:?|queries:?|问题[:：]?)$", re.I
)
_LABELS = r"question|keywords?|scenario|问题|关键词|情境|场景"
_STYLE_LABEL = re.compile(rf"^\s*(?:[\[(（【]({_LABELS})[\])）】]\s*[:：-]?|({_LABELS})\s*[:：-])\s*", re.I)
_STYLE_ALIASES = {"keyword": "keywords", "问题": "question", "关键词": "keywords", "情境": "scenario", "场景": "scenario"}


def _style(label: str | None) -> str:
    label = (label or "question").strip().lower()
    label = _STYLE_ALIASES.get(label, label)
    return label if label in LLM_STYLES else "question"


def _from_json(data) -> list[tuple[str, str]] | None:
    if isinstance(data, dict):
        data = data.get("questions", data.get("queries"))
    if not isinstance(data, list):
        return None
    out = []
    for item in data:
        if isinstance(item, str):
            out.append(("question", item))
        elif isinstance(item, dict) and isinstance(item.get("text") or item.get("query"), str):
            out.append((_style(item.get("style")), item.get("text") or item.get("query")))
    return out


def parse_questions(content: str) -> list[tuple[str, str]]:
    """(style, text) pairs from an LLM answer: JSON (fenced or not) or numbered/bulleted lines."""
    content = content.strip()
    candidates = [m.group(1) for m in _FENCE.finditer(content)] + [content]
    brace = content.find("{"), content.rfind("}")
    if 0 <= brace[0] < brace[1]:
        candidates.append(content[brace[0]: brace[1] + 1])
    for candidate in candidates:
        try:
            parsed = _from_json(json.loads(candidate))
        except (json.JSONDecodeError, TypeError):
            continue
        if parsed is not None:
            return parsed
    out = []
    for line in content.splitlines():
        line = line.strip().strip("`")
        if not line or line in ("{", "}", "[", "]") or _PREAMBLE.match(line):
            continue
        line = _NUMBERING.sub("", line)
        label = _STYLE_LABEL.match(line)
        style = _style(label.group(1) or label.group(2)) if label else "question"
        text = _STYLE_LABEL.sub("", line).strip().strip('"“”')
        if text:
            out.append((style, text))
    return out


def copied_fraction(query: str, passage: str) -> float:
    """Share of the query that is one contiguous copy from the passage."""
    if not query:
        return 0.0
    match = SequenceMatcher(None, query, passage, autojunk=False).find_longest_match(0, len(query), 0, len(passage))
    return match.size / len(query)


def filter_questions(
    parsed: list[tuple[str, str]], passage: str, max_chars: int, max_copy_fraction: float, seen: set[str],
    drops: Counter,
) -> list[tuple[str, str]]:
    """Keep useful queries; count each dropped one under its reason."""
    kept = []
    for style, text in parsed:
        text = re.sub(r"\s+", " ", text).strip()
        key = normalize_query(text)
        if len(key) < 2:
            drops["empty"] += 1
        elif len(text) > max_chars:
            drops["too_long"] += 1
        elif key in seen:
            drops["duplicate"] += 1
        elif len(text) >= 12 and copied_fraction(text, passage) > max_copy_fraction:
            drops["copies_passage"] += 1
        else:
            seen.add(key)
            kept.append((style, text))
    return kept
