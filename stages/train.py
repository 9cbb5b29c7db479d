"""Stage ``train``: fine-tune ``models/base`` on the training questions -> ``models/finetuned/``.

Runs where the user's hardware is: on a GPU (mixed precision) when there is
one, on several GPUs through ``torchrun`` (``train.processes``), on the CPU
otherwise. Checkpoints go to ``models/.train-work/<fingerprint>/``, so a rerun
after a crash or ``kill -9`` resumes instead of starting over. Model selection
is on a bounded sample of the val split (NDCG@10); the loss and validation
curves go to ``metrics/train_curves/`` for ``dvc plots``. If the base tokenizer
maps too much of the corpus to ``[UNK]``, the vocabulary is extended first and
the extended tokenizer is saved with the model.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from stages.lib.checkpoints import (
    checkpoint_step,
    fingerprint,
    latest_complete_checkpoint,
    prepare_work_dir,
    remove_incomplete_checkpoints,
)
from stages.lib.corpus_io import CHUNKS_FILE, load_chunks
from stages.lib.device import Hardware, cpu_threads, resolve_hardware
from stages.lib.distributed import is_launched_worker, launch_workers, local_rank, world_rank
from stages.lib.errors import EXIT_INTERRUPTED, UserError, run_stage
from stages.lib.files import replacing_directory, write_json
from stages.lib.params import Params, load_params
from stages.lib.progress import quiet_library_bars
from stages.lib.qa_dataset import QADataset

BASE_DIR = Path("models/base")
OUTPUT_DIR = Path("models/finetuned")
WORK_ROOT = Path("models/.train-work")  # checkpoints; ignored by git and DVC
QUESTIONS_DIR = Path("data/questions")
METRICS_FILE = Path("metrics/train.json")
CURVES_DIR = Path("metrics/train_curves")
VAL_PREFIX = "eval_val_cosine_"
VAL_METRIC = VAL_PREFIX + "ndcg@10"
# The pipeline's code is part of the checkpoint fingerprint: all of it, so no module the stage
# reads (directly or not) can change under a resumed run; an unrelated edit costs only a restart.
CODE_DIR = Path("stages")


@run_stage("train")
def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    quiet_library_bars()
    params = load_params()

    # 1. Hardware: resolved here, recorded in the metrics, never written into params.
    hardware = resolve_hardware(params.compute.device, params.compute.precision, params.train.processes)
    _check_batch_split(params.train.batch_size, hardware.processes)
    if hardware.processes > 1 and not is_launched_worker():
        print(f"[train] launching {hardware.processes} data-parallel processes on {hardware.device} through torchrun",
              flush=True)
        code = launch_workers("stages.train", hardware.processes)
        if code == EXIT_INTERRUPTED:
            raise KeyboardInterrupt
        if code:
            sys.exit(code)
        return
    train(params, hardware)


def train(params: Params, hardware: Hardware) -> None:
    """One training process (of ``hardware.processes``); rank 0 alone writes files."""
    import torch
    from transformers import set_seed

    from stages.lib.training import build_trainer

    writer = world_rank() == 0
    say = print if writer else (lambda *args, **kwargs: None)
    _quiet_other_ranks(writer)
    set_seed(params.train.seed)
    if hardware.device == "cpu":
        torch.set_num_threads(cpu_threads())

    # 1. Build: data, model (vocabulary extended if needed), the checkpoint to resume from.
    work, resume = _resume_point(params, hardware, writer, say)
    built = build_inputs(params, hardware)
    say(f"[train] [UNK] rate {built.coverage_before:.1%} -> {built.coverage_after:.1%} ({built.tokens_added} tokens added); "
        f"{built.n_pairs} training pairs (of {built.n_pairs_available}), validation on {built.val_queries} queries "
        f"x {built.val_corpus} chunks; {hardware.device}, {hardware.precision}, {hardware.processes} process(es)")
    trainer, keeper = build_trainer(built.model, built.train_data, built.evaluator, params.train, hardware, work,
                                    vocabulary_extended=built.tokens_added > 0, val_metric=VAL_METRIC, is_writer=writer)

    # 2. Run.
    started = time.perf_counter()
    try:
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    except KeyboardInterrupt:
        last = latest_complete_checkpoint(work)
        where = f"the checkpoint {last}" if last else "the start (no checkpoint was written yet)"
        say(f"\n[train] interrupted at step {trainer.state.global_step}; `dvc repro` resumes from {where}.")
        raise
    train_seconds = time.perf_counter() - started

    # 3. Report (rank 0): the best model by validation score, the curves, the metrics; then drop the checkpoints.
    if writer:
        _save_model(trainer.model, keeper, work)
        loss_rows = _write_curves(trainer.state.log_history)
        resumed_from = checkpoint_step(resume) if resume else 0
        write_json(METRICS_FILE, _metrics(params, hardware, built, trainer, keeper, loss_rows, resumed_from, train_seconds))
        shutil.rmtree(work, ignore_errors=True)
        print(f"[train] {built.n_pairs} pairs x {params.train.epochs} epochs, {trainer.state.global_step} steps in "
              f"{train_seconds:.0f}s; best val NDCG@10 {keeper.best_score or float('nan'):.3f} at step {keeper.best_step}")


def _resume_point(params: Params, hardware: Hardware, writer: bool, say) -> tuple[Path, Path | None]:
    """This run's work folder (by fingerprint; rank 0 discards the others) and its latest complete checkpoint."""
    for path in (QUESTIONS_DIR / "train.json", QUESTIONS_DIR / "val.json", CHUNKS_FILE):
        if not path.is_file():
            raise UserError(f"{path} is missing: run `dvc repro` so the stage that writes it runs.")
    if not BASE_DIR.is_dir():
        raise UserError(f"{BASE_DIR} is missing: run `dvc repro base_model` first.")
    key = fingerprint(
        _fingerprint_settings(params, hardware),
        files=[CHUNKS_FILE, QUESTIONS_DIR / "train.json", QUESTIONS_DIR / "val.json",
               *sorted(CODE_DIR.rglob("*.py"))],
        folders=[BASE_DIR],
    )
    if not writer:
        return WORK_ROOT / key, latest_complete_checkpoint(WORK_ROOT / key)
    work, discarded = prepare_work_dir(WORK_ROOT, key)
    if discarded:
        say(f"[train] discarded checkpoints of earlier runs with other inputs: {', '.join(discarded)}")
    remove_incomplete_checkpoints(work)
    resume = latest_complete_checkpoint(work)
    if resume is not None:
        say(f"[train] resuming from {resume} (step {checkpoint_step(resume)})")
    return work, resume


