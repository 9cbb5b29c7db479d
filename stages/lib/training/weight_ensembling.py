"""Weight-space ensembling of the fine-tuned model with its base model (WiSE-FT, Wortsman et al. 2022;
FlagEmbedding's LM-Cocktail): θ = α·θ_fine-tuned + (1 − α)·θ_base, α = 0 the base model, α = 1 the
selected checkpoint.

Owns the interpolation of two state dicts (rows a vocabulary extension added to the token-embedding
matrix, and parameters the base does not have, keep their fine-tuned values) and the choice of α among
``train.wise_ft_alphas``: each α is scored by the val evaluator that selected the checkpoint, on the very
model object the Trainer evaluated (same device, same mixed-precision wrapper), and the best is kept,
ties going to the larger α. The model is left holding the chosen weights, for ``save_selected_model``.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

# Scores the Trainer logs carry this prefix; the evaluator itself returns the names without it.
TRAINER_METRIC_PREFIX = "eval_"

log = logging.getLogger(__name__)


class IncompatibleWeights(ValueError):
    """The base and the fine-tuned weights cannot be interpolated: they are not one architecture."""


@dataclass(frozen=True)
class EnsembleChoice:
    """What the ensembling step decided: the α saved and the val score of every α it compared."""

    alpha: float  # 0: the base model was selected (nothing mixed); 1.0: the checkpoint as it is
    val_scores: dict[float, float] = field(default_factory=dict)  # α -> val NDCG@10 (1.0: the keeper's own score)
    score: float | None = None  # val NDCG@10 of what is saved; None without validation

    @property
    def mixes_weights(self) -> bool:
        return 0.0 < self.alpha < 1.0


def alpha_tag(alpha: float) -> str:
    """α as a name without a dot (metric keys: DVC reads dots as nesting): 0.5 -> a050, 1.0 -> a100, 0.125 -> a012p5."""
    percent = f"{alpha * 100:.4f}".rstrip("0").rstrip(".")
    whole, _, fraction = percent.partition(".")
    return "a" + whole.zfill(3) + (f"p{fraction}" if fraction else "")


def best_alpha(val_scores: Mapping[float, float]) -> float:
    """The α with the highest score; a tie goes to the larger α, the smaller step away from what selection picked."""
    return max(val_scores, key=lambda alpha: (val_scores[alpha], alpha))


def interpolated_tensor(name: str, base, finetuned, alpha: float, token_embedding_key: str | None = None):
    """α·finetuned + (1 − α)·base for one parameter, in float32.

    ``base`` None (the base has no such parameter) keeps the fine-tuned tensor. The token-embedding matrix
    (``token_embedding_key``) may have more rows than the base's: a vocabulary extended before training, whose
    new tokens have no base embedding to mix with, so those rows keep their fine-tuned values.
    """
    import torch

    if base is None or not finetuned.is_floating_point():
        # Integer buffers (ids, counters) are not weights: there is nothing to average.
        return finetuned
    finetuned, base = finetuned.float(), base.to(device=finetuned.device, dtype=torch.float32)
    if base.shape == finetuned.shape:
        if torch.equal(base, finetuned):
            # Frozen during training (e.g. the token embeddings): the mix would only add rounding.
            return finetuned
        return alpha * finetuned + (1.0 - alpha) * base
    extended_rows = (name == token_embedding_key and base.dim() == finetuned.dim() == 2
                     and base.shape[1] == finetuned.shape[1] and base.shape[0] < finetuned.shape[0])
    if not extended_rows:
        raise IncompatibleWeights(
            f"cannot interpolate parameter '{name}': the fine-tuned model has shape {tuple(finetuned.shape)}, the base "
            f"model {tuple(base.shape)}. Only the token-embedding matrix may differ (rows added by the vocabulary "
            "extension); the two models are not one architecture: was models/base replaced during training? "
            "Rerun `dvc repro`."
        )
    mixed = finetuned.clone()
    vocabulary = base.shape[0]
    mixed[:vocabulary] = interpolated_tensor(name, base, finetuned[:vocabulary], alpha)
    return mixed


def interpolate_state_dicts(base: Mapping, finetuned: Mapping, alpha: float,
                            token_embedding_key: str | None = None) -> dict:
    """The fine-tuned state dict with every parameter moved to α·finetuned + (1 − α)·base (see ``interpolated_tensor``)."""
    return {name: interpolated_tensor(name, base.get(name), tensor, alpha, token_embedding_key)
            for name, tensor in finetuned.items()}


def load_interpolation(model, base: Mapping, finetuned: Mapping, alpha: float, token_embedding_key: str | None) -> None:
    """Write α·finetuned + (1 − α)·base into ``model``'s own tensors, one parameter at a time (no third full copy)."""
    import torch

    target = model.state_dict()  # tensors sharing the model's storage: copy_ writes into the model
    missing = sorted(set(target) - set(finetuned))
    if missing:
        raise IncompatibleWeights(f"the selected checkpoint lacks parameters of the model it was trained as: {missing[:5]}")
    with torch.no_grad():
        for name, tensor in target.items():
            tensor.copy_(interpolated_tensor(name, base.get(name), finetuned[name], alpha, token_embedding_key))


