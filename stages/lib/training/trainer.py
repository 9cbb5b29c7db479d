"""Fine-tuning with the sentence-transformers Trainer: the loss, the training arguments (batching,
checkpoints, validation), and the callbacks that keep the best model, schedule and time checkpoints,
draw the progress bar and log the training curves.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from transformers import TrainerCallback

from stages.lib.common.params import TrainParams
from stages.lib.common.progress import progress
from stages.lib.models.hardware import Hardware
from stages.lib.models.loading import load_sentence_transformer
from stages.lib.models.prompts import NO_PROMPTS, Prompts
from stages.lib.training.locations import BASE_DIR
from stages.lib.training.validation import VAL_METRIC

# GIST's softmax temperature: MultipleNegativesRankingLoss's scale of 20 as a temperature (sentence-transformers'
# GIST default is 0.01), so that gist differs from mnrl by the guide's choice of negatives, not by a sharper softmax
# that the learning rate, chosen with mnrl, was not tuned for.
GIST_TEMPERATURE = 1 / 20


def build_loss(model, params: TrainParams, distributed: bool = False, guide_dir: Path | None = BASE_DIR):
    """In-batch-negatives loss; with several processes it gathers every process's embeddings, so
    each query sees the whole global batch as negatives, as in a single-process run.

    gist / cached_gist (GISTEmbed): the base model in ``guide_dir`` (``None``: a copy of ``model`` as it is now,
    which must then be that base model, unchanged) scores every in-batch negative, and those it
    scores above the query's own positive are left out. The guide's embeddings are gathered across processes
    with the model's, so the mask covers the global batch. One difference from a single process remains:
    GIST's query-query negatives are this process's queries only (sentence-transformers gathers passages, not
    queries); the query-passage and passage-passage terms see the whole batch.
    """
    from sentence_transformers.sentence_transformer.losses import (
        CachedGISTEmbedLoss,
        CachedMultipleNegativesRankingLoss,
        GISTEmbedLoss,
        MultipleNegativesRankingLoss,
    )

    if params.loss == "gist":
        return GISTEmbedLoss(model, load_guide(guide_dir, model), temperature=GIST_TEMPERATURE,
                             gather_across_devices=distributed)
    if params.loss == "cached_gist":
        return CachedGISTEmbedLoss(model, load_guide(guide_dir, model), temperature=GIST_TEMPERATURE,
                                   mini_batch_size=params.mini_batch_size, gather_across_devices=distributed)
    if params.loss == "cached_mnrl":
        return CachedMultipleNegativesRankingLoss(
            model, mini_batch_size=params.mini_batch_size, gather_across_devices=distributed
        )
    return MultipleNegativesRankingLoss(model, gather_across_devices=distributed)


def load_guide(guide_dir: Path | None, model):
    """The base model as GIST's guide: its own copy (the trained model changes every step and may have an extended
    vocabulary), fp32 weights, on the trained model's device, frozen and in eval mode. ``guide_dir`` None copies
    ``model`` in memory instead of reading the folder again (it is the base model until training starts: a
    checkpoint's weights are loaded later, inside ``Trainer.train``); about 3 s less start-up on a CPU.

    Frozen: the Trainer's optimizer takes every parameter of the loss that requires a gradient, the guide's too.
    Eval mode: no dropout in its judgement; the Trainer switches only the trained model to train mode. Its forward
    pass runs under the Trainer's autocast, like the model's (bf16/fp16 matrix products where the run uses them).
    """
    # Inputs reach the guide already tokenized, with the prompts in them: as the model's own token ids when the
    # vocabularies are the same, else decoded and tokenized again by the guide (GIST does that itself, and also
    # whenever the guide reads fewer tokens than the model, which the same max_seq_length avoids).
    if guide_dir is None:
        import copy

        guide = copy.deepcopy(model)
    else:
        guide = load_sentence_transformer(guide_dir, str(model.device), model.max_seq_length)
    guide.requires_grad_(False)
    return guide.eval()


def embedding_learning_rate_mapping(loss, learning_rate: float) -> dict[str, float]:
    """A ``learning_rate_mapping`` entry for the input-embedding matrix, whatever the architecture calls it."""
    embeddings = loss.model[0].auto_model.get_input_embeddings().weight
    name = next(n for n, p in loss.named_parameters() if p is embeddings)
    return {f"^{re.escape(name)}$": learning_rate}


def steps_per_epoch(n_pairs: int, batch_size: int) -> int:
    """Full batches only (the last partial batch of an epoch is dropped): every step sees exactly
    ``batch_size`` pairs, which is what lets N processes split each batch evenly."""
    return n_pairs // batch_size


class TrainProgress(TrainerCallback):
    """A progress bar over optimizer steps with the latest loss and validation score (rank 0 only)."""

    def __init__(self, val_metric: str) -> None:
        self.val_metric = val_metric
        self.bar = None
        self.postfix: dict[str, str] = {}

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.bar = progress(state.max_steps, "[train] steps", unit="step", initial=state.global_step)

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(1)

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "loss" in logs:
            self.postfix["loss"] = f"{logs['loss']:.3f}"
        if self.val_metric in logs:
            self.postfix["val ndcg@10"] = f"{logs[self.val_metric]:.3f}"
        if self.bar is not None and self.postfix:
            self.bar.set_postfix_str(", ".join(f"{k} {v}" for k, v in self.postfix.items()))

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


@dataclass(frozen=True)
class TrainerSettings:
    """How ``build_trainer`` sets up a run, besides the model and the data.

    ``resuming``: the run continues from a checkpoint, whose validation scores (the base model's, step 0, among
    them) the best-model keeper already read from disk; none is computed again. ``choose_best``: False when the
    evaluator's questions only draw the curve (the final step is kept; see ``BestModelKeeper``). ``guide_dir``: the
    guide model of the gist losses, read from there only when the vocabulary was extended (the model given is the
    same base model otherwise, and the guide is a copy of it). ``live_dir``: DVCLive's folder for the training
    curves (rank 0 writes it).
    """

    params: TrainParams
    hardware: Hardware
    work: Path  # this run's checkpoint folder
    is_writer: bool = True  # rank 0: the one process that writes files
    vocabulary_extended: bool = False
    prompts: Prompts = NO_PROMPTS
    resuming: bool = False
    choose_best: bool = True
    guide_dir: Path = BASE_DIR
    live_dir: Path | None = None


@dataclass(frozen=True)
class TrainingSetup:
    """The Trainer and the callbacks whose findings the stage reads after ``train()``."""

    trainer: object
    keeper: object  # BestModelKeeper: the selected step and every step's val score
    checkpoint_cost: object  # CheckpointCost: checkpoints written and the seconds they took
    curves: object | None  # LiveCurves on rank 0 with a ``live_dir``, else None


def build_trainer(model, train_data, evaluator, settings: TrainerSettings) -> TrainingSetup:
    """The sentence-transformers Trainer with our batching, checkpointing and model-selection rules."""
    from transformers import PrinterCallback

    from stages.lib.models.hardware import encoding_batch_size
    from stages.lib.training.checkpoints import BestModelKeeper, CheckpointCost, CheckpointSchedule
    from stages.lib.training.guide_memory import GUIDE_MEMORY_FILE, remember_training_texts
    from stages.lib.training.live_curves import LiveCurves

    params = settings.params
    # 1. The loss, and the arguments: batches, schedule, validation, checkpoints, precision.
    guide_dir = settings.guide_dir if settings.vocabulary_extended else None
    loss = build_loss(model, params, distributed=settings.hardware.processes > 1, guide_dir=guide_dir)
    args = _training_arguments(len(train_data), list(train_data.column_names), loss, evaluator is not None, settings)
    # 2. The callbacks. Order matters: the cost of a checkpoint is timed from the last callback before the save, so
    #    CheckpointCost comes after the keeper (its best-model save is not a checkpoint's cost) and the curves.
    keeper = BestModelKeeper(settings.work, VAL_METRIC, model, is_writer=settings.is_writer, choose=settings.choose_best)
    curves = LiveCurves(settings.live_dir) if settings.live_dir is not None and settings.is_writer else None
    cost = CheckpointCost()
    callbacks = [TrainProgress(VAL_METRIC), CheckpointSchedule(params.checkpoint_minutes * 60), keeper,
                 *([curves] if curves else []), cost]
    # 3. The Trainer, with lean checkpoints (checkpoints.py).
    trainer = lean_checkpoint_trainer_class()(model=model, args=args, train_dataset=train_data, loss=loss,
                                              evaluator=evaluator, callbacks=callbacks)
    trainer.remove_callback(PrinterCallback)  # raw log dictionaries: the progress bar shows them instead
    # 4. GIST's guide embeds every training text once, not in every step (guide_memory.py), kept in the work folder
    #    for a resumed run.
    remember_training_texts(trainer, settings.hardware.precision, encoding_batch_size("auto", settings.hardware.device),
                            store=settings.work / GUIDE_MEMORY_FILE, is_writer=settings.is_writer)
    return TrainingSetup(trainer=trainer, keeper=keeper, checkpoint_cost=cost, curves=curves)


def _training_arguments(n_pairs: int, columns: list[str], loss, validates: bool, settings: TrainerSettings):
    from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments

    from stages.lib.training.checkpoints import save_steps

    params, hardware = settings.params, settings.hardware
    steps = steps_per_epoch(n_pairs, params.batch_size)
    return SentenceTransformerTrainingArguments(
        output_dir=str(settings.work),
        num_train_epochs=params.epochs,
        # The batch sampler draws global, duplicate-free batches; each process takes its share of
        # every one (split_batches), so batch_size means the same for 1 or N processes.
        per_device_train_batch_size=params.batch_size,
        accelerator_config={"split_batches": True},
        dataloader_drop_last=True,
        learning_rate=params.learning_rate,
        learning_rate_mapping=(embedding_learning_rate_mapping(loss, params.embedding_learning_rate)
                               if settings.vocabulary_extended else {}),
        warmup_steps=params.warmup_ratio,  # transformers 5: a float below 1 is a ratio
        weight_decay=params.weight_decay,
        batch_sampler=_batch_sampler(params),
        seed=params.seed,
        data_seed=params.seed,
        eval_strategy="steps" if validates else "no",
        eval_steps=max(1, steps // params.evals_per_epoch),
        # Step 0 is the base model: a candidate in model selection like every later step. A resumed run already
        # has it (and every score up to its checkpoint); evaluating on start would re-score the checkpoint's weights.
        eval_on_start=validates and not settings.resuming,
        prompts=settings.prompts.for_training(columns),
        save_strategy="steps",
        save_steps=save_steps(max(1, int(steps * params.epochs)), params.checkpoint_fraction),
        save_total_limit=2,
        # The loss curve's resolution. Not every step: the Trainer's log history is what a checkpoint restores, so
        # it is the one record of the curve that survives a kill; it is also the model card's training log and the
        # source of metrics/train.json's train_loss (both would change with it).
        logging_steps=max(1, steps // 10),
        report_to="none",  # the curves go to DVCLive through our own callback (live_curves.py)
        use_cpu=hardware.device == "cpu",
        bf16=hardware.precision == "bf16",
        fp16=hardware.precision == "fp16",
        ddp_backend="gloo" if hardware.device == "cpu" and hardware.processes > 1 else None,
        disable_tqdm=True,
        **_activation_checkpointing(SentenceTransformerTrainingArguments, params.gradient_checkpointing),
    )


def _batch_sampler(params: TrainParams):
    """Duplicate-free batches unless turned off: without them a batch can hold the same passage twice, and one copy is
    then a "negative" of the other's query (the seed recipe's plain batches do that). Similar lengths in a batch
    unless turned off (batches.py)."""
    import functools

    from sentence_transformers.base.sampler import BatchSamplers

    from stages.lib.training.batches import SimilarLengthBatchSampler

    if params.similar_length_batches:
        return functools.partial(SimilarLengthBatchSampler, duplicate_free=params.duplicate_free_batches)
    return BatchSamplers.NO_DUPLICATES if params.duplicate_free_batches else BatchSamplers.BATCH_SAMPLER


def lean_checkpoint_trainer_class():
    """The sentence-transformers Trainer whose checkpoints hold only the trained weights (see ``checkpoints.py``).

    Saving goes through ``save_model``, the public method the Trainer's checkpointing calls. Loading cannot: on
    resume, ``Trainer.train(resume_from_checkpoint=...)`` always calls the private ``_load_from_checkpoint``, which
    sentence-transformers implements by loading a complete model from the checkpoint folder, and no training
    argument or callback replaces it (``save_only_model`` keeps the full weights and drops the optimizer, the
    opposite of what resuming needs). So that one private method is overridden, and falls back to the library's
    own for a folder without our weights file.
    """
    from sentence_transformers import SentenceTransformerTrainer

    from stages.lib.training.checkpoints import load_trained_weights, save_trained_weights

    class LeanCheckpointTrainer(SentenceTransformerTrainer):
        def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
            # Only ever called for a checkpoint here: the stage writes the selected model itself.
            if self.args.should_save:
                save_trained_weights(self.model, Path(output_dir or self.args.output_dir))

        def _load_from_checkpoint(self, checkpoint_path: str, model=None) -> None:
            if not load_trained_weights(self.model, Path(checkpoint_path)):
                super()._load_from_checkpoint(checkpoint_path)

    return LeanCheckpointTrainer


def _activation_checkpointing(arguments_class, enabled: bool) -> dict:
    """The training argument that recomputes activations, under the name this transformers knows: later 5.x
    releases renamed ``gradient_checkpointing`` to ``activation_checkpointing`` and warn on every run at the old."""
    import dataclasses

    names = {field.name for field in dataclasses.fields(arguments_class)}
    return {"activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing": enabled}
