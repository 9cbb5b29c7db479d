"""The questions stage's generation and per-split numbers (``stages/lib/questions/generation.py``), offline generator."""

from __future__ import annotations

from stages.lib.documents.chunking import Chunk
from stages.lib.questions.generation import generate_questions, split_metrics
from stages.lib.questions.qa_dataset import build_dataset
from tests.helpers import repository_params

TARGET = [
    Chunk("t1", "第十条 发行人申请公开发行股票，应当聘请证券公司担任保荐人。保荐人应当遵守业务规则，诚实守信。",
          "law.pdf", "train", "zh", "第二章 证券发行", 0, 50),
    Chunk("t2", "第十一条 证券公司不得违背客户的委托为其买卖证券。违反前款规定的，责令改正。", "law.pdf", "val", "zh",
          "第三章 证券公司", 1, 40),
    Chunk("t3", "第十二条 本法所称内幕信息，是指涉及公司经营、财务的尚未公开的信息。", "law.pdf", "test", "zh", "", 2, 30),
]
EXTRA = [
    Chunk("x1", "第五条 公司股东依法享有资产收益、参与重大决策和选择管理者等权利。", "company.pdf", "train", "zh",
          "第一章 总则", 0, 30),
]


def test_extra_documents_add_train_questions_and_leave_the_target_s_as_they_were(tmp_path):
    params = repository_params().questions.model_copy(update={"generator": "offline"})
    alone, alone_stats = generate_questions(TARGET, [], params, tmp_path)
    with_extra, _ = generate_questions(TARGET, EXTRA, params, tmp_path)
    assert alone_stats == {}  # offline: no calls, no cost
    assert set(alone) == {"train", "val", "test"} and all(alone[split] for split in alone)
    assert with_extra["val"] == alone["val"] and with_extra["test"] == alone["test"]
    assert with_extra["train"][:len(alone["train"])] == alone["train"]
    extra_queries = with_extra["train"][len(alone["train"]):]
    assert extra_queries and {q.chunk_id for q in extra_queries} == {"x1"}


def test_split_metrics_count_queries_pairs_styles_and_the_extra_documents_share(tmp_path):
    params = repository_params().questions.model_copy(update={"generator": "offline"})
    generated, _ = generate_questions(TARGET, EXTRA, params, tmp_path)
    corpus = {c.id: c.text for c in TARGET + EXTRA}
    train = build_dataset(generated["train"], corpus)
    metrics = split_metrics("train", train, "zh", {"x1"})
    keys = list(metrics)
    assert keys[:3] == ["train_queries", "train_pairs", "train_word_overlap"]  # the order metrics/questions.json has
    assert keys[-1] == "train_queries_from_extra_documents"
    assert metrics["train_queries"] == len(train.queries)
    assert sum(metrics[k] for k in keys[3:-1]) == len(train.queries)  # one count per style, summing to all
    assert metrics["train_queries_from_extra_documents"] == sum(1 for q in generated["train"] if q.chunk_id == "x1")
    assert 0 < metrics["train_word_overlap"] <= 1
    test = build_dataset(generated["test"], corpus)
    assert "test_queries_from_extra_documents" not in split_metrics("test", test, "zh", {"x1"})