def _metrics(params: Params, hardware: Hardware, built: Built, trainer, keeper, loss_rows: list[dict],
             resumed_from: int, train_seconds: float) -> dict:
    steps_this_run = trainer.state.global_step - resumed_from
    return {
        "device": hardware.device,
        "precision": hardware.precision,
        "processes": hardware.processes,
        "unk_rate_before": round(built.coverage_before, 4),
        "unk_rate_after": round(built.coverage_after, 4),
        "tokens_added": built.tokens_added,
        "train_pairs": built.n_pairs,
        "train_pairs_available": built.n_pairs_available,
        "val_queries": built.val_queries,
        "val_corpus": built.val_corpus,
        "learning_rate": params.train.learning_rate,
        "steps": trainer.state.global_step,
        "resumed_from_step": resumed_from,
        "best_step": keeper.best_step or 0,
        # Over the whole run, resumed or not (the Trainer's own figure covers only this process's steps).
        "train_loss": round(sum(r["loss"] for r in loss_rows) / len(loss_rows), 4) if loss_rows else 0.0,
        "best_val_ndcg@10": round(keeper.best_score, 4) if keeper.best_score is not None else 0.0,
        "train_seconds": round(train_seconds, 1),
        "checkpoints_saved": trainer.checkpoints_saved,
        "checkpoint_seconds": round(trainer.checkpoint_seconds, 1),
        "pairs_per_second": round(steps_this_run * params.train.batch_size / train_seconds, 2) if train_seconds else 0.0,
    }


def _quiet_other_ranks(writer: bool) -> None:
    import warnings

    # Deprecation notices from inside accelerate / sentence-transformers: nothing a user can act on.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(accelerate|sentence_transformers|torch)\.")
    if not writer:
        from transformers.utils import logging as transformers_logging

        transformers_logging.set_verbosity_error()  # rank 0 speaks for all processes


def _check_batch_split(batch_size: int, processes: int) -> None:
    if batch_size % processes:
        raise UserError(
            f"params.yaml key 'train.batch_size' is {batch_size}, which {processes} processes cannot split evenly "
            f"('train.processes' resolved to {processes}). train.batch_size is the global batch: make it a multiple "
            "of the number of processes."
        )


def _fingerprint_settings(params: Params, hardware: Hardware) -> dict:
    import sentence_transformers
    import torch
    import transformers

    # Knobs that change how training runs but not its result stay out, so that
    # e.g. a different checkpoint interval can still resume.
    train = params.train.model_dump(exclude={"processes", "checkpoint_fraction", "checkpoint_minutes", "gradient_checkpointing"})
    return {
        "train": train,
        "max_seq_length": params.model.max_seq_length,
        "device": hardware.device,
        "precision": hardware.precision,
        "versions": [torch.__version__, transformers.__version__, sentence_transformers.__version__],
    }


