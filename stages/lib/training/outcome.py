"""What a training run reports: the figures of ``metrics/train.json`` (hardware, vocabulary coverage,
pairs, model selection and weight ensembling, loss, the cost of checkpointing), the selection logged with
the training curves, and the closing lines the stage logs, assembled from the run's inputs, its Trainer
and callbacks (``TrainingSetup``) and its ensembling choice. The curves themselves are DVCLive's
(``live_curves.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from stages.lib.common.params import Params
from stages.lib.models.hardware import Hardware
from stages.lib.training.inputs import Built
from stages.lib.training.weight_ensembling import EnsembleChoice, alpha_tag


@dataclass(frozen=True)
class Outcome:
    """A finished run, as the report reads it."""

    params: Params
    hardware: Hardware
    built: Built
    setup: object  # TrainingSetup: the Trainer, the best-model keeper, the checkpoint cost, the curves
    ensemble: EnsembleChoice
    resumed_from: int  # the checkpoint's step (0: a fresh run)
    train_seconds: float


def loss_rows(log_history: list[dict]) -> list[dict]:
    """The training-loss entries of the Trainer's log history (restored with a resumed checkpoint): the whole run."""
    return [{"step": entry.get("step", 0), "loss": entry["loss"]} for entry in log_history if "loss" in entry]


def training_metrics(outcome: Outcome) -> dict:
    """``metrics/train.json``: keys and rounding as they have always been (DVC compares them across revisions)."""
    params, hardware, built, ensemble = outcome.params, outcome.hardware, outcome.built, outcome.ensemble
    trainer, keeper, cost = outcome.setup.trainer, outcome.setup.keeper, outcome.setup.checkpoint_cost
    losses = loss_rows(trainer.state.log_history)
    resumed_from, train_seconds = outcome.resumed_from, outcome.train_seconds
    steps_this_run = trainer.state.global_step - resumed_from
    vocabulary, pairs, validation = built.vocabulary, built.pairs, built.validation
    return {
        **hardware.metrics(),  # device, precision and, where auto measured it, each precision's rate
        "processes": hardware.processes,
        "unk_rate_before": round(vocabulary.unk_rate_before, 4),
        "unk_rate_after": round(vocabulary.unk_rate_after, 4),
        "tokens_added": vocabulary.tokens_added,
        "token_embeddings_frozen": int(vocabulary.embeddings_frozen),
        "train_pairs": pairs.used,
        "train_pairs_available": pairs.available,
        # Of those, from the extra training documents (corpus.extra_documents_dir; budget train.max_extra_pairs).
        "train_pairs_extra": pairs.extra,
        "train_pairs_extra_available": pairs.extra_available,
        # Training questions the round-trip filter kept and dropped (train.round_trip_filter; 0 and 0 when off).
        "round_trip_queries_kept": built.round_trip.kept,
        "round_trip_queries_dropped": built.round_trip.dropped,
        "val_queries": validation.queries,
        "val_corpus": validation.corpus,
        "learning_rate": params.train.learning_rate,
        "steps": trainer.state.global_step,
        "resumed_from_step": resumed_from,
        "best_step": keeper.best_step or 0,
        # Model selection: where, the base model's own score there (step 0), and whether it won.
        "selected_on": validation.source if validation.chooses else "final step",
        "val_ndcg@10_base": round(keeper.scores.get(0, 0.0), 4),
        "base_model_selected": int(keeper.best_step == 0),
        # Weight ensembling with the base (train.wise_ft_alphas): the alpha saved (0: the base model was selected;
        # 1.0: the checkpoint as it is) and the val NDCG@10 of each alpha compared, keyed without a dot (DVC would
        # read one as nesting), e.g. wise_ft_val_ndcg@10_a050 for 0.5.
        "wise_ft_alpha": ensemble.alpha,
        **{f"wise_ft_val_ndcg@10_{alpha_tag(alpha)}": round(score, 4) for alpha, score in sorted(ensemble.val_scores.items())},
        # Over the whole run, resumed or not (the Trainer's own figure covers only this process's steps).
        "train_loss": round(sum(r["loss"] for r in losses) / len(losses), 4) if losses else 0.0,
        # Of what was saved: the selected checkpoint, or its ensemble with the base.
        # Of what was saved, on the val questions (synthetic ones when they only drew the curve).
        "best_val_ndcg@10": round(_kept_score(ensemble, keeper), 4),
        "train_seconds": round(train_seconds, 1),
        "checkpoints_saved": cost.saved,
        "checkpoint_seconds": round(cost.seconds, 1),
        "pairs_per_second": round(steps_this_run * params.train.batch_size / train_seconds, 2) if train_seconds else 0.0,
    }


def _kept_score(ensemble: EnsembleChoice, keeper) -> float:
    score = ensemble.score if ensemble.score is not None else keeper.best_score
    return score if score is not None else 0.0


def log_selection(outcome: Outcome) -> None:
    """The selection, into the DVCLive summary beside the curves (rank 0, when the run logs curves)."""
    curves = outcome.setup.curves
    if curves is None:
        return
    ensemble, keeper = outcome.ensemble, outcome.setup.keeper
    curves.finish(step=outcome.setup.trainer.state.global_step, best_step=keeper.best_step or 0, alpha=ensemble.alpha,
                  kept_score=_kept_score(ensemble, keeper) if outcome.built.validation.evaluator is not None else None,
                  wise_ft_scores={alpha_tag(alpha): score for alpha, score in sorted(ensemble.val_scores.items())})


def closing_lines(outcome: Outcome, output_dir) -> list[str]:
    """What the stage says when the run is done: its size and time, the step kept, and whether fine-tuning helped."""
    built, keeper, state = outcome.built, outcome.setup.keeper, outcome.setup.trainer.state
    source = built.validation.source
    score = keeper.best_score or float("nan")
    kept = (f"best {source} NDCG@10 {score:.3f} at step {keeper.best_step}" if built.validation.chooses else
            f"kept the final step ({source} NDCG@10 {score:.3f}, for the curve only)")
    lines = [f"{built.pairs.used} pairs x {outcome.params.train.epochs} epochs, {state.global_step} steps in "
             f"{outcome.train_seconds:.0f}s; {kept}"]
    if keeper.best_step == 0:
        lines.append(f"no fine-tuned step beat the base model on {source}: {output_dir} is the base model itself (with "
                     "its prompts). Fine-tuning did not help with this data and recipe.")
    return lines
