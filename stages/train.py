"""Stage ``train``: fine-tune ``models/base`` on the training questions -> ``models/trained/``.

Runs where the user's hardware is: on a GPU (mixed precision) when there is
one, on several GPUs through ``torchrun`` (``train.processes``), on the CPU
otherwise. Checkpoints go to ``models/.train-work/<fingerprint>/``, so a rerun
after a crash or ``kill -9`` resumes instead of starting over. Model selection
is by NDCG@10 on golden val (questions people wrote, when a golden set is about
this corpus), and the base model itself (step 0) is a candidate: a fine-tune that
does not beat it is not kept. Without a golden val the final step is kept, and the
synthetic val split is scored for the curve only: its questions reuse their
passages' words, and choosing on them misleads (docs/evaluation.md, "Without a
golden set"). The selected checkpoint is then mixed with the base model in weight
space (WiSE-FT: alpha x fine-tuned + (1 - alpha) x base), with the
``train.wise_ft_alphas`` value that scores best on golden val (alpha 1 without
one). The loss
and validation curves, and the selection, are logged with DVCLive to ``metrics/train_live/`` (``dvc plots``,
``dvc exp show``).
Queries and passages are encoded after the model's prompts
(``model.query_prompt`` / ``model.document_prompt``), which are saved with the
model. If the base tokenizer maps too much of the corpus to ``[UNK]``, the
vocabulary is extended first and the extended tokenizer is saved with the model.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from pathlib import Path

from stages.lib.common.cores import cpu_threads
from stages.lib.common.errors import EXIT_INTERRUPTED, UserError, run_stage
from stages.lib.common.files import write_json
from stages.lib.common.params import Params, load_params
from stages.lib.common.progress import quiet_library_bars
from stages.lib.models.hardware import Hardware, resolve_hardware
from stages.lib.training.checkpoints import (
    BEST_DIR,
    checkpoint_step,
    fingerprint,
    fingerprint_settings,
    latest_complete_checkpoint,
    resume_point,
)
from stages.lib.training.distributed import is_launched_worker, launch_workers, world_rank
from stages.lib.training.inputs import build_inputs, check_batch_split, require_inputs
from stages.lib.training.locations import BASE_DIR, INPUT_FILES
from stages.lib.training.outcome import Outcome, closing_lines, log_selection, training_metrics
from stages.lib.training.pairs import write_training_pairs
from stages.lib.training.saved_model import save_selected_model
from stages.lib.training.validation import VAL_METRIC
from stages.lib.training.weight_ensembling import ensemble_with_base

OUTPUT_DIR = Path("models/trained")  # shipped as models/finetuned, with its card (stage model_card)
WORK_ROOT = Path("models/.train-work")  # checkpoints; ignored by git and DVC
METRICS_FILE = Path("metrics/train.json")
LIVE_DIR = Path("metrics/train_live")  # DVCLive: the curves (plots/metrics/*.tsv) and their summary (metrics.json)
# The pipeline's code is part of the checkpoint fingerprint: all of it, so no module the stage
# reads (directly or not) can change under a resumed run; an unrelated edit costs only a restart.
CODE_DIR = Path("stages")

log = logging.getLogger(__name__)


@run_stage("train")
def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    quiet_library_bars()
    params = load_params()

    # 1. Hardware: resolved here, recorded in the metrics, never written into params.
    hardware = resolve_hardware(params.compute.device, params.compute.precision, params.train.processes, BASE_DIR)
    check_batch_split(params.train.batch_size, hardware.processes)
    # 2. Several processes: relaunch this stage under torchrun, which runs step 3 in each.
    if hardware.processes > 1 and not is_launched_worker():
        log.info(f"launching {hardware.processes} data-parallel processes on {hardware.device} through torchrun")
        code = launch_workers("stages.train", hardware.processes)
        if code == EXIT_INTERRUPTED:
            raise KeyboardInterrupt
        if code:
            sys.exit(code)
        return
    # 3. Train (this process's share).
    train(params, hardware)


def train(params: Params, hardware: Hardware) -> None:
    """One training process (of ``hardware.processes``); rank 0 alone writes files."""
    import torch
    from transformers import set_seed

    from stages.lib.training.trainer import TrainerSettings, build_trainer

    writer = world_rank() == 0
    _quiet_other_ranks(writer)
    set_seed(params.train.seed)
    if hardware.device == "cpu":
        torch.set_num_threads(cpu_threads())

    # 1. Build: the checkpoint to resume from, the data, the model (vocabulary extended if needed), the Trainer.
    require_inputs()
    key = fingerprint(fingerprint_settings(params, hardware), files=[*INPUT_FILES, *sorted(CODE_DIR.rglob("*.py"))],
                      folders=[BASE_DIR])
    work, resume = resume_point(WORK_ROOT, key, writer)
    built = build_inputs(params, hardware)
    for line in built.describe(hardware):
        log.info(line)
    setup = build_trainer(built.model, built.train_data, built.validation.evaluator, TrainerSettings(
        params=params.train, hardware=hardware, work=work, is_writer=writer,
        vocabulary_extended=built.vocabulary.tokens_added > 0, prompts=built.prompts, resuming=resume is not None,
        choose_best=built.validation.chooses, live_dir=LIVE_DIR))
    trainer, keeper = setup.trainer, setup.keeper

    # 2. Run.
    started = time.perf_counter()
    try:
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    except KeyboardInterrupt:
        last = latest_complete_checkpoint(work)
        where = f"the checkpoint {last}" if last else "the start (no checkpoint was written yet)"
        log.info(f"interrupted at step {trainer.state.global_step}; `dvc repro` resumes from {where}.")
        raise
    train_seconds = time.perf_counter() - started
    if trainer.state.global_step == 0:
        raise UserError("Training took no step: the batch sampler could not fill one batch of 'train.batch_size' "
                        f"({params.train.batch_size}) from {built.pairs.used} pairs. Lower 'train.batch_size'.")
    if not built.validation.chooses:
        keeper.keep_final(trainer.state.global_step)
    if not writer:
        return

    # 3. Weight-space ensembling with the base model (rank 0): the alpha of train.wise_ft_alphas best on golden val
    #    (without one, alpha 1: nothing to choose on).
    validation = built.validation
    ensemble = ensemble_with_base(trainer.model, keeper, validation.evaluator if validation.chooses else None,
                                  params.train.wise_ft_alphas, VAL_METRIC, BASE_DIR, work / BEST_DIR, validation.source)

    # 4. Report (rank 0): the selected model (ensembled or not), the pairs, the metrics, the selection beside the
    #    curves; then drop the checkpoints.
    save_selected_model(trainer.model, keeper, work, OUTPUT_DIR, weights_mixed=ensemble.mixes_weights)
    write_training_pairs(built.train_data.to_dict())
    outcome = Outcome(params=params, hardware=hardware, built=built, setup=setup, ensemble=ensemble,
                      resumed_from=checkpoint_step(resume) if resume else 0, train_seconds=train_seconds)
    write_json(METRICS_FILE, training_metrics(outcome))
    log_selection(outcome)
    shutil.rmtree(work, ignore_errors=True)
    for line in closing_lines(outcome, OUTPUT_DIR):
        log.info(line)


def _quiet_other_ranks(writer: bool) -> None:
    import warnings

    # Deprecation notices from inside accelerate / sentence-transformers: nothing a user can act on.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(accelerate|sentence_transformers|torch)\.")
    if not writer:
        from transformers.utils import logging as transformers_logging

        transformers_logging.set_verbosity_error()  # rank 0 speaks for all processes


if __name__ == "__main__":
    main()
