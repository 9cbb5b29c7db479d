from stages.lib.documents.chunking import assign_split, chunk_id, make_chunks, sections
from stages.lib.documents.readers import SourceDocument
from stages.lib.documents.text import bm25_tokens, clean_extracted_text, detect_language, split_sentences


def test_cleaning_joins_broken_chinese_lines_and_drops_page_numbers():
    raw = "第一章 总则\n第一条\n为了规范证券发行和交易行为，保护投资者的合法\n权益，制定本法。\n- 3 -\n第二条　本法自公布之日起施行。"
    text = clean_extracted_text(raw)
    assert text.split("\n") == [
        "第一章 总则",
        "第一条 为了规范证券发行和交易行为，保护投资者的合法权益，制定本法。",
        "第二条 本法自公布之日起施行。",
    ]


def test_cleaning_english_hyphenation_and_spaces():
    raw = "The issuer shall disclose all mate-\nrial information to\ninvestors.\n\nPage 4 of 9\n"
    assert clean_extracted_text(raw) == "The issuer shall disclose all material information to investors."


def test_language_detection():
    assert detect_language("证券公司应当依法经营") == "zh"
    assert detect_language("The broker shall keep records.") == "en"


def test_sentences_and_bm25_tokens():
    assert split_sentences("甲应当报告。乙不得买卖；丙可以申请。", "zh") == ["甲应当报告。", "乙不得买卖；", "丙可以申请。"]
    tokens = bm25_tokens("证券公司应当依法审慎经营", "zh")
    assert "证券" in tokens and "公司" in tokens and "应当" not in tokens
    assert bm25_tokens("The Brokers shall keep records", "en") == ["brokers", "keep", "records"]


def test_chunk_ids_are_stable_and_depend_on_source():
    assert chunk_id("a.pdf", "text") == chunk_id("a.pdf", "text")
    assert chunk_id("a.pdf", "text") != chunk_id("b.pdf", "text")


def test_split_rule_is_seeded_and_independent_of_other_chunks():
    ids = [f"id{i}" for i in range(2000)]
    splits = [assign_split(i, 42, 0.1, 0.2) for i in ids]
    assert splits == [assign_split(i, 42, 0.1, 0.2) for i in ids]
    assert 0.15 < splits.count("test") / len(ids) < 0.25
    assert 0.06 < splits.count("val") / len(ids) < 0.14
    assert splits != [assign_split(i, 7, 0.1, 0.2) for i in ids]


def test_sections_track_heading_path():
    text = "第一章 总则\n第一条 甲。\n第二章 交易\n第一节 一般规定\n第二条 乙。\n第二节 禁止\n第三条 丙。"
    assert sections(text) == [
        ("第一章 总则", "第一条 甲。"),
        ("第二章 交易 > 第一节 一般规定", "第二条 乙。"),
        ("第二章 交易 > 第二节 禁止", "第三条 丙。"),
    ]


def test_make_chunks_respects_size_and_is_deterministic():
    body = "".join(f"第{i}条 证券公司应当依法审慎经营，勤勉尽责，诚实守信，防范风险第{i}项。" for i in range(40))
    doc = SourceDocument("law.pdf", "第一章 总则\n" + body)
    chunks, stats = make_chunks([doc], 60, 0, 8, 42, 0.1, 0.2)
    again, _ = make_chunks([doc], 60, 0, 8, 42, 0.1, 0.2)
    assert chunks == again
    assert len(chunks) > 5 and all(c.n_tokens <= 60 for c in chunks)
    assert all(c.section == "第一章 总则" and c.language == "zh" for c in chunks)
    assert len({c.id for c in chunks}) == len(chunks)
    # Sentence-aware: no chunk ends in the middle of a sentence.
    assert all(c.text.endswith("。") for c in chunks)


def test_overlong_chinese_sentence_is_cut_at_clauses():
    sentence = "，".join(f"证券公司第{i}项业务应当依法审慎经营" for i in range(20)) + "。"
    chunks, _ = make_chunks([SourceDocument("a.txt", sentence)], 40, 0, 4, 42, 0.1, 0.2)
    assert len(chunks) > 3 and all(c.n_tokens <= 40 for c in chunks)
    assert "".join(c.text for c in chunks) == sentence