@dataclass
class Built:
    model: object
    train_data: object
    evaluator: object | None
    n_pairs: int
    n_pairs_available: int
    val_queries: int
    val_corpus: int
    coverage_before: float
    coverage_after: float
    tokens_added: int


def build_inputs(params: Params, hardware: Hardware) -> Built:
    """The model (on its device, vocabulary extended if needed), the training pairs and the bounded val evaluator."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer

    from stages.lib.eval_sample import bounded_dataset
    from stages.lib.training import ir_evaluator, sample_pairs, training_pairs
    from stages.lib.vocab import extend_vocabulary, measure_coverage

    p = params.train
    train_set, val_set = QADataset.load(QUESTIONS_DIR / "train.json"), QADataset.load(QUESTIONS_DIR / "val.json")
    if not train_set.queries:
        raise UserError(f"{QUESTIONS_DIR / 'train.json'} has no queries: check 'questions.train_styles'.")
    model_device = f"cuda:{local_rank()}" if hardware.device == "cuda" else hardware.device
    model = SentenceTransformer(str(BASE_DIR), device=model_device)
    model.max_seq_length = params.model.max_seq_length

    texts = [chunk.text for chunk in load_chunks()] + list(train_set.queries.values())
    before = measure_coverage(model.tokenizer, texts)
    added = extend_vocabulary(model, list(before.missing)) if p.extend_vocab and before.unknown_rate > p.unk_threshold else 0
    after = measure_coverage(model.tokenizer, texts) if added else before

    all_anchors, all_positives = training_pairs(train_set, p.ict_mask_probability, p.seed)
    anchors, positives = sample_pairs(all_anchors, all_positives, p.max_pairs, p.seed)
    if len(anchors) < p.batch_size:
        raise UserError(
            f"Only {len(anchors)} training pairs, fewer than params.yaml key 'train.batch_size' ({p.batch_size}): "
            "lower the batch size, raise 'train.max_pairs', or add documents/questions."
        )
    columns = {"anchor": anchors, "positive": positives}
    if p.hard_negatives:
        columns["negative"] = _hard_negatives(train_set, anchors, p)
    val = bounded_dataset(val_set, p.max_val_queries, p.max_val_corpus, f"train.val:{p.seed}") if val_set.queries else None
    return Built(
        model=model,
        train_data=Dataset.from_dict(columns),
        evaluator=ir_evaluator(val, "val", batch_size=64) if val else None,
        n_pairs=len(anchors),
        n_pairs_available=len(all_anchors),
        val_queries=len(val.queries) if val else 0,
        val_corpus=len(val.corpus) if val else 0,
        coverage_before=before.unknown_rate,
        coverage_after=after.unknown_rate,
        tokens_added=added,
    )


def _hard_negatives(train_set: QADataset, anchors: list[str], p) -> list[str]:
    """One BM25-mined negative passage per training pair, from the training chunks only."""
    from stages.lib.hard_negatives import MiningWindow, document_neighbours, mine_bm25_negatives

    positives_by_query: dict[str, set[str]] = {}
    for _, query, chunk_id in train_set.pairs():
        positives_by_query.setdefault(query, set()).add(chunk_id)
    window = MiningWindow(p.hard_negative_rank_min, p.hard_negative_rank_max, p.hard_negative_margin)
    # Only passages that are training positives anyway: never a val or test passage.
    training_passages = {cid: train_set.corpus[cid] for ids in positives_by_query.values() for cid in sorted(ids)}
    negative_ids = mine_bm25_negatives(anchors, [positives_by_query[a] for a in anchors], training_passages,
                                       document_neighbours(load_chunks()), window, p.seed,
                                       desc="[train] mine hard negatives")
    return [training_passages[cid] for cid in negative_ids]


def _save_model(model, keeper, work: Path) -> None:
    """Write the best validated model (or the last one, without validation) to models/finetuned."""
    from stages.lib.checkpoints import BEST_DIR
    from stages.lib.training import strip_run_timing

    best = work / BEST_DIR
    with replacing_directory(OUTPUT_DIR) as staging:
        if keeper.best_step is not None and best.is_dir():
            shutil.copytree(best, staging, dirs_exist_ok=True)
        else:
            model.save(str(staging))
        strip_run_timing(staging)


def _write_curves(log_history: list[dict]) -> list[dict]:
    from stages.lib.training import curves_from_history, write_curve

    loss_rows, val_rows = curves_from_history(log_history, VAL_PREFIX)
    write_curve(CURVES_DIR / "loss.csv", loss_rows)
    write_curve(CURVES_DIR / "val.csv", val_rows)
    return loss_rows


if __name__ == "__main__":
    main()
