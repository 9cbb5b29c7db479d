"""The offline question generator: no network, deterministic, several query styles.

Styles, per chunk:

- ``question``: a natural question derived from a sentence by language-aware
  patterns (definitions, duties, prohibitions, permissions, conditions,
  penalties, deadlines), falling back to a topic question built from the
  chunk's key terms. Phrased as users ask, not copied from the passage.
- ``keywords``: two to four of the chunk's most distinctive terms (TF-IDF over
  the corpus), the way people type into a search box.
- ``sentence``: one sentence of the chunk (Inverse Cloze Task); the training
  stage removes it from the positive passage most of the time, so the model
  learns to match a statement to its context rather than to copy strings.
- ``topic``: the chunk's section heading, stripped of numbering.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from collections.abc import Callable, Iterable

from stages.lib.documents.chunking import Chunk
from stages.lib.documents.text import approx_token_count, content_words, split_sentences
from stages.lib.questions.qa_dataset import GeneratedQuery, normalize_query

_ZH_ARTICLE_HEAD = re.compile(r"^第[一二三四五六七八九十百千零〇两\d]+条\s*")
_ZH_NUMBERING = re.compile(r"^(?:第[一二三四五六七八九十百千零〇\d]+[编章节]\s*|[（(][一二三四五六七八九十\d]+[)）]\s*)")
_EN_NUMBERING = re.compile(r"^(?:(?:article|section|chapter)\s+[\divxlc]+[.:]?\s*|\(?[\da-z]{1,3}[.)]\s+)", re.I)
_ZH_LEADING_FILLER = re.compile(r"^(?:除[^，]{0,30}外，|依照本法规定，|违反本法规定，|根据本法规定，|前款规定的|本法所称|本条所称)")
_ZH_MODALS = ("应当", "不得", "可以", "必须", "禁止", "有权")


def _clip(text: str, limit: int) -> str:
    """First clause of ``text`` when it is long, so questions stay short."""
    text = text.strip("，,。；; ")
    if len(text) <= limit:
        return text
    head = re.split(r"[，,；;、]", text)[0]
    return head if len(head) <= limit else head[:limit]


def _zh_subject_and_rest(sentence: str, modal: str) -> tuple[str, str] | None:
    before, _, after = sentence.partition(modal)
    clauses = [c for c in re.split(r"[，,]", before) if c.strip()]
    if not clauses or not after.strip():
        return None
    subject = _ZH_LEADING_FILLER.sub("", clauses[-1].strip())
    if not 2 <= len(subject) <= 24:
        return None
    return subject, after


def zh_questions(sentence: str, keywords: list[str]) -> list[str]:
    s = _ZH_LEADING_FILLER.sub("", _ZH_ARTICLE_HEAD.sub("", sentence)).strip().rstrip("。；;")
    out: list[str] = []
    definition = re.match(r"^(?:本法所称)?(.{2,20}?)[，,]?(?:是指|指的是)(.+)", s)
    if definition:
        term = definition.group(1)
        out += [f"什么是{term}？", f"{term}是指什么？"]
    if re.search(r"罚款|处以|没收违法所得|追究刑事责任|责令|警告|市场禁入|吊销", s):
        condition = s.split("的，")[0] if "的，" in s else ""
        condition = _ZH_LEADING_FILLER.sub("", condition.split("，")[-1] if condition else "")
        if 4 <= len(condition) <= 40:
            out += [f"{condition}会受到什么处罚？", f"{condition}要承担什么法律责任？"]
    if re.search(r"下列条件|下列情形|下列规定|下列事项|下列文件|下列职责", s):
        head = re.split(r"下列", s)[0].rstrip("，,符合具备有：:")
        head = _ZH_LEADING_FILLER.sub("", head.split("，")[-1])
        if 2 <= len(head) <= 30:
            out += [f"{head}需要满足哪些条件？", f"{head}包括哪些情形？"]
    deadline = re.search(r"(\d+|[一二三四五六七八九十百]+)(?:个)?(?:日|月|年|个工作日)内", s)
    for modal in _ZH_MODALS:
        if modal not in s:
            continue
        parts = _zh_subject_and_rest(s, modal)
        if parts is None:
            continue
        subject, rest = parts
        if "下列" in rest.split("，")[0]:
            # "有权采取下列措施：" -> "...有权采取哪些措施？"
            out.append(f"{subject}{modal}{rest.split('，')[0].replace('下列', '哪些').rstrip('：:；;')}？")
            break
        action = _clip(rest, 14)
        if subject.endswith("的") and len(subject) >= 5:
            # A legal condition ("...造成损失的，应当..."): ask about the situation.
            situation = subject[:-1]
            out += [f"{situation}，需要{action}吗？", f"{situation}怎么办？"] if modal in ("应当", "必须") else [
                f"{situation}，{'可以' if modal == '可以' else '能'}{action}吗？"]
        elif modal in ("应当", "必须"):
            out += [f"{subject}需要{action}吗？", f"{subject}有哪些义务？"]
            if deadline:
                out.append(f"{subject}应当在多长时间内{_clip(rest.split(deadline.group(0))[-1], 10)}？")
        elif modal in ("不得", "禁止"):
            out += [f"{subject}可以{action}吗？", f"{subject}有哪些禁止行为？"]
        elif modal == "可以":
            out += [f"什么情况下{subject}可以{action}？", f"{subject}能否{action}？"]
        elif modal == "有权":
            out += [f"{subject}有哪些权利？", f"{subject}有权{action}吗？"]
        break
    return out


def zh_topic_questions(keywords: list[str]) -> list[str]:
    if len(keywords) >= 2:
        return [f"关于{keywords[0]}和{keywords[1]}有什么规定？", f"{keywords[0]}{keywords[1]}是怎么规定的？"]
    return [f"法律对{keywords[0]}有什么规定？"] if keywords else []


def en_questions(sentence: str, keywords: list[str]) -> list[str]:
    s = _EN_NUMBERING.sub("", sentence).strip().rstrip(".;")
    out: list[str] = []
    definition = re.match(r"^(?:the term\s+)?[\"“]?([A-Za-z][\w \-]{1,40}?)[\"”]?\s+(?:means|refers to|is defined as)\s+(.+)", s, re.I)
    if definition:
        term = definition.group(1)
        out += [f"What is {term}?", f"What does {term} mean?"]
    if re.search(r"\b(fine|penalt|liable|imprison|sanction)", s, re.I):
        out.append(f"What is the penalty for {' '.join(keywords[:2]) or 'this'}?")
    modal = re.search(r"\b(shall not|must not|may not|shall|must|may|is required to)\b", s, re.I)
    if modal:
        subject = s[: modal.start()].split(",")[-1].strip()
        action = " ".join(re.split(r"[,;:]", s[modal.end():])[0].split()[:10])
        word = modal.group(1).lower()
        if 1 <= len(subject.split()) <= 8 and action:
            subject_lc = subject[0].lower() + subject[1:]
            if word in ("shall not", "must not", "may not"):
                out += [f"Can {subject_lc} {action}?", f"What is {subject_lc} not allowed to do?"]
            elif word == "may":
                out += [f"When can {subject_lc} {action}?", f"Is {subject_lc} allowed to {action}?"]
            else:
                out += [f"Does {subject_lc} have to {action}?", f"What must {subject_lc} do?"]
    return out


def en_topic_questions(keywords: list[str]) -> list[str]:
    if len(keywords) >= 2:
        return [f"What are the rules on {keywords[0]} and {keywords[1]}?", f"How does {keywords[0]} {keywords[1]} work?"]
    return [f"What does the document say about {keywords[0]}?"] if keywords else []


def inverse_document_frequency(chunks: Iterable[Chunk]) -> dict[str, float]:
    document_frequency: Counter[str] = Counter()
    total = 0
    for chunk in chunks:
        total += 1
        document_frequency.update(set(content_words(chunk.text, chunk.language)))
    return {word: math.log((1 + total) / (1 + df)) + 1.0 for word, df in document_frequency.items()}


def top_terms(chunk: Chunk, idf: dict[str, float], limit: int = 8) -> list[str]:
    counts = Counter(content_words(chunk.text, chunk.language))
    scored = sorted(counts, key=lambda w: (-counts[w] * idf.get(w, 1.0), w))
    return scored[:limit]


def _topic(section: str) -> str:
    parts = [_EN_NUMBERING.sub("", _ZH_NUMBERING.sub("", part.strip())).strip() for part in section.split(" > ")]
    return " ".join(p for p in parts if p)


def _sentences(chunk: Chunk) -> list[str]:
    clean = []
    for sentence in split_sentences(chunk.text, chunk.language):
        sentence = _ZH_NUMBERING.sub("", _ZH_ARTICLE_HEAD.sub("", sentence)).strip()
        if approx_token_count(sentence) >= 6:
            clean.append(sentence)
    return clean


def queries_for_chunk(
    chunk: Chunk, styles: dict[str, int], idf: dict[str, float], seed: int, max_chars: int
) -> list[GeneratedQuery]:
    rng = random.Random(f"{seed}:{chunk.id}")
    terms = top_terms(chunk, idf)
    sentences = _sentences(chunk)
    candidates: dict[str, Callable[[], list[str]]] = {
        "sentence": lambda: list(sentences),
        "question": lambda: _question_pool(chunk.language, sentences, terms, rng, styles.get("question", 0)),
        "keywords": lambda: _keyword_queries(terms, rng, styles.get("keywords", 0)),
        "topic": lambda: [_topic(chunk.section)] if _topic(chunk.section) else [],
    }
    out: list[GeneratedQuery] = []
    seen: set[str] = set()
    for style, count in styles.items():
        pool = [c for c in dict.fromkeys(candidates[style]()) if c and len(c) <= max_chars]
        if style != "question":  # the question pool is already ordered by preference
            rng.shuffle(pool)
        taken = 0
        for text in pool:
            key = normalize_query(text)
            if taken >= count or not key or key in seen:
                continue
            seen.add(key)
            out.append(GeneratedQuery(text, style, chunk.id))
            taken += 1
    return out


def _question_pool(language: str, sentences: list[str], terms: list[str], rng: random.Random, count: int) -> list[str]:
    """Pattern questions first (shuffled); topic questions only to fill up."""
    ask = zh_questions if language == "zh" else en_questions
    pool = [q for s in sentences for q in ask(s, terms)]
    rng.shuffle(pool)
    fill = (zh_topic_questions if language == "zh" else en_topic_questions)(terms)
    return pool[: max(count, 1)] + fill


def _keyword_queries(terms: list[str], rng: random.Random, count: int) -> list[str]:
    if len(terms) < 2:
        return list(terms)
    queries = []
    for _ in range(max(count, 1) * 3):
        size = rng.randint(2, min(4, len(terms)))
        picked = sorted(rng.sample(terms[:6], min(size, len(terms[:6]))), key=terms.index)
        queries.append(" ".join(picked))
    return queries


def generate_offline(
    chunks: list[Chunk], styles: dict[str, int], idf: dict[str, float], seed: int, max_chars: int
) -> list[GeneratedQuery]:
    from stages.lib.common.progress import progress

    queries: list[GeneratedQuery] = []
    with progress(len(chunks), "[questions] offline generator", unit="chunk") as bar:
        for chunk in chunks:
            queries.extend(queries_for_chunk(chunk, styles, idf, seed, max_chars))
            bar.update(1)
    return queries