def token_embedding_key(model) -> str | None:
    """The state-dict name of a SentenceTransformer's token-embedding matrix (the one a vocabulary extension grows)."""
    embeddings = model[0].auto_model.get_input_embeddings().weight
    return next((name for name, parameter in model.named_parameters() if parameter is embeddings), None)


def fp32_state_dict(model_dir: Path) -> dict:
    """A saved SentenceTransformer's weights in float32 on the CPU, named as in the training model's state dict."""
    import torch
    from sentence_transformers import SentenceTransformer

    loaded = SentenceTransformer(str(model_dir), device="cpu", model_kwargs={"dtype": torch.float32})
    return {name: tensor.float() if tensor.is_floating_point() else tensor for name, tensor in loaded.state_dict().items()}


@contextlib.contextmanager
def _model_card_unchanged(model) -> Iterator[None]:
    # The evaluator records each call in the model's card data: scoring candidates must not add rows to the
    # card of the model that is saved.
    card = getattr(model, "model_card_data", None)
    saved = {name: copy.copy(getattr(card, name)) for name in ("training_logs", "eval_results_dict") if hasattr(card, name)}
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(card, name, value)


def ensemble_with_base(model, keeper, evaluator, alphas: list[float], val_metric: str, base_dir: Path,
                       selected_dir: Path, val_source: str = "val") -> EnsembleChoice:
    """Choose α among ``alphas`` on ``evaluator`` and leave ``model`` holding the chosen weights.

    ``keeper``: the best-model keeper that selected ``selected_dir``; ``val_metric``: its metric (the Trainer's
    name). Nothing is scored when the base model won selection (α 0), without validation (α 1: the last model is
    saved), or when 1.0, the checkpoint itself, is the only candidate (ensembling off).
    """
    if keeper.best_step is None or evaluator is None:
        if alphas != [1.0]:
            log.info("weight ensembling with the base model skipped: no golden val to choose alpha on (alpha 1: the trained model)")
        return EnsembleChoice(alpha=1.0)
    if keeper.best_step == 0:
        if alphas != [1.0]:
            log.info("weight ensembling with the base model skipped: the base model itself was selected (alpha 0)")
        return EnsembleChoice(alpha=0.0, score=keeper.best_score)
    candidates = sorted(set(alphas), reverse=True)
    if candidates == [1.0]:  # off: nothing compared
        return EnsembleChoice(alpha=1.0, score=keeper.best_score)

    base, selected = fp32_state_dict(base_dir), fp32_state_dict(selected_dir)
    embedding_key = token_embedding_key(model)
    metric = val_metric.removeprefix(TRAINER_METRIC_PREFIX)
    scores: dict[float, float] = {}
    with _model_card_unchanged(model):
        for alpha in candidates:
            if alpha == 1.0:  # the checkpoint itself: the keeper scored it on this evaluator
                scores[alpha] = keeper.best_score
                what = f"the step-{keeper.best_step} checkpoint, already scored"
            else:
                load_interpolation(model, base, selected, alpha, embedding_key)
                scores[alpha] = evaluator(model)[metric]
                what = f"{alpha:g} fine-tuned + {1 - alpha:g} base"
            log.info(f"weight ensembling alpha {alpha:.2f} ({what}): {val_source} NDCG@10 {scores[alpha]:.4f}")
    chosen = best_alpha(scores)
    load_interpolation(model, base, selected, chosen, embedding_key)
    log.info(f"weight ensembling: kept alpha {chosen:.2f} ({val_source} NDCG@10 {scores[chosen]:.4f}; "
        f"ties go to the larger alpha)")
    return EnsembleChoice(alpha=chosen, val_scores=scores, score=scores[chosen])
