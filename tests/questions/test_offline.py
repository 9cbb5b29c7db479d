from stages.lib.documents.chunking import Chunk
from stages.lib.questions.offline import en_questions, generate_offline, inverse_document_frequency, zh_questions
from stages.lib.questions.qa_dataset import build_dataset, query_id

ZH = [
    Chunk("c1", "第十条 发行人申请公开发行股票，应当聘请证券公司担任保荐人。保荐人应当遵守业务规则，诚实守信，勤勉尽责。",
          "law.pdf", "train", "zh", "第二章 证券发行", 0, 50),
    Chunk("c2", "第十一条 证券公司不得违背客户的委托为其买卖证券。违反前款规定的，责令改正，处以五十万元以下的罚款。",
          "law.pdf", "train", "zh", "第三章 证券公司", 1, 50),
    Chunk("c3", "第十二条 本法所称内幕信息，是指涉及公司经营、财务的尚未公开的信息。", "law.pdf", "test", "zh", "", 2, 30),
]
EN = [
    Chunk("e1", "A broker shall keep a record of every margin loan. A client may close the account at any time.",
          "guide.md", "train", "en", "Margin Lending", 0, 20),
    Chunk("e2", "Market maker means a firm that quotes both buy and sell prices. A market maker shall not front-run orders.",
          "guide.md", "train", "en", "Market Makers", 1, 20),
]
STYLES = {"question": 2, "keywords": 1, "sentence": 1, "topic": 1}


def test_generation_is_deterministic_and_seeded():
    idf = inverse_document_frequency(ZH)
    first = generate_offline(ZH, STYLES, idf, seed=1, max_chars=120)
    assert first == generate_offline(ZH, STYLES, idf, seed=1, max_chars=120)
    assert first != generate_offline(ZH, STYLES, idf, seed=2, max_chars=120)


def test_all_styles_and_no_duplicates_per_chunk():
    idf = inverse_document_frequency(ZH)
    queries = generate_offline(ZH, STYLES, idf, seed=1, max_chars=120)
    by_chunk = {}
    for q in queries:
        by_chunk.setdefault(q.chunk_id, []).append(q)
    for chunk in ZH[:2]:
        styles = [q.style for q in by_chunk[chunk.id]]
        assert styles.count("question") == 2 and "keywords" in styles and "sentence" in styles and "topic" in styles
        texts = [q.text for q in by_chunk[chunk.id]]
        assert len(texts) == len(set(texts))
    topic = next(q.text for q in queries if q.chunk_id == "c1" and q.style == "topic")
    assert topic == "证券发行"  # numbering stripped


def test_chinese_question_patterns():
    assert "什么是内幕信息？" in zh_questions("本法所称内幕信息，是指涉及公司经营、财务的尚未公开的信息。", [])
    duty = zh_questions("发行人申请公开发行股票，应当聘请证券公司担任保荐人。", [])
    assert any(q.startswith("发行人申请公开发行股票需要") for q in duty)
    penalty = zh_questions("违反前款规定的，责令改正，处以五十万元以下的罚款。", [])
    assert not penalty or all(q.endswith("？") for q in penalty)
    ban = zh_questions("证券公司不得违背客户的委托为其买卖证券。", [])
    assert "证券公司可以违背客户的委托为其买卖证券吗？" in ban


def test_english_question_patterns():
    assert "What is Market maker?" in en_questions("Market maker means a firm that quotes prices.", [])
    assert "Can a market maker front-run orders?" in en_questions("A market maker shall not front-run orders.", [])
    assert "Does a broker have to keep a record of every margin loan?" in en_questions(
        "A broker shall keep a record of every margin loan.", [])


def test_english_keywords_drop_stopwords():
    idf = inverse_document_frequency(EN)
    queries = generate_offline(EN, {"keywords": 1}, idf, seed=3, max_chars=120)
    for q in queries:
        words = q.text.split()
        assert 1 <= len(words) <= 4 and not {"the", "shall", "a"} & set(words)


def test_dataset_merges_identical_queries_with_stable_ids():
    from stages.lib.questions.qa_dataset import GeneratedQuery

    generated = [GeneratedQuery("证券发行", "topic", "c1"), GeneratedQuery("证券发行。", "topic", "c2"),
                 GeneratedQuery("什么是内幕信息？", "question", "c3")]
    dataset = build_dataset(generated, {c.id: c.text for c in ZH})
    qid = query_id("证券发行")
    assert dataset.relevant_docs[qid] == ["c1", "c2"]
    assert len(dataset.queries) == 2 and set(dataset.corpus) == {"c1", "c2", "c3"}
    assert qid == query_id(" 证券发行 ")
