"""What a training run reports: the loss and validation curves for ``dvc plots``, read from the
Trainer's log history, and the figures of ``metrics/train.json`` (hardware, vocabulary coverage,
pairs, model selection and weight ensembling, loss, the cost of checkpointing), assembled from the run's
inputs, its Trainer, its best-model keeper and its ensembling choice.
"""

from __future__ import annotations

import csv
from pathlib import Path

from stages.lib.common.params import Params
from stages.lib.models.hardware import Hardware
from stages.lib.training.inputs import Built
from stages.lib.training.weight_ensembling import EnsembleChoice, alpha_tag


def curves_from_history(log_history: list[dict], metric_prefix: str) -> tuple[list[dict], list[dict]]:
    """Loss and validation curves from the Trainer's log history (restored with a resumed checkpoint)."""
    loss_rows, val_rows = [], []
    for entry in log_history:
        step, epoch = entry.get("step", 0), round(entry.get("epoch") or 0, 3)
        if "loss" in entry:
            loss_rows.append({"step": step, "epoch": epoch, "loss": entry["loss"]})
        values = {k.removeprefix(metric_prefix): v for k, v in entry.items() if k.startswith(metric_prefix)}
        if values:
            val_rows.append({"step": step, "epoch": epoch, **values})
    return loss_rows, val_rows


def write_curve(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = list(dict.fromkeys(key for row in rows for key in row)) or ["step"]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def write_curves(curves_dir: Path, log_history: list[dict], metric_prefix: str) -> list[dict]:
    """``loss.csv`` and ``val.csv`` in ``curves_dir``; returns the loss rows, which the metrics average."""
    loss_rows, val_rows = curves_from_history(log_history, metric_prefix)
    write_curve(curves_dir / "loss.csv", loss_rows)
    write_curve(curves_dir / "val.csv", val_rows)
    return loss_rows


def training_metrics(params: Params, hardware: Hardware, built: Built, trainer, keeper, ensemble: EnsembleChoice,
                     loss_rows: list[dict], resumed_from: int, train_seconds: float) -> dict:
    steps_this_run = trainer.state.global_step - resumed_from
    return {
        "device": hardware.device,
        "precision": hardware.precision,
        "processes": hardware.processes,
        "unk_rate_before": round(built.coverage_before, 4),
        "unk_rate_after": round(built.coverage_after, 4),
        "tokens_added": built.tokens_added,
        "token_embeddings_frozen": int(built.embeddings_frozen),
        "train_pairs": built.n_pairs,
        "train_pairs_available": built.n_pairs_available,
        # Of those, from the extra training documents (corpus.extra_documents_dir; budget train.max_extra_pairs).
        "train_pairs_extra": built.n_pairs_extra,
        "train_pairs_extra_available": built.n_pairs_extra_available,
        # Training questions the round-trip filter kept and dropped (train.round_trip_filter; 0 and 0 when off).
        "round_trip_queries_kept": built.round_trip.kept,
        "round_trip_queries_dropped": built.round_trip.dropped,
        "val_queries": built.val_queries,
        "val_corpus": built.val_corpus,
        "learning_rate": params.train.learning_rate,
        "steps": trainer.state.global_step,
        "resumed_from_step": resumed_from,
        "best_step": keeper.best_step or 0,
        # Model selection: where, the base model's own score there (step 0), and whether it won.
        "selected_on": built.val_source if built.chooses else "final step",
        "val_ndcg@10_base": round(keeper.scores.get(0, 0.0), 4),
        "base_model_selected": int(keeper.best_step == 0),
        # Weight ensembling with the base (train.wise_ft_alphas): the alpha saved (0: the base model was selected;
        # 1.0: the checkpoint as it is) and the val NDCG@10 of each alpha compared, keyed without a dot (DVC would
        # read one as nesting), e.g. wise_ft_val_ndcg@10_a050 for 0.5.
        "wise_ft_alpha": ensemble.alpha,
        **{f"wise_ft_val_ndcg@10_{alpha_tag(alpha)}": round(score, 4) for alpha, score in sorted(ensemble.val_scores.items())},
        # Over the whole run, resumed or not (the Trainer's own figure covers only this process's steps).
        "train_loss": round(sum(r["loss"] for r in loss_rows) / len(loss_rows), 4) if loss_rows else 0.0,
        # Of what was saved: the selected checkpoint, or its ensemble with the base.
        # Of what was saved, on the val questions (synthetic ones when they only drew the curve).
        "best_val_ndcg@10": round(_kept_score(ensemble, keeper), 4),
        "train_seconds": round(train_seconds, 1),
        "checkpoints_saved": trainer.checkpoints_saved,
        "checkpoint_seconds": round(trainer.checkpoint_seconds, 1),
        "pairs_per_second": round(steps_this_run * params.train.batch_size / train_seconds, 2) if train_seconds else 0.0,
    }


def _kept_score(ensemble: EnsembleChoice, keeper) -> float:
    score = ensemble.score if ensemble.score is not None else keeper.best_score
    return score if score is not None else 0.0
